"""Phase 1: encounters and killing, per compartment.

A CAR T cell engages activating targets at a Holling type-II rate in their density; a met
cell is picked in proportion to abundance and activates it with probability
``activation(...)`` (CAR Hill function times the iCAR veto). Each target agent then dies
with the hazard its share of the engagements gives. Normal myeloid stages are targets
under the same rule (on-target, off-tumor), and so are CAR T cells that carry a target
antigen the product was not edited to lack (fratricide). Engagements strong enough for cytokine
release (a higher density threshold) stimulate the T cells.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from sim.core.common import N_COMP, activation, binom, engagement_rate, prob


@njit(cache=True)
def nb_target_activation(bl_x, n_bl, car1, car2, logic, icar, k_kill, k_cyt, hill_n, imax, k_inh, m, a_kill, a_stim):
    """Fill ``a_kill``/``a_stim`` (killing and cytokine-level activation) for targets ``0..n-1``.

    ``x[antigen, target]`` holds densities: blast agents, or the atlas stage matrix.
    """
    for j in range(n_bl):
        d1 = bl_x[car1, j]
        d2 = bl_x[car2, j] if car2 >= 0 else 0.0
        di = bl_x[icar, j] if icar >= 0 else 0.0
        a_kill[j] = activation(d1, d2, logic, di, k_kill, hill_n, imax, k_inh, m)
        a_stim[j] = activation(d1, d2, logic, di, k_cyt, hill_n, imax, k_inh, m)


@njit(cache=True)
def nb_engage_targets(
    dt,
    car_w,
    car_comp,
    car_cls,
    n_car,
    bl_w,
    bl_comp,
    n_bl,
    bl_a_kill,
    bl_a_stim,
    my_w,
    my_comp,
    n_my,
    my_a_kill,
    my_a_stim,
    car_a_kill,
    car_a_stim,
    volume_l,
    competence,
    search_rate,
    handling_h,
    kill_per_activation,
    kill_factor,
    kills_blast,
    kills_myeloid,
    sigma,
    t_engaged,
):
    """Kill targets and return per-compartment T-cell stimulation.

    Outputs (overwritten): ``kills_blast[c]``, ``kills_myeloid[s]`` (cells killed this step),
    ``sigma[c]`` (cytokine-level engagements per T cell per hour), ``t_engaged[c]``
    (competence-weighted T cells).
    """
    act_kill = np.zeros(N_COMP)
    act_stim = np.zeros(N_COMP)
    for j in range(n_bl):
        act_kill[bl_comp[j]] += bl_w[j] * bl_a_kill[j]
        act_stim[bl_comp[j]] += bl_w[j] * bl_a_stim[j]
    for s in range(n_my):
        act_kill[my_comp[s]] += my_w[s] * my_a_kill[s]
        act_stim[my_comp[s]] += my_w[s] * my_a_stim[s]
    t_kill = np.zeros(N_COMP)
    for i in range(n_car):
        t_kill[car_comp[i]] += car_w[i] * competence[car_cls[i]]
        act_kill[car_comp[i]] += car_w[i] * car_a_kill  # fratricide: CAR T cells carrying the target
        act_stim[car_comp[i]] += car_w[i] * car_a_stim
    hazard = np.zeros(N_COMP)
    for c in range(N_COMP):
        t_engaged[c] = t_kill[c]
        sigma[c] = 0.0
        kills_blast[c] = 0.0
        if act_kill[c] <= 0.0 or t_kill[c] <= 0.0:
            continue
        rho = engagement_rate(act_kill[c], t_kill[c], volume_l[c], search_rate, handling_h)
        hazard[c] = rho * t_kill[c] * kill_per_activation * kill_factor / act_kill[c]
        sigma[c] = rho * act_stim[c] / act_kill[c]
    for j in range(n_bl):
        h = hazard[bl_comp[j]] * bl_a_kill[j]
        if h > 0.0:
            k = binom(bl_w[j], prob(h, dt))
            bl_w[j] -= k
            kills_blast[bl_comp[j]] += k
    if car_a_kill > 0.0:
        for i in range(n_car):
            h = hazard[car_comp[i]] * car_a_kill
            if h > 0.0:
                car_w[i] -= binom(car_w[i], prob(h, dt))
    for s in range(n_my):
        kills_myeloid[s] = 0.0
        h = hazard[my_comp[s]] * my_a_kill[s]
        if h > 0.0:
            k = binom(my_w[s], prob(h, dt))
            my_w[s] -= k
            kills_myeloid[s] = k


@njit(cache=True)
def nb_record_load(car_comp, car_x, n_car, sigma, dt):
    """Add this step's engagements per cell to each CAR T agent's cumulative load."""
    for i in range(n_car):
        car_x[0, i] += sigma[car_comp[i]] * dt
