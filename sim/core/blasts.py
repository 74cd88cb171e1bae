"""Phase 3: leukemic blasts divide (limited by marrow space), die and drift in antigen.

In marrow and EMD a blast divides at ``r_b * f_space`` and dies at ``d_b`` plus any
lymphodepletion hazard; circulating blasts do not divide and die at ``d_pb``. Daughters
inherit their parent's antigen densities with multiplicative log-normal noise: an agent
accumulates divisions per cell in its last property row and, once a quarter of its cells
have divided, every positive density is multiplied by ``exp(s Z - s^2 / 2)`` with
``s = sigma * sqrt(accumulated)`` (mean-preserving), so clones drift apart over divisions
at the cost of a few draws per doubling; antigen-negative subclones stay negative. An
agent also carries its activation by the product (``a_kill``, ``a_stim``), recomputed only
when its densities move (``a_stale``), so it travels with the agent through moves and merges.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from sim.core.common import BM, EMD, PB, growth_prob, prob, space_factor
from sim.core.random import S_BLASTS, begin, binomial, normal

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
    """Update the ``n`` blast agents of ``bl`` in place (no spawning).

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
