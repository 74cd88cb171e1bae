"""Phase 1: encounters and killing, per compartment.

A CAR T cell engages activating targets at a Holling type-II rate in their density; a met
cell is picked in proportion to abundance and activates it with probability
``activation(...)`` (CAR Hill function times the iCAR veto). Each target agent then dies
with the hazard its share of the engagements gives. Normal myeloid stages are targets
under the same rule (on-target, off-tumor), and so are CAR T cells that carry a target
antigen the product was not edited to lack (fratricide). Engagements strong enough for cytokine
release (a higher density threshold) stimulate the T cells. Each lethal engagement also kills
``bystander_per_kill`` cells around it whatever their antigens (Fas ligand and cytokines):
the kills spread over the compartment's blasts and myeloid cells, and only blasts die of
them (assumed: resting normal progenitors carry little Fas) (:func:`bystander_hazard`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from sim.core.common import N_COMP, activation, engagement_rate, prob
from sim.core.random import S_ENGAGE, begin, binomial


class Targeting(NamedTuple):
    """How the product reads antigen densities: CAR antigens, logic gate, iCAR veto."""

    car1: int  # antigen index of the first CAR target
    car2: int  # second target (-1: none)
    logic: int  # 0 single, 1 OR, 2 AND
    icar: int  # antigen index of the iCAR (-1: none)
    k_kill_molecules: float  # half-activation density for killing
    k_cytokine_molecules: float  # half-activation density for cytokine release
    hill_n: float
    imax: float  # maximal iCAR veto (0-1)
    k_inh_molecules: float  # half-veto iCAR antigen density
    icar_hill_m: float


class EngageConst(NamedTuple):
    """Constants of the engagement phase (per patient and product)."""

    search_rate_l_per_h: float
    handling_time_h: float
    kill_per_activation: float
    competence_memory: float  # killing competence of memory-like cells (effector = 1)
    competence_exhausted: float
    car_a_kill: float  # activation of a CAR T cell as a target (fratricide)
    car_a_stim: float
    tissue_a_stim: float  # cytokine-level activation by the target on normal tissue (endothelium)
    tissue_sigma_per_h: float  # engagements per CAR T cell per hour with that tissue
    bystander_per_kill: float  # antigen-independent deaths per lethal engagement


@njit(cache=True)
def target_activation(x, j, tg, fold):
    """Killing- and cytokine-level activation of the target in column ``j`` of ``x[antigen, target]``.

    ``fold[antigen]`` scales the densities as CAR T cells see them (an adjuvant; ones otherwise).
    """
    d1 = x[tg.car1, j] * fold[tg.car1]
    d2 = x[tg.car2, j] * fold[tg.car2] if tg.car2 >= 0 else 0.0
    di = x[tg.icar, j] * fold[tg.icar] if tg.icar >= 0 else 0.0
    a_kill = activation(d1, d2, tg.logic, di, tg.k_kill_molecules, tg.hill_n, tg.imax, tg.k_inh_molecules, tg.icar_hill_m)
    a_stim = activation(d1, d2, tg.logic, di, tg.k_cytokine_molecules, tg.hill_n, tg.imax, tg.k_inh_molecules, tg.icar_hill_m)
    return a_kill, a_stim


@njit(cache=True)
def nb_target_activation(x, n, tg, fold, a_kill, a_stim):
    """Fill ``a_kill``/``a_stim`` for targets ``0..n-1`` of ``x[antigen, target]``."""
    for j in range(n):
        a_kill[j], a_stim[j] = target_activation(x, j, tg, fold)


@njit(cache=True)
def nb_refresh_activation(x, n, tg, fold, a_kill, a_stim, stale):
    """Recompute ``a_kill``/``a_stim`` of the targets ``0..n-1`` marked ``stale`` (then clear the mark)."""
    for j in range(n):
        if stale[j] != 0.0:
            a_kill[j], a_stim[j] = target_activation(x, j, tg, fold)
            stale[j] = 0.0


@njit(cache=True)
def competence(k, cls):
    """Killing competence of a CAR T cell of phenotype ``cls`` (memory-like, effector, exhausted)."""
    if cls == 0:
        return k.competence_memory
    return 1.0 if cls == 1 else k.competence_exhausted


@njit(cache=True)
def kill_hazard_and_stimulation(k, act_kill, act_stim, t_kill, volume_l, damp):
    """Per-compartment hazard per unit activation, and cytokine-level engagements per T cell per hour.

    ``act_*``: activation-weighted targets; ``t_kill``: competence-weighted T cells.
    """
    if act_kill <= 0.0 or t_kill <= 0.0:
        return 0.0, 0.0
    rho = engagement_rate(act_kill, t_kill, volume_l, k.search_rate_l_per_h, k.handling_time_h)
    return rho * t_kill * k.kill_per_activation * damp / act_kill, rho * act_stim / act_kill


@njit(cache=True)
def bystander_hazard(k, hazard, act_kill, cells):
    """Antigen-independent hazard on each blast of a compartment holding ``cells`` blasts and myeloid cells.

    ``hazard * act_kill`` is the compartment's lethal engagements per hour; each kills
    ``bystander_per_kill`` neighbours picked among its cells.
    """
    if cells <= 0.0:
        return 0.0
    return k.bystander_per_kill * hazard * act_kill / cells


@njit(cache=True)
def nb_engage_targets(dt, k, st, damp, rs):
    """Kill targets and set per-compartment T-cell stimulation of state ``st``.

    Overwrites ``st.kills_blast[c]``, ``st.kills_myeloid[s]`` (cells killed this step),
    ``st.sigma[c]`` (cytokine-level engagements per T cell per hour, tissue included) and
    ``st.t_engaged[c]`` (competence-weighted T cells); adds to each CAR T agent's load.
    """
    begin(rs, S_ENGAGE)
    car, bl = st.car, st.bl
    n_car, n_bl = st.car.n[0], st.bl.n[0]
    act_kill = np.zeros(N_COMP)
    act_stim = np.zeros(N_COMP)
    cells = np.zeros(N_COMP)
    for j in range(n_bl):
        act_kill[bl.comp[j]] += bl.w[j] * st.bl_a_kill[j]
        act_stim[bl.comp[j]] += bl.w[j] * st.bl_a_stim[j]
        cells[bl.comp[j]] += bl.w[j]
    for s in range(st.my_w.shape[0]):
        act_kill[st.my_comp[s]] += st.my_w[s] * st.my_a_kill[s]
        act_stim[st.my_comp[s]] += st.my_w[s] * st.my_a_stim[s]
        cells[st.my_comp[s]] += st.my_w[s]
    t_kill = np.zeros(N_COMP)
    for i in range(n_car):
        t_kill[car.comp[i]] += car.w[i] * competence(k, car.cls[i])
        act_kill[car.comp[i]] += car.w[i] * k.car_a_kill  # fratricide: CAR T cells carrying the target
        act_stim[car.comp[i]] += car.w[i] * k.car_a_stim
    hazard = np.zeros(N_COMP)
    bystander = np.zeros(N_COMP)
    for c in range(N_COMP):
        st.t_engaged[c] = t_kill[c]
        st.kills_blast[c] = 0.0
        hazard[c], st.sigma[c] = kill_hazard_and_stimulation(k, act_kill[c], act_stim[c], t_kill[c], st.volume_l[c], damp)
        bystander[c] = bystander_hazard(k, hazard[c], act_kill[c], cells[c])
    for j in range(n_bl):
        h = hazard[bl.comp[j]] * st.bl_a_kill[j] + bystander[bl.comp[j]]
        if h > 0.0:
            killed = binomial(rs, S_ENGAGE, bl.w[j], prob(h, dt))
            bl.w[j] -= killed
            st.kills_blast[bl.comp[j]] += killed
    if k.car_a_kill > 0.0:
        for i in range(n_car):
            h = hazard[car.comp[i]] * k.car_a_kill
            if h > 0.0:
                car.w[i] -= binomial(rs, S_ENGAGE, car.w[i], prob(h, dt))
    for s in range(st.my_w.shape[0]):
        st.kills_myeloid[s] = 0.0
        h = hazard[st.my_comp[s]] * st.my_a_kill[s]
        if h > 0.0:
            killed = binomial(rs, S_ENGAGE, st.my_w[s], prob(h, dt))
            st.my_w[s] -= killed
            st.kills_myeloid[s] = killed
            st.killed_myeloid[s] += killed
    add_tissue_engagement(k, st.sigma)
    for i in range(n_car):
        car.x[0, i] += st.sigma[car.comp[i]] * dt  # cumulative engagement load


@njit(cache=True)
def add_tissue_engagement(k, sigma):
    """Add the engagements per CAR T cell per hour with target-positive tissue of marrow and blood."""
    if k.tissue_sigma_per_h > 0.0:
        sigma[0] += k.tissue_sigma_per_h
        sigma[1] += k.tissue_sigma_per_h
