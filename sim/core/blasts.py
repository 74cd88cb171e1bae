"""Phase 3: leukemic blasts divide (limited by marrow space), die and drift in antigen.

In marrow and EMD a blast divides at ``r_b * f_space`` and dies at ``d_b`` plus any
lymphodepletion hazard; circulating blasts do not divide and die at ``d_pb``. Daughters
inherit their parent's antigen densities with multiplicative log-normal noise: an agent
accumulates divisions per cell in its last property row and, once a quarter of its cells
have divided, every positive density is multiplied by ``exp(s Z - s^2 / 2)`` with
``s = sigma * sqrt(accumulated)`` (mean-preserving), so clones drift apart over divisions
at the cost of a few draws per doubling; antigen-negative subclones stay negative.

A division of the main clone yields a daughter that has lost one CAR antigen with
probability ``antigen_loss_per_division`` (a gene's loss-of-function rate, irreversible):
one binomial draw per compartment over its main-clone births gives the lost cells, which
leave one agent picked in proportion to its births and join the compartment's subclone
negative for that antigen (a new agent if it has none), where CAR pressure selects them
(:func:`lose_antigen`; the reference draws each daughter, the same total in distribution). An
agent also carries its activation by the product (``a_kill``, ``a_stim``), recomputed only
when its densities move (``a_stale``), so it travels with the agent through moves and merges.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from sim.core.common import BM, EMD, PB, growth_prob, prob, space_factor
from sim.core.random import S_BLASTS, begin, binomial, normal, uniform

#: Blast properties after the antigen densities (rows of ``x``, offset by the number of antigens).
DIVISIONS_PENDING, A_KILL, A_STIM, A_STALE = range(4)
PROPERTIES = ("divisions_pending", "a_kill", "a_stim", "a_stale")


class BlastConst(NamedTuple):
    """Constants of blast growth (per patient; rates per hour)."""

    r_b: float  # division rate (cell cycle)
    d_b: float  # death rate in marrow and EMD (net growth matches the doubling time)
    d_pb: float  # death of circulating blasts
    noise_sd: float  # antigen drift per division (log scale)
    c_max: float  # marrow capacity (cells)
    c_emd: float  # EMD capacity (cells)
    crowding_exponent: float
    n_antigens: int  # rows of antigen density in ``x``; then the rows of ``PROPERTIES``
    antigen_loss_per_division: float  # daughters losing one CAR antigen (0: no loss)
    car_antigen1: int  # antigen index of the CAR's first target (-1: none)
    car_antigen2: int  # its second target (-1: none)


@njit(cache=True)
def lost_antigen(k, u):
    """The CAR antigen a daughter loses, from a uniform ``u`` (either target of a two-antigen CAR)."""
    if k.car_antigen2 >= 0 and u < 0.5:
        return k.car_antigen2
    return k.car_antigen1


@njit(cache=True)
def bm_and_emd_blasts(bl, n):
    """Blasts in marrow and in the extramedullary site."""
    bm = emd = 0.0
    for i in range(n):
        if bl.comp[i] == BM:
            bm += bl.w[i]
        elif bl.comp[i] == EMD:
            emd += bl.w[i]
    return bm, emd


@njit(cache=True)
def nb_grow_blasts(dt, k, bl, n, occupancy, extra_death, rs):
    """Update the ``n`` blast agents of ``bl`` in place; return the new count (antigen-loss spawns).

    ``occupancy``: marrow cells competing for space; ``extra_death``: lymphodepletion and
    graft-versus-leukemia hazards (per hour).
    """
    begin(rs, S_BLASTS)
    f_bm = space_factor(occupancy, k.c_max, k.crowding_exponent)
    f_emd = space_factor(bm_and_emd_blasts(bl, n)[1], k.c_emd, k.crowding_exponent)
    p_birth = np.zeros(3)  # by compartment (blood: none)
    p_birth[BM] = growth_prob(k.r_b * f_bm, dt)
    p_birth[EMD] = growth_prob(k.r_b * f_emd, dt)
    p_death_tissue = prob(k.d_b + extra_death, dt)  # factor exp((r f - d) dt)
    p_death_pb = prob(k.d_pb + extra_death, dt)
    w, x = bl.w, bl.x
    losing = k.antigen_loss_per_division > 0.0 and k.car_antigen1 >= 0
    main_births = np.zeros(n if losing else 0)  # births of the main clone, where daughters may lose an antigen
    for i in range(n):
        if w[i] <= 0.0:
            continue
        c = bl.comp[i]
        if c == PB:
            w[i] -= binomial(rs, S_BLASTS, w[i], p_death_pb)
            continue
        births = binomial(rs, S_BLASTS, w[i], p_birth[c])
        deaths = binomial(rs, S_BLASTS, w[i] + births, p_death_tissue)
        new_w = max(w[i] + births - deaths, 0.0)
        if births > 0.0 and k.noise_sd > 0.0 and new_w > 0.0:
            acc = k.n_antigens + DIVISIONS_PENDING
            x[acc, i] += births / new_w
            if x[acc, i] >= 0.25:
                s = k.noise_sd * math.sqrt(x[acc, i])
                x[acc, i] = 0.0
                for a in range(k.n_antigens):
                    if x[a, i] > 0.0:
                        x[a, i] *= math.exp(s * normal(rs, S_BLASTS) - 0.5 * s * s)
                x[k.n_antigens + A_STALE, i] = 1.0  # densities moved: activation to recompute
        w[i] = new_w
        if losing and bl.cls[i] == 0 and new_w > 0.0:
            main_births[i] = births
    return lose_antigen(k, bl, n, main_births, rs) if losing else n


@njit(cache=True)
def lose_antigen(k, bl, n, main_births, rs):
    """Per tissue compartment, one draw of the daughters that lost a CAR antigen this step; return the count.

    The lost cells leave one main-clone agent picked in proportion to its births (a draw per
    agent would cost a fifth of the step for events of probability 5e-7).
    """
    negative = negative_subclones(k, bl, n)
    for c in (BM, EMD):
        births = 0.0
        for i in range(main_births.shape[0]):
            if bl.comp[i] == c:
                births += main_births[i]
        lost = binomial(rs, S_BLASTS, births, k.antigen_loss_per_division) if births > 0.0 else 0.0
        if lost <= 0.0:
            continue
        i = pick_by_weight(main_births, bl.comp, c, uniform(rs, S_BLASTS) * births)
        a = lost_antigen(k, uniform(rs, S_BLASTS))
        n = move_to_negative(k, bl, n, i, min(lost, bl.w[i]), a, negative)
    return n


@njit(cache=True)
def pick_by_weight(weights, comp, c, target):
    """The agent of compartment ``c`` whose weight holds ``target`` (0 <= target < their sum)."""
    last = -1
    for i in range(weights.shape[0]):
        if comp[i] == c and weights[i] > 0.0:
            last = i
            target -= weights[i]
            if target < 0.0:
                return i
    return last  # rounding at the top end


@njit(cache=True)
def negative_subclones(k, bl, n):
    """``[compartment, antigen]``: an agent of the subclone negative for that antigen there (-1: none)."""
    out = np.full((3, k.n_antigens), -1, np.int64)
    for j in range(n):
        if bl.cls[j] > 0 and bl.w[j] > 0.0:
            out[bl.comp[j], bl.cls[j] - 1] = j
    return out


@njit(cache=True)
def move_to_negative(k, bl, n, i, cells, a, negative):
    """Move ``cells`` of agent ``i`` to its compartment's subclone negative for antigen ``a``; return the count."""
    c = bl.comp[i]
    j = negative[c, a]
    if j >= 0:
        bl.w[i] -= cells
        bl.w[j] += cells
        return n
    if n >= bl.w.shape[0]:
        return n  # no free slot (never with the resample's headroom): the loss waits for the next division
    negative[c, a] = n
    bl.w[i] -= cells
    bl.w[n], bl.comp[n], bl.cls[n] = cells, c, 1 + a
    bl.x[:, n] = bl.x[:, i]
    bl.x[a, n] = 0.0
    bl.x[k.n_antigens + DIVISIONS_PENDING, n] = 0.0
    bl.x[k.n_antigens + A_STALE, n] = 1.0
    return n + 1
