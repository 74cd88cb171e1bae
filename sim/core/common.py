"""Small numba helpers shared by the kernels and the mean-field oracle."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

#: Compartments.
BM, PB, EMD = 0, 1, 2
N_COMP = 3
COMP_NAMES = ("bm", "pb", "emd")


@njit(cache=True)
def seed_step(base: np.uint64, step: int) -> None:
    """Seed numba's generator for one stream at one step (splitmix64 of base and step)."""
    z = (base + np.uint64(step + 1) * np.uint64(0x9E3779B97F4A7C15)) & np.uint64(0xFFFFFFFFFFFFFFFF)
    z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & np.uint64(0xFFFFFFFFFFFFFFFF)
    z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & np.uint64(0xFFFFFFFFFFFFFFFF)
    z = z ^ (z >> np.uint64(31))
    np.random.seed(np.uint32(z & np.uint64(0xFFFFFFFF)))


@njit(cache=True)
def binom(n: float, p: float) -> float:
    """Binomial draw on an integer-valued float count (super-individual weight)."""
    if n <= 0.0 or p <= 0.0:
        return 0.0
    if p >= 1.0:
        return n
    return float(np.random.binomial(np.int64(n), p))


@njit(cache=True)
def poisson(lam: float) -> float:
    """Poisson draw returned as float."""
    if lam <= 0.0:
        return 0.0
    return float(np.random.poisson(lam))


@njit(cache=True)
def spawn_or_merge(w, comp, cls, x, m, slots, src, dest_comp, dest_cls, amount):
    """Send ``amount`` cells of agent ``src`` to (``dest_comp``, ``dest_cls``); return the new count.

    Movers of one step into the same group share one new agent (``slots[group]``): the
    first creates it, later ones merge into it and replace its properties with probability
    proportional to their weight, so properties stay unbiased and agents do not multiply.
    """
    j = slots[dest_comp, dest_cls]
    if j < 0:
        j = m
        slots[dest_comp, dest_cls] = j
        w[j] = 0.0
        comp[j] = dest_comp
        cls[j] = dest_cls
        m += 1
    if np.random.random() * (w[j] + amount) < amount:
        for p in range(x.shape[0]):
            x[p, j] = x[p, src]
    w[j] += amount
    w[src] -= amount
    return m


@njit(cache=True)
def prob(rate: float, dt: float) -> float:
    """Probability of at least one event of a constant hazard over dt."""
    return 1.0 - math.exp(-rate * dt)


@njit(cache=True)
def growth_prob(rate: float, dt: float) -> float:
    """Per-cell division probability whose expected growth over dt is exp(rate dt) (capped at 1)."""
    p = math.expm1(rate * dt)
    return p if p < 1.0 else 1.0


@njit(cache=True)
def hill(x: float, k: float, n: float) -> float:
    """Hill function x^n / (x^n + k^n), 0 for x <= 0."""
    if x <= 0.0:
        return 0.0
    r = (x / k) ** n
    return r / (1.0 + r)


@njit(cache=True)
def activation(d1: float, d2: float, logic: int, d_inh: float, k: float, n: float, imax: float, k_inh: float, m: float) -> float:
    """Activation probability of one engagement.

    CAR signal H(d1) (single), 1-(1-H1)(1-H2) (OR) or H1*H2 (AND), times the iCAR veto
    1 - I_max * H(d_inh; K_inh, m). ``logic``: 0 single, 1 OR, 2 AND.
    """
    h1 = hill(d1, k, n)
    if logic == 0:
        h = h1
    elif logic == 1:
        h = 1.0 - (1.0 - h1) * (1.0 - hill(d2, k, n))
    else:
        h = h1 * hill(d2, k, n)
    return h * (1.0 - imax * hill(d_inh, k_inh, m))


@njit(cache=True)
def engagement_rate(activating_cells: float, t_cells: float, volume_l: float, search_rate: float, handling_h: float) -> float:
    """Activating engagements per T cell per hour.

    Beddington-DeAngelis form, symmetric in T cells and targets: the engagement flux
    ``a T A / V / (1 + a h (T + A) / V)`` saturates at ``T / h`` when targets abound and at
    ``A / h`` when T cells outnumber them, so expansion is bounded by antigen supply.
    """
    a = search_rate / volume_l
    return a * activating_cells / (1.0 + handling_h * a * (activating_cells + t_cells))


@njit(cache=True)
def space_factor(occupancy: float, capacity: float, exponent: float) -> float:
    """Marrow space left for division: max(0, 1 - (O/C)^k)."""
    f = 1.0 - (occupancy / capacity) ** exponent
    return f if f > 0.0 else 0.0


@njit(cache=True)
def relax(c: float, target: float, rate: float, dt: float) -> float:
    """Exact step of dc/dt = rate (target - c) with target constant over dt."""
    return target + (c - target) * math.exp(-rate * dt)
