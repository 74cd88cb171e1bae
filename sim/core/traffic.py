"""Phase 6: trafficking between marrow, blood and the extramedullary site.

Each agent in compartment ``a`` sends ``Binomial(w, 1 - exp(-sum_b r[a, b] dt))`` cells out,
split among destinations in proportion to the rates; movers form a new agent unless the
whole agent moves.
"""

from __future__ import annotations

from numba import njit

from sim.core.common import N_COMP, binom, prob


@njit(cache=True)
def nb_traffic_cells(dt, w, comp, cls, x, n, rates):
    """Move cells by ``rates[from, to]`` (per hour); return the new count (spawns <= 2 per agent)."""
    m = n
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
            w[m] = take
            comp[m] = b
            cls[m] = cls[i]
            for p in range(x.shape[0]):
                x[p, m] = x[p, i]
            w[i] -= take
            m += 1
    return m
