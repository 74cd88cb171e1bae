"""Phase 7: observers: per-compartment totals of the agent frames."""

from __future__ import annotations

from numba import njit

from sim.core.common import hill


@njit(cache=True)
def nb_observe_agents(
    car_w, car_comp, car_cls, n_car, bl_w, bl_comp, bl_x, n_bl, car1, car2, logic, icar, imax, k_inh, m, car_out, bl_out
):
    """Fill ``car_out[c, phenotype]`` and ``bl_out[c, 0 all | 1 target-negative | 2 iCAR-protected]``.

    A blast is target-negative when it lacks the CAR antigen (single), both antigens (OR)
    or either antigen (AND); iCAR-protected when the veto removes at least half of its
    activation (``imax * H(d_icar) >= 0.5``).
    """
    car_out[:, :] = 0.0
    bl_out[:, :] = 0.0
    for i in range(n_car):
        car_out[car_comp[i], car_cls[i]] += car_w[i]
    for j in range(n_bl):
        bl_out[bl_comp[j], 0] += bl_w[j]
        neg1 = bl_x[car1, j] <= 0.0
        neg2 = bl_x[car2, j] <= 0.0 if car2 >= 0 else neg1
        negative = neg1 if logic == 0 else (neg1 and neg2 if logic == 1 else neg1 or neg2)
        if negative:
            bl_out[bl_comp[j], 1] += bl_w[j]
        if icar >= 0 and imax * hill(bl_x[icar, j], k_inh, m) >= 0.5:
            bl_out[bl_comp[j], 2] += bl_w[j]
