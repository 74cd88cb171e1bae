"""Phase 0: keep each agent kind near its resolution by splitting and merging.

* **Compact**: agents with zero weight are removed.
* **Merge** (too many agents): the lightest agents of the same compartment and class
  are merged in pairs; the survivor keeps its properties with probability proportional
  to its weight, so every property's weighted mean is unbiased. Weight is conserved
  exactly.
* **Split** (too few agents): the heaviest agents with weight >= 2 are halved (floor and
  ceiling), so weights reach single cells at small numbers and extinction is real.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from sim.core.random import S_RESAMPLE, begin, uniform


@njit(cache=True, inline="always")
def copy_agent(f, src, dst, w):
    """Put agent ``src``'s compartment, class and properties in slot ``dst``, with weight ``w``."""
    f.w[dst] = w
    f.comp[dst] = f.comp[src]
    f.cls[dst] = f.cls[src]
    for k in range(f.x.shape[0]):
        f.x[k, dst] = f.x[k, src]


@njit(cache=True)
def nb_compact_agents(f, n):
    """Remove zero-weight agents; return the new count."""
    j = 0
    for i in range(n):
        if f.w[i] > 0.0:
            if i != j:
                copy_agent(f, i, j, f.w[i])
            j += 1
    return j


@njit(cache=True)
def nb_merge_agents(f, n, target, n_cls, rs):
    """Merge lightest same-group pairs until at most ``target`` agents remain."""
    w, comp, cls = f.w, f.comp, f.cls
    order = np.argsort(w[:n])
    n_groups = 3 * n_cls
    pending = -np.ones(n_groups, np.int64)
    to_merge = n - target
    merged = 0
    for r in range(n):
        if merged >= to_merge:
            break
        i = order[r]
        g = comp[i] * n_cls + cls[i]
        j = pending[g]
        if j < 0:
            pending[g] = i
            continue
        total = w[i] + w[j]
        if uniform(rs, S_RESAMPLE) * total < w[i]:
            keep, drop = i, j
        else:
            keep, drop = j, i
        w[keep] = total
        w[drop] = 0.0
        pending[g] = -1
        merged += 1
    return nb_compact_agents(f, n)


@njit(cache=True)
def nb_split_agents(f, n, target):
    """Halve the heaviest agents (weight >= 2) until ``target`` agents exist or none can split."""
    w = f.w
    order = np.argsort(-w[:n])
    m = n
    for r in range(n):
        if m >= target:
            break
        i = order[r]
        if w[i] < 2.0:
            break
        half = np.floor(w[i] / 2.0)
        w[i] -= half
        copy_agent(f, i, m, half)
        m += 1
    return m


@njit(cache=True)
def nb_resample_agents(f, n, target, n_cls, rs):
    """Compact, then merge above ``target + target // 8`` or split below ``target // 2``; return the count.

    The hysteresis keeps the sort out of most steps. The caller guarantees capacity for
    ``target`` agents.
    """
    begin(rs, S_RESAMPLE)
    n = nb_compact_agents(f, n)
    if n > target + target // 8:
        return nb_merge_agents(f, n, target, n_cls, rs)
    if n < target // 2:
        return nb_split_agents(f, n, (3 * target) // 4)
    return n
