"""Phase 3: leukemic blasts divide (limited by marrow space), die and drift in antigen.

In marrow and EMD a blast divides at ``r_b * f_space`` and dies at ``d_b`` plus any
lymphodepletion hazard; circulating blasts do not divide and die at ``d_pb``. Daughters
inherit their parent's antigen densities with multiplicative log-normal noise: an agent
accumulates divisions per cell in its last property row and, once a quarter of its cells
have divided, every positive density is multiplied by ``exp(s Z - s^2 / 2)`` with
``s = sigma * sqrt(accumulated)`` (mean-preserving), so clones drift apart over divisions
at the cost of a few draws per doubling; antigen-negative subclones stay negative.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from sim.core.common import BM, PB, binom, growth_prob, prob


@njit(cache=True)
def nb_grow_blasts(dt, w, comp, x, n, r_b, d_b, f_space_bm, f_space_emd, d_pb, extra_death, noise_sd):
    """Update blast agents in place (no spawning)."""
    for i in range(n):
        if w[i] <= 0.0:
            continue
        c = comp[i]
        if c == PB:
            w[i] -= binom(w[i], prob(d_pb + extra_death, dt))
            continue
        f = f_space_bm if c == BM else f_space_emd
        births = binom(w[i], growth_prob(r_b * f, dt))
        deaths = binom(w[i] + births, prob(d_b + extra_death, dt))  # factor exp((r f - d) dt)
        new_w = w[i] + births - deaths
        if new_w < 0.0:
            new_w = 0.0
        if births > 0.0 and noise_sd > 0.0 and new_w > 0.0:
            acc = x.shape[0] - 1
            x[acc, i] += births / new_w
            if x[acc, i] >= 0.25:
                s = noise_sd * math.sqrt(x[acc, i])
                x[acc, i] = 0.0
                for k in range(acc):
                    if x[k, i] > 0.0:
                        x[k, i] *= math.exp(s * np.random.standard_normal() - 0.5 * s * s)
        w[i] = new_w
