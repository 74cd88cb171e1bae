"""Phase 6: trafficking between marrow, blood and the extramedullary site.

Each agent in compartment ``a`` sends ``Binomial(w, 1 - exp(-sum_b r[a, b] dt))`` cells out,
split among destinations in proportion to the rates. A whole agent that moves keeps its
slot; partial movers join one new agent per destination and class this step
(:func:`~sim.core.common.spawn_or_merge`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from sim.core.common import N_COMP, binom, prob, spawn_or_merge


@njit(cache=True)
def nb_traffic_cells(dt, w, comp, cls, x, n, rates, n_cls):
    """Move cells by ``rates[from, to]`` (per hour); return the new count (at most N_COMP * n_cls spawns)."""
    m = n
    slots = -np.ones((N_COMP, n_cls), np.int64)
    for i in range(n):
        if w[i] <= 0.0:
            continue
        a = comp[i]
        h_out = 0.0
        for b in range(N_COMP):
            h_out += rates[a, b]
        if h_out <= 0.0:
            continue
        moving = binom(w[i], prob(h_out, dt))
        if moving <= 0.0:
            continue
        left, h_left = moving, h_out
        whole = moving == w[i]
        for b in range(N_COMP):
            r = rates[a, b]
            if r <= 0.0 or left <= 0.0:
                continue
            take = left if r >= h_left else binom(left, r / h_left)
            left -= take
            h_left -= r
            if take <= 0.0:
                continue
            if whole and take == moving:
                comp[i] = b
                break
            m = spawn_or_merge(w, comp, cls, x, m, slots, i, b, cls[i], take)
    return m
