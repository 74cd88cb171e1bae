"""Phase 6: trafficking between marrow, blood and the extramedullary site.

Each agent in compartment ``a`` sends ``Binomial(w, 1 - exp(-sum_b r[a, b] dt))`` cells out,
split among destinations in proportion to the rates. A whole agent that moves keeps its
slot; partial movers join one new agent per destination and class this step
(:func:`~sim.core.common.spawn_or_merge`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from sim.core.common import BM, EMD, N_COMP, PB, add_movers, place_movers, prob
from sim.core.random import S_TRAFFIC, begin, binomial


class TrafficConst(NamedTuple):
    """Trafficking rates (per hour)."""

    car_t_bm_entry_per_h: float
    car_t_bm_exit_per_h: float
    car_t_emd_entry_per_h: float
    car_t_emd_exit_per_h: float
    blast_egress_per_h: float  # at a full marrow (scaled by occupancy^k)
    blast_homing_per_h: float
    c_max: float  # marrow capacity (cells)
    crowding_exponent: float
    emd_present: bool


@njit(cache=True)
def traffic_rates(k, occupancy):
    """Per-hour rates ``[from, to]`` for CAR T cells and for blasts at marrow ``occupancy``."""
    car = np.zeros((N_COMP, N_COMP))
    car[PB, BM] = k.car_t_bm_entry_per_h
    car[BM, PB] = k.car_t_bm_exit_per_h
    blast = np.zeros((N_COMP, N_COMP))
    blast[BM, PB] = k.blast_egress_per_h * (occupancy / k.c_max) ** k.crowding_exponent
    blast[PB, BM] = k.blast_homing_per_h
    if k.emd_present:
        car[PB, EMD] = k.car_t_emd_entry_per_h
        car[EMD, PB] = k.car_t_emd_exit_per_h
    return car, blast


@njit(cache=True)
def leave_probabilities(dt, rates):
    """P(leave) per compartment over dt, and the conditional split of leavers among destinations."""
    p_out = np.zeros(N_COMP)
    split = np.zeros((N_COMP, N_COMP))
    for a in range(N_COMP):
        h_out = 0.0
        for b in range(N_COMP):
            h_out += rates[a, b]
        p_out[a] = prob(h_out, dt)
        h_left = h_out
        for b in range(N_COMP):
            r = rates[a, b]
            if r > 0.0:
                split[a, b] = 1.0 if r >= h_left else r / h_left
                h_left -= r
    return p_out, split


@njit(cache=True)
def nb_traffic_cells(dt, f, n, rates, n_cls, rs):
    """Move cells of frame ``f`` by ``rates[from, to]`` (per hour); return the new count.

    A whole agent that moves keeps its slot; partial movers join one new agent per
    destination and class (at most ``N_COMP * n_cls`` new agents).
    """
    begin(rs, S_TRAFFIC)
    p_out, split = leave_probabilities(dt, rates)
    acc = np.zeros((N_COMP, n_cls))
    pick = np.zeros((N_COMP, n_cls), np.int64)
    for i in range(n):
        w = f.w[i]
        a = f.comp[i]
        if w <= 0.0 or p_out[a] <= 0.0:
            continue
        moving = binomial(rs, S_TRAFFIC, w, p_out[a])
        left = moving
        for b in range(N_COMP):
            if left <= 0.0:
                break
            take = binomial(rs, S_TRAFFIC, left, split[a, b])
            left -= take
            if take <= 0.0:
                continue
            if moving == w and take == moving:
                f.comp[i] = b
                break
            add_movers(acc, pick, b, f.cls[i], i, take, rs, S_TRAFFIC)
            f.w[i] -= take
    return place_movers(f, n, acc, pick)
