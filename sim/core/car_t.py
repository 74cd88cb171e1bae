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
* every cell also dies at ``d_extra``: host rejection of an allogeneic product, and an
  eliminating agent (suicide switch, depleting antibody) while the clinic gives it.

Daughters inherit the parent's state (the agent's weight grows); cells that change
phenotype join one new agent per compartment and phenotype this step, unless the whole
agent changes.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from sim.core.common import N_COMP, add_movers, growth_prob, hill, place_movers, prob, relax
from sim.core.random import S_CAR_T, begin, binomial

MEMORY, EFFECTOR, EXHAUSTED = 0, 1, 2


class CarTConst(NamedTuple):
    """Constants of CAR T fate (per patient and product; rates per hour)."""

    r_max: float  # antigen-driven division at full signal
    r_cap: float  # division cap (one division per ~12 h)
    r_homeo: float  # homeostatic division at full lymphodepletion signal
    d_m: float  # memory-like death
    d_e: float  # effector death without antigen
    d_x: float  # exhausted death
    d_aicd: float  # activation-induced death per engagement
    k_diff: float  # memory -> effector at full signal
    f_rev: float  # effector -> memory, as a fraction of effector death
    k_exh: float  # exhaustion per engagement (by costimulation)
    stim_memory_h: float  # smoothing time of the stimulation signal
    k_s: float  # half-signal stimulation (engagements per cell per hour)
    ld_floor: float  # antigen-driven division without the lymphodepletion niche (fraction)
    fitness: float  # patient's product fitness x manufacturing fold
    room_cells: float  # room for CAR T cells (body capacity or programmed burst)
    il18_boost_max: float  # IL-18 gain on division (0: no response)
    rejection_per_h: float  # host rejection of an allogeneic product at full host immunity


@njit(cache=True)
def car_t_rates(k, cls, g, sigma, boost, ld_signal, space, damp):
    """Per-cell rates (division, death, to memory, to effector, to exhausted) for one phenotype.

    ``g``: signal from the smoothed stimulation; ``sigma``: engagements per cell per hour;
    ``space``: room left for T cells; ``damp``: steroid damping.
    """
    niche = k.ld_floor + (1.0 - k.ld_floor) * ld_signal  # homeostatic cytokines after lymphodepletion
    if cls == EXHAUSTED:
        return 0.0, k.d_x, 0.0, 0.0, 0.0
    homeo = k.r_homeo * ld_signal if cls == MEMORY else 0.5 * k.r_homeo * ld_signal
    div = k.r_max * g * k.fitness * boost * niche + homeo
    div = min(div, k.r_cap) * space * damp
    if cls == MEMORY:  # stem-like: no activation-induced death, half the exhaustion
        return div, k.d_m, 0.0, k.k_diff * g, 0.5 * k.k_exh * sigma
    return div, k.d_e * (1.0 - g) + k.d_aicd * sigma, k.f_rev * k.d_e * (1.0 - g), 0.0, k.k_exh * sigma


@njit(cache=True)
def signal(k, stim):
    """Proliferative signal ``S^2 / (S^2 + K_S^2)`` of the smoothed stimulation."""
    return hill(stim, k.k_s, 2.0)


@njit(cache=True)
def t_cell_space(k, car_t_cells):
    """Room left for CAR T division: max(0, 1 - T / room)."""
    return max(0.0, 1.0 - car_t_cells / k.room_cells)


@njit(cache=True)
def rejection_per_h(k, ld_signal):
    """Host rejection, rising as host immunity recovers (1 - L(t))."""
    return k.rejection_per_h * (1.0 - ld_signal)


@njit(cache=True)
def smooth_stimulation(k, stim, sigma, dt):
    """Relax the smoothed stimulation of each compartment toward this step's engagements."""
    for c in range(N_COMP):
        stim[c] = relax(stim[c], sigma[c], 1.0 / k.stim_memory_h, dt)


@njit(cache=True)
def step_probabilities(dt, k, st, ld_signal, damp, eliminated_per_h):
    """Per compartment and phenotype over dt: P(divide), P(die), P(change), and the split of changers.

    Returns ``prob[c, cls, 0..2]`` and ``split[c, cls, to]`` (the conditional share of the
    changers left after the earlier destinations, in the order memory, effector, exhausted).
    Rates depend on the agent only through its group, so they are computed once a step.
    """
    total = 0.0
    for i in range(st.car.n[0]):
        total += st.car.w[i]
    space = t_cell_space(k, total)
    d_extra = rejection_per_h(k, ld_signal) + eliminated_per_h
    probs = np.zeros((N_COMP, 3, 3))
    split = np.zeros((N_COMP, 3, 3))
    for c in range(N_COMP):
        g = signal(k, st.stim[c])
        for cls in range(3):
            div, death, to_m, to_e, to_x = car_t_rates(k, cls, g, st.sigma[c], st.boost[c], ld_signal, space, damp)
            h_out = to_m + to_e + to_x
            probs[c, cls, 0] = growth_prob(div, dt)
            probs[c, cls, 1] = prob(death + d_extra, dt)  # factor exp((div - death) dt)
            probs[c, cls, 2] = prob(h_out, dt)
            h_left = h_out
            for to, h in enumerate((to_m, to_e, to_x)):
                if h > 0.0:
                    split[c, cls, to] = 1.0 if h >= h_left else h / h_left
                    h_left -= h
    return probs, split


@njit(cache=True)
def nb_update_car_t(dt, k, st, ld_signal, damp, eliminated_per_h, rs):
    """Divide, die and change phenotype; update ``st.car.n[0]`` (at most 9 spawns).

    ``eliminated_per_h``: the eliminating agent's hazard this step (0 unless the clinic gave it).
    """
    begin(rs, S_CAR_T)
    f = st.car
    n = f.n[0]
    smooth_stimulation(k, st.stim, st.sigma, dt)
    probs, split = step_probabilities(dt, k, st, ld_signal, damp, eliminated_per_h)
    acc = np.zeros((N_COMP, 3))
    pick = np.zeros((N_COMP, 3), np.int64)
    for i in range(n):
        w = f.w[i]
        if w <= 0.0:
            continue
        c, cls = f.comp[i], f.cls[i]
        births = binomial(rs, S_CAR_T, w, probs[c, cls, 0])
        w = max(w + births - binomial(rs, S_CAR_T, w + births, probs[c, cls, 1]), 0.0)
        f.w[i] = w
        moving = binomial(rs, S_CAR_T, w, probs[c, cls, 2]) if w > 0.0 else 0.0
        if moving <= 0.0:
            continue
        to_m = binomial(rs, S_CAR_T, moving, split[c, cls, MEMORY])
        to_e = binomial(rs, S_CAR_T, moving - to_m, split[c, cls, EFFECTOR])
        to_x = binomial(rs, S_CAR_T, moving - to_m - to_e, split[c, cls, EXHAUSTED])
        if w == moving and max(to_m, to_e, to_x) == moving:  # the whole agent changes: it keeps its slot
            f.cls[i] = MEMORY if to_m == moving else (EFFECTOR if to_e == moving else EXHAUSTED)
            continue
        for to, cells in ((MEMORY, to_m), (EFFECTOR, to_e), (EXHAUSTED, to_x)):
            if cells > 0.0:
                add_movers(acc, pick, c, to, i, cells, rs, S_CAR_T)
        f.w[i] = w - moving
    f.n[0] = place_movers(f, n, acc, pick)
