"""Small numba helpers shared by the kernels and the mean-field oracle."""

from __future__ import annotations

import math

from numba import njit

from sim.core.random import uniform

#: Compartments.
BM, PB, EMD = 0, 1, 2
N_COMP = 3
COMP_NAMES = ("bm", "pb", "emd")


@njit(cache=True, inline="always")
def add_movers(acc, pick, comp, cls, src, amount, rs, s):
    """Count ``amount`` cells of agent ``src`` into the movers of group (``comp``, ``cls``) this step.

    The group's new agent will carry the properties of one source, picked with probability
    proportional to the cells it sent (one uniform a mover, a weighted reservoir), so
    properties stay unbiased and agents do not multiply. Sums stay in a small local
    table: writing them into the frame inside the agent loop cost 30x more.
    """
    acc[comp, cls] += amount
    if uniform(rs, s) * acc[comp, cls] < amount:
        pick[comp, cls] = src


@njit(cache=True)
def place_movers(f, m, acc, pick):
    """Append one agent per group with movers to frame ``f`` (``m`` agents live); return the new count."""
    for c in range(acc.shape[0]):
        for k in range(acc.shape[1]):
            if acc[c, k] <= 0.0:
                continue
            if m >= f.w.shape[0]:
                raise IndexError("agent frame full: resample before spawning")
            f.w[m] = acc[c, k]
            f.comp[m] = c
            f.cls[m] = k
            for p in range(f.x.shape[0]):
                f.x[p, m] = f.x[p, pick[c, k]]
            m += 1
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
