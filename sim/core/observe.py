"""Phase 7: observers: per-compartment totals of the agent frames."""

from __future__ import annotations

from numba import njit

from sim.core.common import hill


@njit(cache=True)
def nb_observe_agents(car, n_car, bl, n_bl, tg, car_out, bl_out):
    """Fill ``car_out[c, phenotype]`` and ``bl_out[c, 0 all | 1 target-negative | 2 iCAR-protected]``.

    A blast is target-negative when it lacks the CAR antigen (single), both antigens (OR)
    or either antigen (AND); iCAR-protected when the veto removes at least half of its
    activation (``imax * H(d_icar) >= 0.5``).
    """
    car_out[:, :] = 0.0
    bl_out[:, :] = 0.0
    for i in range(n_car):
        car_out[car.comp[i], car.cls[i]] += car.w[i]
    for j in range(n_bl):
        c = bl.comp[j]
        bl_out[c, 0] += bl.w[j]
        neg1 = bl.x[tg.car1, j] <= 0.0
        neg2 = bl.x[tg.car2, j] <= 0.0 if tg.car2 >= 0 else neg1
        negative = neg1 if tg.logic == 0 else (neg1 and neg2 if tg.logic == 1 else neg1 or neg2)
        if negative:
            bl_out[c, 1] += bl.w[j]
        if tg.icar >= 0 and tg.imax * hill(bl.x[tg.icar, j], tg.k_inh_molecules, tg.icar_hill_m) >= 0.5:
            bl_out[c, 2] += bl.w[j]
