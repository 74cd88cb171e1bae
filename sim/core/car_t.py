"""Phase 2: CAR T fate.

Per agent (phenotype 0 memory-like, 1 effector, 2 exhausted), with the compartment's
smoothed stimulation ``S`` and signal ``g = S^2 / (S^2 + K_S^2)`` (sigmoid: a trickle of
antigen does not sustain proliferation):

* division: ``r_max * g * fitness * boost * (f_LD + (1 - f_LD) L(t))``, where L(t) is the
  lymphodepletion signal (homeostatic cytokines, no competing host lymphocytes), plus
  homeostatic division ``r_homeo * L(t)``, capped at ``r_cap`` (a T cell divides at most
  every ~12 h) and scaled by ``space = 1 - T / K_T`` (the body's room for T cells);
  exhausted cells do not divide;
* death: memory ``d_M``; effector ``d_E * (1 - g) + d_AICD * sigma`` (contraction when
  antigen is gone, activation-induced death while it is abundant);
  exhausted ``d_X``;
* memory -> effector at ``k_diff * g``; effector -> memory at ``f_rev * d_E * (1 - g)``;
* memory/effector -> exhausted at ``k_exh(costimulation) * sigma`` per engagement (memory
  at half that rate);
* every cell also dies at ``d_extra`` (host rejection of an allogeneic product).

Daughters inherit the parent's state (the agent's weight grows); cells that change
phenotype join one new agent per compartment and phenotype this step, unless the whole
agent changes.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from sim.core.common import N_COMP, binom, growth_prob, hill, prob, relax, spawn_or_merge

MEMORY, EFFECTOR, EXHAUSTED = 0, 1, 2


@njit(cache=True)
def car_t_rates(
    cls,
    g,
    sigma,
    fitness,
    boost,
    ld_signal,
    ld_floor,
    space,
    damp,
    r_max,
    r_cap,
    r_homeo,
    d_m,
    d_e,
    d_x,
    d_aicd,
    k_diff,
    f_rev,
    k_exh,
):
    """Per-cell rates (division, death, to memory, to effector, to exhausted) for one phenotype."""
    niche = ld_floor + (1.0 - ld_floor) * ld_signal  # homeostatic cytokines after lymphodepletion
    if cls == EXHAUSTED:
        return 0.0, d_x, 0.0, 0.0, 0.0
    homeo = r_homeo * ld_signal if cls == MEMORY else 0.5 * r_homeo * ld_signal
    div = r_max * g * fitness * boost * niche + homeo
    div = min(div, r_cap) * space * damp
    if cls == MEMORY:  # stem-like: no activation-induced death, half the exhaustion
        return div, d_m, 0.0, k_diff * g, 0.5 * k_exh * sigma
    return div, d_e * (1.0 - g) + d_aicd * sigma, f_rev * d_e * (1.0 - g), 0.0, k_exh * sigma


@njit(cache=True)
def nb_update_car_t(
    dt,
    w,
    comp,
    cls,
    x,
    n,
    stim,
    sigma,
    boost,
    fitness,
    ld_signal,
    ld_floor,
    space,
    damp,
    d_extra,
    stim_memory_h,
    k_s,
    r_max,
    r_cap,
    r_homeo,
    d_m,
    d_e,
    d_x,
    d_aicd,
    k_diff,
    f_rev,
    k_exh,
):
    """Divide, die and change phenotype; return the new agent count (at most 9 spawns)."""
    for c in range(N_COMP):
        stim[c] = relax(stim[c], sigma[c], 1.0 / stim_memory_h, dt)
    m = n
    slots = -np.ones((N_COMP, 3), np.int64)
    out = np.zeros(3)
    for i in range(n):
        if w[i] <= 0.0:
            continue
        c = comp[i]
        g = hill(stim[c], k_s, 2.0)
        div, death, to_m, to_e, to_x = car_t_rates(
            cls[i],
            g,
            sigma[c],
            fitness,
            boost[c],
            ld_signal,
            ld_floor,
            space,
            damp,
            r_max,
            r_cap,
            r_homeo,
            d_m,
            d_e,
            d_x,
            d_aicd,
            k_diff,
            f_rev,
            k_exh,
        )
        births = binom(w[i], growth_prob(div, dt))
        deaths = binom(w[i] + births, prob(death + d_extra, dt))  # factor exp((div - death) dt)
        w[i] = w[i] + births - deaths
        if w[i] < 0.0:
            w[i] = 0.0
        h_out = to_m + to_e + to_x
        if h_out <= 0.0 or w[i] <= 0.0:
            continue
        moving = binom(w[i], prob(h_out, dt))
        if moving <= 0.0:
            continue
        out[MEMORY] = 0.0
        out[EFFECTOR] = 0.0
        out[EXHAUSTED] = 0.0
        left, h_left = moving, h_out
        for k, h in ((MEMORY, to_m), (EFFECTOR, to_e), (EXHAUSTED, to_x)):
            if h <= 0.0:
                continue
            take = left if h >= h_left else binom(left, h / h_left)
            out[k] = take
            left -= take
            h_left -= h
        stay = w[i] - moving
        for k in range(3):
            if out[k] <= 0.0:
                continue
            if stay <= 0.0 and out[k] == moving:
                cls[i] = k
                break
            m = spawn_or_merge(w, comp, cls, x, m, slots, i, c, k, out[k])
    return m
