"""The mean-field oracle: the agent rules written as ODEs and solved with ``solve_ivp``.

Every agent rule is a per-cell hazard, so the expected agent state follows these ODEs
(up to the first-order operator splitting of the step). Blasts are tracked per initial
density class (one class per initial agent, antigen noise must be 0), the lineage per
stage, CAR T per compartment and phenotype. Rate formulas are the same numba helpers the
kernels use (``activation`` through ``Simulation.activations``, ``engagement_rate``, ``space_factor``, ``car_t_rates``).

Interventions switch discontinuously on grades, so compare with interventions off.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.integrate import solve_ivp

from sim.antigens import Stage
from sim.core.car_t import EFFECTOR, MEMORY, car_t_rates, signal
from sim.core.common import BM, EMD, N_COMP, PB, space_factor
from sim.core.cytokines import (
    IFNG,
    IL6,
    IL18,
    MAC,
    bystander_ifng,
    deaths_per_ml_h,
    il6_target,
    il18_boost,
    il18_target,
    macrophage_drive,
)
from sim.core.engage import add_tissue_engagement, bystander_hazard, competence, kill_hazard_and_stimulation
from sim.core.hematopoiesis import N_STAGES, anc, gcsf_fold, normal_bm_cells
from sim.core.platelets import CIRCULATING, N_PLATELET, platelet_flows
from sim.core.traffic import traffic_rates
from sim.model import Simulation, stage_compartments


class MeanField:
    """The ODE counterpart of one :class:`~sim.model.Simulation` (same patient and setup).

    Args:
        sim: A freshly constructed simulation (not yet run).
    """

    def __init__(self, sim: Simulation):
        if sim.p.antigen_noise_sd != 0.0 or sim.p.antigen_loss_per_division != 0.0:
            raise ValueError(
                "the oracle tracks fixed density classes: set params.antigen_noise_sd = 0 and antigen_loss_per_division = 0"
            )
        sc = sim.scenario
        if sc.interventions.car_t_elimination or sc.consolidation.hsct or sc.product.hold_infusions_at_crs_grade:
            raise ValueError("the oracle has no clinic: no CAR T elimination, HSCT rule or infusion hold")
        self.sim = sim
        bl = sim.blasts
        self.nb = bl.n
        self.bl_comp0 = bl.comp[: bl.n].copy()
        self.bl_w0 = bl.w[: bl.n].copy()
        self.a_kill, self.a_stim = sim.activations(bl.x, bl.n)
        self.my_comp = stage_compartments()
        # layout of the state vector
        self.i_t = 0  # T[c, k]: 9
        self.i_s = 9  # S[c]: 3
        self.i_b = 12  # B[j, c]: nb * 3
        self.i_m = self.i_b + 3 * self.nb  # M[s]: 9
        self.i_c = self.i_m + N_STAGES  # cyt[c, 4]: 12
        self.i_p = self.i_c + 12  # platelet chain: N_PLATELET
        self.size = self.i_p + N_PLATELET

    def initial_state(self) -> np.ndarray:
        """State at the start of the simulation (before infusion)."""
        y = np.zeros(self.size)
        b = np.zeros((self.nb, N_COMP))
        b[np.arange(self.nb), self.bl_comp0] = self.bl_w0
        y[self.i_b : self.i_m] = b.reshape(-1)
        y[self.i_m : self.i_c] = self.sim.myeloid.w[:N_STAGES]
        y[self.i_c : self.i_p] = self.sim.cyt.reshape(-1)
        y[self.i_p :] = self.sim.platelets
        return y

    def rhs(self, t_h: float, y: np.ndarray) -> np.ndarray:
        """Time derivative; ``t_h`` is hours since the simulation start."""
        sim, p, k = self.sim, self.sim.p, self.sim.k
        t_day = sim.t0_day + t_h / 24.0
        dy = np.zeros_like(y)
        T = y[:9].reshape(N_COMP, 3).clip(0)
        S = y[9:12]
        B = y[self.i_b : self.i_m].reshape(self.nb, N_COMP).clip(0)
        M = y[self.i_m : self.i_c].clip(0)
        C = y[self.i_c : self.i_p].reshape(N_COMP, 4)
        P = y[self.i_p :].clip(0)
        dT, dS = dy[:9].reshape(N_COMP, 3), dy[9:12]
        dB = dy[self.i_b : self.i_m].reshape(self.nb, N_COMP)
        dM, dC = dy[self.i_m : self.i_c], dy[self.i_c : self.i_p].reshape(N_COMP, 4)

        # 1. engagement and killing
        act_kill = (B * self.a_kill[:, None]).sum(axis=0)
        act_stim = (B * self.a_stim[:, None]).sum(axis=0)
        for s in range(N_STAGES):
            act_kill[self.my_comp[s]] += M[s] * sim.my_a_kill[s]
            act_stim[self.my_comp[s]] += M[s] * sim.my_a_stim[s]
        t_kill = T @ np.array([competence(k.engage, cls) for cls in range(3)])
        act_kill += T.sum(axis=1) * sim.car_a_kill  # fratricide
        act_stim += T.sum(axis=1) * sim.car_a_stim
        cells = B.sum(axis=0) + np.bincount(self.my_comp, weights=M, minlength=N_COMP)
        hazard, sigma, bystander = np.zeros(N_COMP), np.zeros(N_COMP), np.zeros(N_COMP)
        for c in range(N_COMP):
            hazard[c], sigma[c] = kill_hazard_and_stimulation(k.engage, act_kill[c], act_stim[c], t_kill[c], sim.volume_l[c], 1.0)
            bystander[c] = bystander_hazard(k.engage, hazard[c], act_kill[c], cells[c])
        add_tissue_engagement(k.engage, sigma)
        blast_deaths = (hazard[None, :] * self.a_kill[:, None] + bystander[None, :]) * B
        myeloid_deaths = hazard[self.my_comp] * sim.my_a_kill * M
        dB -= blast_deaths
        dM -= myeloid_deaths
        damps = deaths_per_ml_h(blast_deaths.sum() + myeloid_deaths.sum(), sim.volume_l, sim.present)
        fratricide = hazard * sim.car_a_kill

        # 2. CAR T fate
        dS[:] = (sigma - S) / p.stim_memory_h
        ld_sig = sim.ld_signal(t_day)
        space = sim.t_cell_space(T.sum())
        for c in range(N_COMP):
            g = signal(k.car_t, S[c])
            boost = il18_boost(k.cytokines, C[c, IL18]) if k.cytokines.il18_boost_max > 0.0 else 1.0
            for cls in range(3):
                div, death, to_m, to_e, to_x = car_t_rates(k.car_t, cls, g, sigma[c], boost, ld_sig, space, 1.0)
                flux = T[c, cls]
                dT[c, cls] += (div - death - sim.rejection_per_h(t_day) - fratricide[c] - to_m - to_e - to_x) * flux
                dT[c, MEMORY] += to_m * flux
                dT[c, EFFECTOR] += to_e * flux
                dT[c, 2] += to_x * flux

        # 3. blasts
        lin = sim.lineage
        normal_bm = normal_bm_cells(lin, M)
        occupancy = B[:, BM].sum() + normal_bm
        kexp = p.crowding_exponent
        f_bm = space_factor(occupancy, sim.c_max, kexp)
        f_emd = space_factor(B[:, EMD].sum(), sim.c_emd, kexp)
        ld_b, ld_m = sim.ld_hazards_per_h(t_day)
        dB[:, BM] += (sim.r_b * f_bm - sim.d_b - ld_b) * B[:, BM]
        dB[:, EMD] += (sim.r_b * f_emd - sim.d_b - ld_b) * B[:, EMD]
        dB[:, PB] -= (p.blast_pb_death_per_h + ld_b) * B[:, PB]

        # 4. hematopoiesis
        gcsf = gcsf_fold(lin, anc(lin, M))
        h = M[Stage.HSPC]
        dM[0] += h * (lin.r_h * f_bm / sim.f0 - lin.r_h * h / sim.h_set - ld_m)
        r_div = min(lin.r_p * gcsf, 0.95 * lin.k_tr)
        flow = np.zeros(N_STAGES)
        flow[1:6] = lin.k_tr * M[1:6]
        flow[6] = lin.k_rel * gcsf * M[6]
        dM[1] += lin.d_h * h
        dM[1:4] += (r_div - ld_m) * M[1:4]
        dM[1:7] -= flow[1:7]
        dM[2:8] += flow[1:7]
        dM[7] -= lin.k_circ * M[7]
        dM[8] += lin.m_h * h - lin.k_mono * M[8]
        blast_share = B[:, BM].sum() / occupancy if occupancy > 0 else 0.0
        inflow, loss = platelet_flows(k.platelets, P, h, blast_share, ld_m, C[PB, MAC])
        dy[self.i_p :] = inflow - loss * P

        # 5. cytokines
        ln2 = math.log(2)
        k6, kf, k18 = ln2 / p.il6_half_life_h, ln2 / p.ifng_half_life_h, ln2 / p.il18_half_life_h
        mono = 0.5 + 0.5 * M[Stage.MONOCYTE] / max(lin.healthy[Stage.MONOCYTE], 1.0)
        car_cells = T.sum(axis=1)
        present = sim.present
        for c in range(N_COMP):
            if not present[c]:
                continue
            v_ml = sim.volume_l[c] * 1e3
            gain = il18_boost(k.cytokines, C[c, IL18])
            dC[c, IFNG] += p.ifng_pg_per_engagement * sigma[c] * t_kill[c] * gain / v_ml - kf * C[c, IFNG]
            dC[c, IFNG] += bystander_ifng(k.cytokines, car_cells[c], C[c, IL18] - p.il18_baseline_pg_per_ml) / v_ml
            drive = macrophage_drive(k.cytokines, C[c, IFNG], gain, damps)
            dC[c, MAC] += drive * (1 - C[c, MAC]) - p.macrophage_decay_per_h * C[c, MAC]
            dC[c, IL6] += k6 * (il6_target(k.cytokines, C[c, MAC], mono) - C[c, IL6])
            dC[c, IL18] += k18 * (il18_target(k.cytokines, C[c, MAC], car_cells[c], v_ml) - C[c, IL18])
        vol = sim.volume_l[present].sum()
        for q in (IL6, IFNG, IL18):
            mean = (C[present, q] * sim.volume_l[present]).sum() / vol
            dC[present, q] += p.cytokine_exchange_per_h * (mean - C[present, q])

        # 6. trafficking
        car_rates, blast_rates = traffic_rates(k.traffic, occupancy)
        dT += car_rates.T @ T - car_rates.sum(axis=1)[:, None] * T
        dB += B @ blast_rates - B * blast_rates.sum(axis=1)[None, :]
        return dy

    def solve(self, record_every_hours: float = 6.0):
        """Integrate to the horizon (infusions on their days) and return a DataFrame of key outputs."""
        import pandas as pd

        sim = self.sim
        days, fractions = sim.k.sched.infusion_days, sim.k.sched.infusion_fractions
        t_inf = [(d - sim.t0_day) * 24.0 for d in days]
        t_end = sim.n_steps * sim.dt
        grid = np.arange(0.0, t_end + 1e-9, record_every_hours)
        y = self.initial_state()
        pieces = []
        bounds = [0.0, *t_inf, t_end]
        for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
            if i > 0:  # the infusion that opens this segment
                y = y.copy()
                y[PB * 3 + MEMORY] += sim.dose_cells * fractions[i - 1] * _memory_share(sim)
                y[PB * 3 + EFFECTOR] += sim.dose_cells * fractions[i - 1] * (1 - _memory_share(sim))
            if b <= a:
                continue
            ts = grid[(grid >= a) & (grid <= b)]
            sol = solve_ivp(self.rhs, (a, b), y, t_eval=ts, method="RK45", rtol=1e-5, atol=1e-3)
            if not sol.success:
                raise RuntimeError(f"oracle integration failed: {sol.message}")
            pieces.append((sol.t, sol.y))
            y = sol.y[:, -1]
        t = np.concatenate([q[0] for q in pieces])
        Y = np.concatenate([q[1] for q in pieces], axis=1)
        T = Y[:9]
        B = Y[self.i_b : self.i_m]
        M = Y[self.i_m : self.i_c]
        C = Y[self.i_c : self.i_p].reshape(N_COMP, 4, -1)
        P = Y[self.i_p :]
        df = pd.DataFrame(
            {
                "t_days": sim.t0_day + t / 24.0,
                "car_t_total": T.sum(axis=0),
                "blasts_total": B.sum(axis=0),
                "anc_1e9_per_l": M[Stage.BLOOD_NEUTROPHIL] / (sim.volume_l[PB] * 1e9),
                "il6_pb_pg_per_ml": C[PB, IL6],
                "platelets_1e9_per_l": P[CIRCULATING] / (sim.volume_l[PB] * 1e9),
            }
        )
        return df.drop_duplicates("t_days").reset_index(drop=True)


def _memory_share(sim: Simulation) -> float:
    n_agents = int(min(sim.scenario.resolution.car_t_agents, max(sim.dose_cells, 1)))
    return round(n_agents * sim.memory_fraction) / n_agents
