"""Phase 4: normal hematopoiesis (Friberg-type transit with marrow-space and G-CSF feedback).

One agent per lineage class (cells of a class are identical, so merging is exact):

* HSPC: logistic self-renewal ``r_H H (f/f0 - H/H_set)`` where ``f`` is the marrow space
  factor shared with blasts; asymmetric output ``d_H H`` to myeloblasts and ``m_H H`` to
  monocytes;
* myeloblast, promyelocyte, myelocyte: divide at ``min(r_p G, 0.95 k_tr)`` and transit at
  ``k_tr``; metamyelocyte and band transit at ``k_tr``;
* marrow reserve: release to blood at ``k_rel G``; blood neutrophils cleared at ``k_circ``;
  monocytes cleared at ``k_mono``.

``G = min((ANC0/ANC)^gamma, G_max)`` is the G-CSF-like feedback. Cycling classes also take
the lymphodepletion hazard. All flows are computed from the start-of-step state.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from sim.core.common import growth_prob, prob
from sim.core.random import S_HEMATOPOIESIS, begin, binomial, poisson

N_STAGES = 9
HSPC, MYELOBLAST, RESERVE, BLOOD_NEUTROPHIL, MONOCYTE = 0, 1, 6, 7, 8


class LineageConst(NamedTuple):
    """Rates and healthy steady state of the myeloid lineage for one patient (rates per hour)."""

    k_tr: float  # transit between maturation stages
    r_p: float  # division of mitotic precursors at G-CSF 1
    k_rel: float  # release from the marrow reserve
    k_circ: float  # clearance of blood neutrophils
    k_mono: float  # clearance of monocytes
    d_h: float  # HSPC output to myeloblasts per HSPC
    m_h: float  # HSPC output to monocytes per HSPC
    r_h: float  # HSPC self-renewal (at the patient's age)
    healthy: np.ndarray  # cells per class at the healthy ANC
    background_bm: float  # normal marrow cells outside the explicit lineage
    background_floor: float  # share of the background that survives aplasia
    gcsf_gamma: float
    gcsf_max_fold: float
    anc0_1e9_per_l: float  # the patient's baseline ANC (G-CSF set point)
    blood_l: float
    f0: float  # marrow space factor of a normal marrow


def marrow_reserve_fold(p, age_years: float) -> float:
    """HSPC regeneration at ``age_years`` relative to 40 years: the ratio of hematopoietic marrow cellularity.

    Cellularity falls linearly with age (``marrow_cellularity_per_decade``); regeneration after aplasia is taken
    to scale with it (assumed), while the healthy steady state stays the patient's own.
    """
    drop = p.marrow_cellularity_per_decade * (age_years - 40.0) / 10.0
    return max(p.marrow_cellularity_at_40 - drop, 0.05) / p.marrow_cellularity_at_40


def lineage_steady(p, c_norm: float, blood_l: float, anc0: float, f0: float, age_years: float = 40.0) -> LineageConst:
    """Derive transit rates and the healthy steady state (Friberg-type chain) from parameters ``p``."""
    k_tr = 5.0 / p.precursor_transit_h
    a = p.mitotic_amplification ** (1.0 / 3.0)
    k_circ = math.log(2) / p.neutrophil_half_life_h
    k_mono = math.log(2) / p.monocyte_half_life_h
    n = np.zeros(N_STAGES)
    n[BLOOD_NEUTROPHIL] = p.anc_healthy_1e9_per_l * 1e9 * blood_l
    flux = k_circ * n[BLOOD_NEUTROPHIL]
    n[RESERVE] = flux * p.reserve_residence_h
    n[3] = n[4] = n[5] = flux / k_tr  # myelocyte, metamyelocyte, band
    n[2] = flux / (a * k_tr)  # promyelocyte
    n[MYELOBLAST] = flux / (a * a * k_tr)
    n[HSPC] = p.hspc_fraction_of_bm * c_norm
    n[MONOCYTE] = p.monocyte_healthy_1e9_per_l * 1e9 * blood_l
    bm = n[: RESERVE + 1].sum()
    return LineageConst(
        k_tr=k_tr,
        r_p=k_tr * (1.0 - 1.0 / a),
        k_rel=1.0 / p.reserve_residence_h,
        k_circ=k_circ,
        k_mono=k_mono,
        d_h=flux / a**3 / n[HSPC],
        m_h=k_mono * n[MONOCYTE] / n[HSPC],
        r_h=p.hspc_renewal_per_h * marrow_reserve_fold(p, age_years),
        healthy=n,
        background_bm=max(c_norm - bm, 0.1 * c_norm),
        background_floor=p.background_floor,
        gcsf_gamma=p.gcsf_gamma,
        gcsf_max_fold=p.gcsf_max_fold,
        anc0_1e9_per_l=anc0,
        blood_l=blood_l,
        f0=f0,
    )


@njit(cache=True)
def background_cells(lin, hspc):
    """Marrow cells outside the explicit lineage.

    A fixed floor (lymphocytes, plasma cells, stroma that survive aplasia) plus a part
    that follows HSPC (erythroid and other output).
    """
    return lin.background_bm * (lin.background_floor + (1.0 - lin.background_floor) * hspc / lin.healthy[HSPC])


@njit(cache=True)
def normal_bm_cells(lin, w):
    """Normal marrow nucleated cells: explicit lineage in marrow plus the background."""
    total = 0.0
    for s in range(RESERVE + 1):
        total += w[s]
    return total + background_cells(lin, w[HSPC])


@njit(cache=True)
def anc(lin, w):
    """Absolute neutrophil count in blood (1e9/L)."""
    return w[BLOOD_NEUTROPHIL] / (lin.blood_l * 1e9)


@njit(cache=True)
def gcsf_fold(lin, anc_now):
    """G-CSF-like feedback ``min((ANC0 / ANC)^gamma, G_max)``."""
    return min((lin.anc0_1e9_per_l / max(anc_now, 1e-6)) ** lin.gcsf_gamma, lin.gcsf_max_fold)


@njit(cache=True)
def mitotic_transit(lin, gcsf, ld_hazard, dt):
    """Per starting cell of a mitotic stage over dt: (cells staying, exits, share of exits that mature)."""
    r_div = min(lin.r_p * gcsf, 0.95 * lin.k_tr)
    lam = lin.k_tr + ld_hazard - r_div  # net loss rate of a mitotic stage
    stay = math.exp(-lam * dt)
    leave = (lin.k_tr + ld_hazard) * (-math.expm1(-lam * dt)) / lam  # exits per starting cell (daughters included)
    return stay, leave, lin.k_tr / (lin.k_tr + ld_hazard)


@njit(cache=True)
def nb_step_hematopoiesis(dt, lin, w, space_ratio, h_set, ld_hazard, rs):
    """Advance the lineage ``w[stage]`` one step in place.

    ``space_ratio``: marrow space left relative to a normal marrow (``f / f0``); ``h_set``: HSPC set point (host or
    donor marrow); ``ld_hazard``: lymphodepletion hazard of cycling classes (per hour).
    """
    begin(rs, S_HEMATOPOIESIS)
    gcsf = gcsf_fold(lin, anc(lin, w))
    h = w[HSPC]
    flow = np.zeros(N_STAGES)
    born = np.zeros(N_STAGES)
    dead = np.zeros(N_STAGES)
    born[HSPC] = binomial(rs, S_HEMATOPOIESIS, h, growth_prob(lin.r_h * space_ratio, dt))
    dead[HSPC] = binomial(rs, S_HEMATOPOIESIS, h + born[HSPC], prob(lin.r_h * h / h_set + ld_hazard, dt))
    to_blast = poisson(rs, S_HEMATOPOIESIS, lin.d_h * h * dt) if h > 0.0 else 0.0
    to_mono = poisson(rs, S_HEMATOPOIESIS, lin.m_h * h * dt) if h > 0.0 else 0.0
    stay, leave, mature = mitotic_transit(lin, gcsf, ld_hazard, dt)
    for s in range(1, 4):
        # exact in the mean for the linear stage: E[w'] = w exp(-lam dt), E[exits] = w * leave
        born[s] = binomial(rs, S_HEMATOPOIESIS, w[s], stay + leave - 1.0)
        exits = binomial(rs, S_HEMATOPOIESIS, w[s] + born[s], leave / (stay + leave))
        flow[s] = binomial(rs, S_HEMATOPOIESIS, exits, mature)
        dead[s] = exits - flow[s]
    for s in range(4, 6):
        flow[s] = binomial(rs, S_HEMATOPOIESIS, w[s], prob(lin.k_tr, dt))
    flow[RESERVE] = binomial(rs, S_HEMATOPOIESIS, w[RESERVE], prob(lin.k_rel * gcsf, dt))
    dead[BLOOD_NEUTROPHIL] = binomial(rs, S_HEMATOPOIESIS, w[BLOOD_NEUTROPHIL], prob(lin.k_circ, dt))
    dead[MONOCYTE] = binomial(rs, S_HEMATOPOIESIS, w[MONOCYTE], prob(lin.k_mono, dt))
    w[HSPC] += born[HSPC] - dead[HSPC]
    w[MYELOBLAST] += to_blast + born[MYELOBLAST] - dead[MYELOBLAST] - flow[MYELOBLAST]
    for s in range(2, RESERVE + 1):
        w[s] += flow[s - 1] + born[s] - dead[s] - flow[s]
    w[BLOOD_NEUTROPHIL] += flow[RESERVE] - dead[BLOOD_NEUTROPHIL]
    w[MONOCYTE] += to_mono - dead[MONOCYTE]
    for s in range(N_STAGES):
        if w[s] < 0.0:
            w[s] = 0.0
