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

import numpy as np
from numba import njit

from sim.core.common import binom, growth_prob, poisson, prob

N_STAGES = 9


@njit(cache=True)
def nb_step_hematopoiesis(dt, w, space_ratio, gcsf, ld_hazard, r_h, h_set, d_h, m_h, r_p, k_tr, k_rel, k_circ, k_mono):
    """Advance the lineage one step in place."""
    h = w[0]
    flow = np.zeros(N_STAGES)
    born = np.zeros(N_STAGES)
    dead = np.zeros(N_STAGES)
    # HSPC
    born[0] = binom(h, growth_prob(r_h * space_ratio, dt))
    dead[0] = binom(h + born[0], prob(r_h * h / h_set + ld_hazard, dt))
    to_blast = poisson(d_h * h * dt) if h > 0.0 else 0.0
    to_mono = poisson(m_h * h * dt) if h > 0.0 else 0.0
    # mitotic precursors
    r_div = min(r_p * gcsf, 0.95 * k_tr)
    lam = k_tr + ld_hazard - r_div  # net loss rate of a mitotic stage
    stay = math.exp(-lam * dt)
    leave = (k_tr + ld_hazard) * (-math.expm1(-lam * dt)) / lam  # exits per starting cell (daughters included)
    for s in range(1, 4):
        # exact in the mean for the linear stage: E[w'] = w exp(-lam dt), E[exits] = w * leave
        born[s] = binom(w[s], stay + leave - 1.0)
        exits = binom(w[s] + born[s], leave / (stay + leave))
        flow[s] = binom(exits, k_tr / (k_tr + ld_hazard))
        dead[s] = exits - flow[s]
    for s in range(4, 6):
        flow[s] = binom(w[s], prob(k_tr, dt))
    flow[6] = binom(w[6], prob(k_rel * gcsf, dt))
    dead[7] = binom(w[7], prob(k_circ, dt))
    dead[8] = binom(w[8], prob(k_mono, dt))
    # apply
    w[0] += born[0] - dead[0]
    w[1] += to_blast + born[1] - dead[1] - flow[1]
    for s in range(2, 7):
        w[s] += flow[s - 1] + born[s] - dead[s] - flow[s]
    w[7] += flow[6] - dead[7]
    w[8] += to_mono - dead[8]
    for s in range(N_STAGES):
        if w[s] < 0.0:
            w[s] = 0.0
