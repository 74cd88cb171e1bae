"""Phase 4 (second half): megakaryopoiesis and platelets (Friberg-type transit with TPO feedback).

A proliferating megakaryocyte-progenitor compartment (Friberg 2002's structure, with the
HSPC as its source as in the neutrophil chain) is fed by HSPC output times the TPO-like
feedback ``G = min((PLT_healthy / PLT)^gamma, G_max)`` (TPO drives megakaryocyte
commitment, ploidy and so platelet yield), amplifies ``megakaryocyte_amplification``-fold
and matures through three transit compartments into circulating platelets, cleared at
``k_circ`` and consumed by activated macrophages (IEC-HS). All compartments count
platelet-equivalents, so the chain carries one unit.

Leukemic marrow suppresses megakaryopoiesis beyond what it does to HSPC: the patient's
baseline count sets a suppression factor ``s0`` at the baseline marrow blast share, and
the factor returns to 1 in proportion as the blast share falls (assumed). Lymphodepletion
takes the cycling progenitors with the myeloid lineage's hazard.

Platelets number about 1e12 and are a field, not agents: the chain advances by the
exponential integrator of :func:`platelet_flows`, the rule the ODE oracle integrates.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

PROLIFERATING, TRANSIT_1, TRANSIT_2, TRANSIT_3, CIRCULATING = range(5)
N_PLATELET = 5
N_TRANSIT = 4  # compartments with the transit rate (proliferating and three transit)


class PlateletConst(NamedTuple):
    """Rates (per hour) and set points of one patient's platelet chain."""

    k_tr: float  # transit between compartments (N_TRANSIT / mean transit time)
    r_prol: float  # progenitor division at TPO feedback 1
    k_circ: float  # clearance of circulating platelets
    input_per_hspc: float  # platelet-equivalents entering per HSPC per hour (no suppression)
    suppression0: float  # leukemic suppression of megakaryopoiesis at baseline (1: none)
    blast_share0: float  # marrow blast share at baseline
    tpo_gamma: float
    tpo_max_fold: float
    healthy: float  # circulating platelets of a healthy adult (TPO set point), cells
    consumption_per_h: float  # extra clearance per unit of blood macrophage activation
    blood_l: float


@njit(cache=True)
def platelet_count(pk, plt):
    """Circulating platelets (1e9/L)."""
    return plt[CIRCULATING] / (pk.blood_l * 1e9)


@njit(cache=True)
def tpo_fold(pk, plt):
    """TPO-like feedback ``min((PLT_healthy / PLT)^gamma, G_max)``."""
    return min((pk.healthy / max(plt[CIRCULATING], 1.0)) ** pk.tpo_gamma, pk.tpo_max_fold)


@njit(cache=True)
def suppression(pk, blast_share):
    """Leukemic suppression of megakaryopoiesis: ``s0`` at the baseline blast share, 1 without blasts."""
    if pk.blast_share0 <= 0.0:
        return 1.0
    return 1.0 + (pk.suppression0 - 1.0) * min(1.0, blast_share / pk.blast_share0)


@njit(cache=True)
def platelet_flows(pk, plt, hspc, blast_share, ld_hazard, macrophage):
    """Inflow (per hour) and loss rate (per hour) of each compartment from the current state.

    ``d plt[i] / dt = inflow[i] - loss[i] * plt[i]``: the one rule the kernel and the
    oracle share. The progenitors' division enters the loss with a minus sign.
    """
    inflow = np.empty(N_PLATELET)
    loss = np.empty(N_PLATELET)
    inflow[PROLIFERATING] = pk.input_per_hspc * suppression(pk, blast_share) * tpo_fold(pk, plt) * hspc
    loss[PROLIFERATING] = pk.k_tr + ld_hazard - pk.r_prol
    for i in range(1, N_TRANSIT):
        inflow[i] = pk.k_tr * plt[i - 1]
        loss[i] = pk.k_tr
    inflow[CIRCULATING] = pk.k_tr * plt[TRANSIT_3]
    loss[CIRCULATING] = pk.k_circ + pk.consumption_per_h * macrophage
    return inflow, loss


@njit(cache=True)
def nb_step_platelets(dt, pk, plt, hspc, blast_share, ld_hazard, macrophage):
    """Advance the chain ``plt`` one step in place (exact for inflows held over the step)."""
    inflow, loss = platelet_flows(pk, plt, hspc, blast_share, ld_hazard, macrophage)
    for i in range(N_PLATELET):
        lam = loss[i]
        decay = math.exp(-lam * dt)
        gain = inflow[i] * (-math.expm1(-lam * dt) / lam if lam != 0.0 else dt)
        plt[i] = max(plt[i] * decay + gain, 0.0)


def platelet_chain(p, hspc_healthy: float, hspc0: float, blood_l: float, baseline_1e9_per_l: float, blast_share0: float):
    """The patient's constants and the chain at its baseline steady state.

    The healthy chain, fed by ``hspc_healthy`` HSPC, holds ``platelets_healthy_1e9_per_l``;
    the patient's baseline count at ``hspc0`` HSPC fixes the leukemic suppression ``s0``.
    """
    k_tr = N_TRANSIT / p.megakaryocyte_transit_h
    amp = p.megakaryocyte_amplification
    r_prol = k_tr * (1.0 - 1.0 / amp)
    k_circ = 1.0 / p.platelet_residence_h
    healthy = p.platelets_healthy_1e9_per_l * 1e9 * blood_l
    input_per_hspc = k_circ * healthy / amp / hspc_healthy
    base = baseline_1e9_per_l * 1e9 * blood_l
    partial = PlateletConst(
        k_tr, r_prol, k_circ, input_per_hspc, 1.0, blast_share0, p.tpo_gamma, p.tpo_max_fold, healthy,
        p.platelet_consumption_per_h, blood_l,
    )  # fmt: skip
    flux = k_circ * base
    chain = np.full(N_PLATELET, flux / k_tr)
    chain[CIRCULATING] = base
    s0 = flux / amp / (input_per_hspc * tpo_fold(partial, chain) * max(hspc0, 1.0))
    return partial._replace(suppression0=s0), chain
