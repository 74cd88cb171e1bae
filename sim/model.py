"""One virtual patient: setup, events, and the run.

The step order is one numbered list in :mod:`sim.core.step` (``STEP_PHASES``); the
compiled loop :func:`~sim.core.step.nb_run` runs it between events, and
:meth:`Simulation.step` runs the same phase functions one at a time from Python (checking
mode, per-phase timing, the Mesa wrapper). Events (infusion, HSCT) are applied by Python
before the phases of the step in which they fall.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from sim import rng
from sim.antigens import Stage, default_atlas
from sim.clinical import Clinic, donor_product_gvl_per_h, hla_rejection_fold
from sim.core import step as core
from sim.core.blasts import A_KILL, A_STALE, A_STIM, BlastConst
from sim.core.blasts import PROPERTIES as BLAST_PROPERTIES
from sim.core.car_t import EFFECTOR, MEMORY, CarTConst, rejection_per_h, t_cell_space
from sim.core.common import BM, EMD, N_COMP, PB, space_factor
from sim.core.cytokines import IL6, IL18, CytokineConst, age_fold
from sim.core.engage import EngageConst, Targeting, nb_target_activation
from sim.core.frames import Frame
from sim.core.hematopoiesis import N_STAGES, anc, background_cells, lineage_steady, normal_bm_cells
from sim.core.platelets import platelet_chain
from sim.core.random import new_state as new_streams
from sim.core.step import STEP_PHASES, TS_COMP_COLUMNS, TS_GLOBAL_COLUMNS, Consts, PatientState, Schedule
from sim.core.traffic import TrafficConst, traffic_rates
from sim.params import exhaustion_per_engagement, resolve
from sim.patient import VirtualPatient, sample_patient
from sim.scenario import Scenario

__all__ = ["STEP_PHASES", "InvariantError", "Result", "Simulation", "stage_compartments"]

LOGIC_CODE = {"single": 0, "or": 1, "and": 2}


class InvariantError(RuntimeError):
    """A ``--check`` invariant broke; the message names the phase and the step."""


def stage_compartments() -> np.ndarray:
    """Compartment of each lineage class."""
    comp = np.full(N_STAGES, BM, np.int8)
    comp[Stage.BLOOD_NEUTROPHIL] = PB
    comp[Stage.MONOCYTE] = PB
    return comp


def stratified_normal(g: np.random.Generator, n: int) -> np.ndarray:
    """``n`` standard normal draws, one from each of ``n`` equiprobable strata, in random order.

    Agents sample the patient's antigen-density distribution; stratifying makes a few
    hundred agents represent it as well as thousands of independent draws would.
    """
    from scipy.special import ndtri

    return ndtri((g.permutation(n) + g.random(n)) / n)


def hazard_per_h(kill_per_day: float) -> float:
    """The constant hazard (per hour) that kills a fraction ``kill_per_day`` of cells a day."""
    return -math.log(1.0 - kill_per_day) / 24.0


class Simulation:
    """One virtual patient treated with one product.

    Args:
        scenario: The validated scenario.
        patient_index: Which virtual patient of the population (common random numbers).
        patient: A pre-drawn patient (defaults to ``sample_patient(scenario, patient_index)``).
        check: Run invariant checks after every phase (slower: the phases run from Python).
        replicate: Stochastic replicate of the same patient and initial state (0 = default);
            only the kernel streams change.
        exact: Draw every count exactly (the reference of the hybrid rule; slow).

    Example:
        >>> from sim.scenario import load_scenario
        >>> sim = Simulation(load_scenario("scenarios/cll1_standard.yaml", ["horizon_days=2"]))
        >>> result = sim.run()
        >>> result.summary["scenario"]
        'cll1_standard'
    """

    def __init__(
        self,
        scenario: Scenario,
        patient_index: int = 0,
        patient: VirtualPatient | None = None,
        check: bool = False,
        replicate: int = 0,
        exact: bool = False,
    ):
        self.scenario = scenario
        self.check = check
        self.atlas = default_atlas()
        self.p = p = resolve(scenario.params)
        self.patient = pt = patient or sample_patient(scenario, patient_index, self.atlas)
        self.index = patient_index
        self.dt = scenario.dt_hours
        self.t0_day = scenario.lymphodepletion.start_day if scenario.lymphodepletion.enabled else 0.0
        self.n_steps = int(round((scenario.horizon_days - self.t0_day) * 24.0 / self.dt))
        self.replicate = replicate
        self.rs = new_streams(scenario.seed, patient_index, f".{replicate}" if replicate else "", exact)
        self.phase_seconds = dict.fromkeys(STEP_PHASES, 0.0)

        # body and marrow
        w_kg = pt.weight_kg
        self.c_norm = p.bm_cells_per_kg * w_kg
        self.c_max = p.marrow_capacity_factor * self.c_norm
        self.volume_l = np.array([p.bm_volume_l_per_kg * w_kg, p.blood_volume_l_per_kg * w_kg, p.emd_volume_l])
        self.present = np.array([True, True, pt.has_emd])
        self.c_emd = p.emd_volume_l * 1e12  # packed tissue ~1e9 cells per cm^3
        self.f0 = space_factor(self.c_norm, self.c_max, p.crowding_exponent)
        self.lineage = lineage_steady(p, self.c_norm, self.volume_l[PB], pt.anc_baseline_1e9_per_l, self.f0, pt.age_years)

        self._setup_lineage_and_blasts()
        self._setup_product()
        self._setup_state()

    # ------------------------------------------------------------------ setup
    def _setup_lineage_and_blasts(self) -> None:
        p, pt, lin = self.p, self.patient, self.lineage
        q = pt.anc_baseline_1e9_per_l / p.anc_healthy_1e9_per_l
        self.myeloid = Frame(N_STAGES, ())
        for s in range(N_STAGES):
            self.myeloid.add(float(np.round(lin.healthy[s] * q)), int(stage_compartments()[s]), s)
        normal_bm = q * lin.healthy[: Stage.RESERVE + 1].sum() + background_cells(lin, q * lin.healthy[Stage.HSPC])
        frac = pt.bm_blast_fraction
        # a packed marrow holds at most its capacity: extreme fractions are capped there
        blasts_bm = min(frac / (1.0 - frac) * normal_bm, max(0.95 * self.c_max - normal_bm, 0.0))
        occupancy = blasts_bm + normal_bm
        f_init = max(space_factor(occupancy, self.c_max, p.crowding_exponent), 0.05)
        self._h_set0 = self.myeloid.w[Stage.HSPC] * self.f0 / f_init
        self.platelet_k, self.platelets = platelet_chain(
            p, lin.healthy[Stage.HSPC], self.myeloid.w[Stage.HSPC], self.volume_l[PB], pt.platelets_baseline_1e9_per_l,
            blasts_bm / occupancy,
        )  # fmt: skip
        # blasts: division from the cell cycle, death so that free-marrow net growth matches the doubling time
        self.r_b = math.log(2) / p.blast_cycle_h
        net = math.log(2) / (pt.blast_doubling_days * 24.0)
        self.d_b = max(self.r_b * self.f0 - net, 0.0)
        egress = p.blast_egress_per_h * (occupancy / self.c_max) ** p.crowding_exponent
        blasts_pb = blasts_bm * egress / (p.blast_homing_per_h + p.blast_pb_death_per_h)
        res = self.scenario.resolution
        # room for the seeded agents, the resample hysteresis (1/8) and one step of spawns
        self.blasts = Frame(4 * res.blast_agents + 64, (*self.atlas.names, *BLAST_PROPERTIES))
        self._seed_blasts(blasts_bm, BM, res.blast_agents, "bm")
        self._seed_blasts(blasts_pb, PB, max(res.blast_agents // 10, 1), "pb")
        if pt.has_emd:
            self._seed_blasts(pt.emd_blasts, EMD, max(res.blast_agents // 10, 1), "emd")

    @property
    def n_blast_classes(self) -> int:
        """Blast classes: the main clone and one antigen-negative subclone per antigen."""
        return 1 + len(self.atlas.names)

    def _seed_blasts(self, total: float, comp: int, n_agents: int, where: str) -> None:
        """Create blast agents of the main clone and one antigen-negative subclone per positive antigen."""
        total = float(np.round(total))
        if total < 1.0:
            return
        names = self.atlas.names
        dens = np.zeros((len(names) + len(BLAST_PROPERTIES), n_agents + len(names)))  # then divisions, activation
        dens[len(names) + A_STALE] = 1.0  # activation not computed yet
        # the first agents of the main clone are the LSC-like share, with the LSC densities
        n_lsc = int(np.ceil(self.p.lsc_fraction_of_blasts * n_agents))
        for k, name in enumerate(names):
            a = self.patient.antigens[name]
            if a.positive:
                z = stratified_normal(rng.generator(self.scenario.seed, self.index, f"blast.init.{where}.{name}"), dens.shape[1])
                dens[k] = a.blast_median * np.exp(a.within_log_sd * z)
                if a.lsc_median != a.blast_median:
                    dens[k, :n_lsc] = a.lsc_median * np.exp(a.within_log_sd * z[:n_lsc])
        remaining = total
        for k, name in enumerate(names):
            a = self.patient.antigens[name]
            if a.positive and a.negative_fraction > 0:
                w = float(np.round(total * a.negative_fraction))
                if 0 < w < remaining:
                    x = dens[:, n_agents + k].copy()
                    x[k] = 0.0
                    self.blasts.add(w, comp, 1 + k, x)
                    remaining -= w
        n_main = int(min(n_agents, remaining))
        base = np.floor(remaining / n_main)
        extra = int(remaining - base * n_main)
        for i in range(n_main):
            self.blasts.add(base + (1.0 if i < extra else 0.0), comp, 0, dens[:, i])

    def _setup_product(self) -> None:
        p, prod = self.p, self.scenario.product
        names = self.atlas.names
        self.car1 = names.index(prod.car.antigens[0])
        self.car2 = names.index(prod.car.antigens[1]) if len(prod.car.antigens) > 1 else -1
        self.logic = LOGIC_CODE[prod.car.logic]
        self.icar = names.index(prod.icar.antigen) if prod.icar else -1
        self.imax = 0.0
        self.k_inh = p.icar_k_molecules
        if prod.icar:
            self.imax = prod.icar.imax if prod.icar.imax is not None else p.icar_imax
            self.k_inh = prod.icar.k_molecules or p.icar_k_molecules
        factor = p.cd28_threshold_factor if prod.costimulation == "CD28" else 1.0
        factor *= prod.activation_threshold_factor  # the binder (e.g. scFv vs natural ligand)
        self.k_kill = p.k_kill_molecules * factor
        self.k_cyt = p.k_cytokine_molecules * factor
        self.targeting = Targeting(
            self.car1, self.car2, self.logic, self.icar, self.k_kill, self.k_cyt, p.hill_n, self.imax, self.k_inh,
            p.icar_hill_m,
        )  # fmt: skip
        self.k_exh = exhaustion_per_engagement(p, prod.costimulation)
        armored = prod.armoring == "IL-18"
        self.armor_fg = p.il18_armor_fg_per_cell_h if armored else 0.0
        # IL-18 gain on CAR T proliferation, IFN-gamma and macrophage drive (0: no response)
        self.il18_boost_max = p.il18_boost_max * (1.0 if armored else p.il18_response_unarmored)
        # activation of each lineage class (constant densities from the atlas)
        self.my_a_kill, self.my_a_stim = self.activations(self.atlas.stage_density_matrix(), N_STAGES)
        # CAR T cells as targets of each other (fratricide) through antigens the product still carries
        t_dens = self.atlas.t_cell_densities()
        for a in prod.knockout:
            t_dens[names.index(a)] = 0.0
        self.car_a_kill, self.car_a_stim = self.activation_of(t_dens)
        # the target on a normal tissue met in blood and marrow and not depleted (endothelium)
        _, self.tissue_a_stim = self.activation_of(self.atlas.tissue_densities())
        self.tissue_sigma = p.tissue_engagement_per_h * self.tissue_a_stim
        mem, fold = prod.memory_fraction, 1.0
        if prod.manufacturing == "dasatinib":
            mem = 1.0 - 0.5 * (1.0 - mem)  # assumed: dasatinib halves the differentiated share
            fold = p.dasatinib_expansion_fold
        self.memory_fraction = mem
        self.expansion_fitness = self.patient.product_fitness * fold
        self.dose_cells = float(np.round(self.patient.dose_cells_per_kg * self.patient.weight_kg))
        # room for CAR T cells: the body's, or the programmed burst of the infused cells if smaller
        burst = max(p.car_t_expansion_limit_fold * self.dose_cells, 1.0)
        self.car_t_room = p.car_t_capacity_cells if armored else min(p.car_t_capacity_cells, burst)
        self.car_t = Frame(4 * self.scenario.resolution.car_t_agents + 64, ("load",))

    def _constants(self) -> Consts:
        """The typed constants of every component."""
        p, sc = self.p, self.scenario
        ld, adj, iv = sc.lymphodepletion, sc.adjuvant, sc.interventions
        fold = np.ones(len(self.atlas.names))
        if adj is not None:
            for name in adj.antigens:
                fold[self.atlas.index(name)] = adj.fold
        res = sc.resolution
        nan = math.nan
        days, shares = sc.product.infusion_schedule()
        schedule = Schedule(
            dt_h=self.dt,
            t0_day=self.t0_day,
            record_every=max(1, int(round(sc.outputs.record_every_hours / self.dt))),
            car_t_agents=res.car_t_agents,
            blast_agents=res.blast_agents,
            n_blast_classes=self.n_blast_classes,
            ld_enabled=ld.enabled,
            ld_start_day=ld.start_day,
            ld_days=ld.days,
            ld_signal_decay_days=p.ld_signal_decay_days,
            ld_blast_hazard_per_h=hazard_per_h(p.ld_blast_kill_per_day),
            ld_myelo_hazard_per_h=hazard_per_h(p.ld_myelo_kill_per_day),
            adjuvant_start_day=adj.start_day if adj else nan,
            adjuvant_end_day=adj.end_day if adj else nan,
            adjuvant_fold=fold,
            hsct_gvl_per_h=p.hsct_gvl_per_h,
            product_gvl_per_h=donor_product_gvl_per_h(p, sc.product, self.patient.dose_cells_per_kg),
            consolidation_hsct_day=nan if iv.consolidation_hsct_day is None else iv.consolidation_hsct_day,
            infusion_days=np.array(days),
            infusion_fractions=np.array(shares),
            hold_at_crs_grade=-1 if sc.product.hold_infusions_at_crs_grade is None else sc.product.hold_infusions_at_crs_grade,
            dose_cells=self.dose_cells,
            rescue_hsct_day=nan if iv.rescue_hsct_day is None else iv.rescue_hsct_day,
            hsct_rule_day=nan if sc.consolidation.hsct is None else sc.consolidation.hsct.day,
        )
        ln2 = math.log(2)
        return Consts(
            sched=schedule,
            targeting=self.targeting,
            engage=EngageConst(
                p.search_rate_l_per_h,
                p.handling_time_h,
                p.kill_per_activation,
                p.competence_memory,
                p.competence_exhausted,
                self.car_a_kill,
                self.car_a_stim,
                self.tissue_a_stim,
                self.tissue_sigma,
                p.bystander_per_kill,
            ),
            car_t=CarTConst(
                r_max=p.car_t_max_division_per_h,
                r_cap=p.car_t_division_cap_per_h,
                r_homeo=p.homeostatic_division_per_h,
                d_m=p.memory_death_per_h,
                d_e=p.effector_death_per_h,
                d_x=p.exhausted_death_per_h,
                d_aicd=p.aicd_per_engagement,
                k_diff=p.differentiation_per_h,
                f_rev=p.memory_reversion_fraction,
                k_exh=self.k_exh,
                stim_memory_h=p.stim_memory_h,
                k_s=p.stim_half_sat_per_h,
                ld_floor=p.ld_expansion_floor,
                fitness=self.expansion_fitness,
                room_cells=self.car_t_room,
                il18_boost_max=self.il18_boost_max,
                rejection_per_h=p.allo_rejection_per_h * hla_rejection_fold(p, sc.product),
            ),
            blasts=BlastConst(
                self.r_b,
                self.d_b,
                p.blast_pb_death_per_h,
                p.antigen_noise_sd,
                self.c_max,
                self.c_emd,
                p.crowding_exponent,
                len(self.atlas.names),
                p.antigen_loss_per_division,
                self.car1,
                self.car2,
            ),
            lineage=self.lineage,
            platelets=self.platelet_k,
            cytokines=CytokineConst(
                ifng_pg_per_engagement=p.ifng_pg_per_engagement,
                k_il6_per_h=ln2 / p.il6_half_life_h,
                k_ifng_per_h=ln2 / p.ifng_half_life_h,
                k_il18_per_h=ln2 / p.il18_half_life_h,
                il6_baseline_pg_per_ml=p.il6_baseline_pg_per_ml,
                il18_baseline_pg_per_ml=p.il18_baseline_pg_per_ml,
                il6_max_pg_per_ml=p.il6_max_pg_per_ml,
                macrophage_activation_per_h=p.macrophage_activation_per_h
                * self.patient.inflammatory_reactivity
                * age_fold(p.inflammatory_reactivity_per_decade, self.patient.age_years),
                macrophage_ifng_half_sat_pg_per_ml=p.macrophage_ifng_half_sat_pg_per_ml,
                macrophage_decay_per_h=p.macrophage_decay_per_h,
                il18_macrophage_fold=p.il18_macrophage_fold,
                armor_fg_per_cell_h=self.armor_fg,
                il18_half_sat_pg_per_ml=p.il18_half_sat_pg_per_ml,
                il18_boost_max=self.il18_boost_max,
                exchange_per_h=p.cytokine_exchange_per_h,
                bystander_fg_per_cell_h=p.ifng_bystander_fg_per_cell_h,
                bystander_il18_half_sat_pg_per_ml=p.bystander_il18_half_sat_pg_per_ml,
                macrophage_steroid_sensitivity=p.macrophage_steroid_sensitivity,
                macrophage_kill_half_sat_per_ml_h=p.macrophage_kill_half_sat_per_ml_h,
            ),
            traffic=TrafficConst(
                p.car_t_bm_entry_per_h,
                p.car_t_bm_exit_per_h,
                p.car_t_emd_entry_per_h,
                p.car_t_emd_exit_per_h,
                p.blast_egress_per_h,
                p.blast_homing_per_h,
                self.c_max,
                p.crowding_exponent,
                bool(self.present[EMD]),
            ),
            clinic=self.clinic.k,
        )

    def _setup_state(self) -> None:
        self.clinic = Clinic(self, self.replicate, self.rs)
        self.k = self._constants()
        cyt = np.zeros((N_COMP, 4))
        for c in range(N_COMP):
            if self.present[c]:
                cyt[c, IL6] = self.p.il6_baseline_pg_per_ml
                cyt[c, IL18] = self.p.il18_baseline_pg_per_ml
        scal = np.zeros(core.N_SCAL)
        scal[core.H_SET] = self._h_set0
        n_ag = len(self.atlas.names)

        def zeros(n: int = N_COMP) -> np.ndarray:
            return np.zeros(n)

        self.st = PatientState(
            car=self.car_t.arrays,
            bl=self.blasts.arrays,
            my_w=self.myeloid.w,
            my_comp=self.myeloid.comp,
            plt=self.platelets,
            my_a_kill=self.my_a_kill,
            my_a_stim=self.my_a_stim,
            bl_a_kill=self.blasts.x[n_ag + A_KILL],
            bl_a_stim=self.blasts.x[n_ag + A_STIM],
            bl_a_stale=self.blasts.x[n_ag + A_STALE],
            stim=zeros(),
            sigma=zeros(),
            t_engaged=zeros(),
            kills_blast=zeros(),
            kills_myeloid=zeros(N_STAGES),
            killed_myeloid=zeros(N_STAGES),
            boost=np.ones(N_COMP),
            cyt=cyt,
            car_obs=np.zeros((N_COMP, 3)),
            bl_obs=np.zeros((N_COMP, 3)),
            volume_l=self.volume_l,
            present=self.present,
            scal=scal,
            cs=self.clinic.cs,
            inf=self.clinic.inf,
        )
        self.recorder = Recorder(self)
        core.observe_agents(self.k, self.st)

    # ------------------------------------------------------------------ views of the state
    def __getattr__(self, name: str):
        # the state arrays read as attributes (sim.cyt, sim.bl_obs, ...), as the verification models use them
        st = self.__dict__.get("st")
        if st is not None and name in PatientState._fields:
            return getattr(st, name)
        raise AttributeError(name)

    @property
    def killed_total_myeloid(self) -> np.ndarray:
        """Cumulative myeloid cells killed by CAR T cells, per lineage class."""
        return self.st.killed_myeloid

    @property
    def step_index(self) -> int:
        """Steps done since the start (lymphodepletion or infusion)."""
        return int(self.st.scal[core.STEP])

    @step_index.setter
    def step_index(self, value: int) -> None:
        self.st.scal[core.STEP] = value

    @property
    def h_set(self) -> float:
        """HSPC set point (host marrow, or the donor's after HSCT)."""
        return float(self.st.scal[core.H_SET])

    @property
    def infused(self) -> bool:
        """Whether the product has been given (its first infusion)."""
        return bool(self.st.scal[core.INFUSED])

    @property
    def infusions_given(self) -> int:
        """Infusions of the schedule given so far (not those held, nor those after death)."""
        return int(self.st.scal[core.INFUSED])

    @property
    def infusions_held(self) -> int:
        """Infusions of the schedule held back (CRS at the hold grade, or CAR T cells eliminated)."""
        return int(self.st.scal[core.HELD])

    @property
    def dose_given_cells_per_kg(self) -> float:
        """The CAR+ cells/kg the patient received so far."""
        return self.patient.dose_cells_per_kg * float(self.k.sched.infusion_fractions[: self.infusions_given].sum())

    @property
    def t_day(self) -> float:
        """Time (days, infusion at 0) at the start of the current step."""
        return float(core.t_day_of.py_func(self.k, self.st))  # plain Python: no dispatch on the records

    def ld_signal(self, t_day: float) -> float:
        """Homeostatic signal L(t): 1 during and after lymphodepletion, decaying."""
        return float(core.ld_signal(self.k.sched, t_day))

    def ld_hazards_per_h(self, t_day: float) -> tuple[float, float]:
        """Lymphodepletion hazards on (blasts, cycling myeloid cells) at ``t_day``."""
        return core.ld_hazards(self.k.sched, t_day)

    def t_cell_space(self, car_t_cells: float) -> float:
        """Room left for CAR T division: max(0, 1 - T / room), room = min(K_T, burst of the infused cells)."""
        return float(t_cell_space(self.k.car_t, car_t_cells))

    def elimination_per_h(self, t_day: float) -> float:
        """The eliminating agent's hazard on CAR T cells over the step from ``t_day`` (0 unless given)."""
        return float(core.cc.elimination_per_h(self.k.clinic, self.st.cs, t_day, self.dt))

    def rejection_per_h(self, t_day: float) -> float:
        """Host rejection of an allogeneic product, rising as host immunity recovers (1 - L(t))."""
        return float(rejection_per_h(self.k.car_t, self.ld_signal(t_day)))

    @property
    def damp(self) -> float:
        """Steroid damping of CAR T proliferation, killing and cytokine production."""
        return float(core.cc.steroid_damp(self.st.cs, self.t_day))

    def blast_densities_seen(self) -> np.ndarray:
        """Blast antigen densities as CAR T cells meet them now (raised by an active adjuvant)."""
        fold = core.density_fold(self.k.sched, self.t_day)
        x = self.blasts.x
        if np.all(fold == 1.0):
            return x
        return x * np.append(fold, np.ones(len(BLAST_PROPERTIES)))[:, None]  # rows after the antigens are not densities

    def activations(self, x: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Killing and cytokine-level activation of targets with densities ``x[antigen, target]``."""
        a_kill, a_stim = np.empty(n), np.empty(n)
        nb_target_activation(x, n, self.targeting, np.ones(x.shape[0]), a_kill, a_stim)
        return a_kill, a_stim

    def activation_of(self, densities: np.ndarray) -> tuple[float, float]:
        """Killing and cytokine-level activation of one kind of target with ``densities[antigen]``."""
        a_kill, a_stim = self.activations(densities.reshape(-1, 1), 1)
        return float(a_kill[0]), float(a_stim[0])

    def occupancy(self) -> float:
        """Marrow cells competing for space: blasts, lineage in marrow, background."""
        return float(core.marrow_occupancy(self.k, self.st))

    def normal_bm_cells(self) -> float:
        """Normal marrow nucleated cells: explicit lineage plus background tracking HSPC."""
        return float(normal_bm_cells(self.lineage, self.st.my_w))

    def bm_blast_percent(self) -> float:
        """Marrow blasts as a percentage of marrow nucleated cells (lineage and background included)."""
        return float(core.bm_blast_percent(self.k, self.st))

    def anc(self) -> float:
        """Absolute neutrophil count in blood (1e9/L)."""
        return float(anc(self.lineage, self.st.my_w))

    def traffic_rates(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-hour rates [from, to] for CAR T and blasts."""
        return traffic_rates(self.k.traffic, self.occupancy())

    # ------------------------------------------------------------------ events
    def transplant(self) -> None:
        """Allo-HSCT: conditioning (myeloablative unless the rule says reduced intensity), donor graft, then GVL."""
        p = self.p
        suffix = f".{self.replicate}" if self.replicate else ""
        draws = rng.generator(self.scenario.seed, self.index, f"hsct{suffix}")
        rule = self.scenario.consolidation.hsct
        if rule is not None and rule.conditioning == "reduced_intensity":
            log_kill, car_t_left, myeloid_left = p.hsct_ric_blast_log_kill, p.hsct_car_t_survival_ric, p.hsct_myeloid_survival_ric
        else:
            log_kill, car_t_left = p.hsct_blast_log_kill, p.hsct_car_t_survival_myeloablative
            myeloid_left = p.hsct_myeloid_survival_myeloablative
        for frame, survive in ((self.blasts, 10.0**-log_kill), (self.car_t, car_t_left)):
            w = frame.w[: frame.n]
            w[:] = draws.binomial(w.astype(np.int64), survive).astype(float)
        my = self.myeloid.w
        my[: Stage.MONOCYTE] = np.round(my[: Stage.MONOCYTE] * myeloid_left)
        self.platelets[:-1] *= myeloid_left  # conditioning takes the megakaryocyte chain as it takes the myeloid one
        my[Stage.HSPC] = float(np.round(p.hsct_cd34_per_kg * p.hsct_homing_fraction * self.patient.weight_kg))
        self.st.scal[core.H_SET] = self.lineage.healthy[Stage.HSPC]  # donor marrow
        self.st.cs[core.cc.HSCT_DAY] = self.t_day

    def infusion_due(self) -> bool:
        """Whether the next infusion of the schedule falls before the current step."""
        return core.pending_event(self.k, self.st) == core.INFUSE

    def infuse(self) -> None:
        """Add the next infusion (unless held for CRS) to blood as memory-like and effector agents."""
        total = core.take_next_infusion(self.k, self.st)
        if total < 1.0:
            return
        n_agents = int(min(self.scenario.resolution.car_t_agents, max(total, 1)))
        n_mem = int(round(n_agents * self.memory_fraction))
        base = np.floor(total / n_agents)
        extra = int(total - base * n_agents)
        ct = self.car_t
        for i in range(n_agents):
            ct.add(base + (1.0 if i < extra else 0.0), PB, MEMORY if i < n_mem else EFFECTOR)
        if ct.w is not self.st.car.w:
            raise AssertionError("the CAR T frame outgrew its preallocated capacity")

    def _apply_event(self, event: int) -> None:
        if event == core.INFUSE:
            self.infuse()
        elif event == core.TRANSPLANT:
            self.transplant()

    # ------------------------------------------------------------------ the step and the run
    def step(self) -> None:
        """Advance one dt from Python: events, then phases 0-7 in the order of ``STEP_PHASES``."""
        while (event := core.pending_event(self.k, self.st)) != core.DONE:
            self._apply_event(event)
        for name in STEP_PHASES:
            tic = time.perf_counter()
            before = self._check_before(name) if self.check else None
            getattr(self, f"_phase_{name}")()
            if self.check:
                self._check_after(name, before)
            self.phase_seconds[name] += time.perf_counter() - tic
        self.st.scal[core.STEP] += 1

    def advance(self, stop_step: int) -> None:
        """Run the compiled loop to ``stop_step`` (or death), applying events as they fall."""
        if self.check:
            while self.step_index < stop_step and self.clinic.state.death_day is None:
                self.step()
            return
        while (event := core.nb_run(self.k, self.st, self.rs, self.recorder.arrays, stop_step)) != core.DONE:
            self._apply_event(event)

    def run(self, progress=None) -> Result:
        """Run to the horizon and return the result (time series and summary)."""
        self.recorder.record(self.t_day)
        chunk = self.n_steps if progress is None else max(1, self.n_steps // 100)
        while self.step_index < self.n_steps and self.clinic.state.death_day is None:
            self.advance(min(self.step_index + chunk, self.n_steps))
            if progress is not None:
                progress(self.step_index, self.n_steps)
        from sim.readouts import summarize

        return Result(self.scenario, self.patient, summarize(self), self.recorder)

    # ------------------------------------------------------------------ checking mode
    def _check_before(self, phase: str) -> float | None:
        if phase == "resample":
            return self.car_t_total() + self.blast_total()
        return None

    def car_t_total(self) -> float:
        """CAR T cells (all agents)."""
        return self.car_t.total()

    def blast_total(self) -> float:
        """Blasts (all agents)."""
        return self.blasts.total()

    def _check_after(self, phase: str, before: float | None) -> None:
        where = f"after phase {phase!r} at step {self.step_index} (day {self.t_day:.3f})"
        st = self.st
        for name, w, comp in (
            ("car_t", st.car.w[: st.car.n[0]], st.car.comp[: st.car.n[0]]),
            ("blasts", st.bl.w[: st.bl.n[0]], st.bl.comp[: st.bl.n[0]]),
            ("myeloid", st.my_w, st.my_comp),
        ):
            if not np.all(np.isfinite(w)) or np.any(w < 0):
                raise InvariantError(f"{name} weights negative or not finite {where}")
            if np.any(w != np.round(w)):
                raise InvariantError(f"{name} weights not whole cells {where}")
            if np.any((comp < 0) | (comp >= N_COMP)):
                raise InvariantError(f"{name} compartment code out of range {where}")
            if not self.present[EMD] and name != "myeloid" and np.any(comp == EMD):
                raise InvariantError(f"agents in an absent EMD compartment {where}")
        if not np.all(np.isfinite(st.cyt)) or np.any(st.cyt < 0):
            raise InvariantError(f"cytokine pools negative or not finite {where}")
        if before is not None and self.car_t_total() + self.blast_total() != before:
            raise InvariantError(
                f"split/merge changed the total weight ({before} -> {self.car_t_total() + self.blast_total()}) {where}"
            )


def _phase_method(name: str):
    """``Simulation._phase_<name>``: the compiled phase function, called from Python."""
    fn = getattr(core, f"phase_{name}")

    def phase(self: Simulation) -> None:
        fn(self.k, self.st, self.rs, self.recorder.arrays)

    phase.__doc__ = fn.__doc__
    return phase


for _name in STEP_PHASES:
    setattr(Simulation, f"_phase_{_name}", _phase_method(_name))

STAGE_COLUMNS = tuple(s.name.lower() for s in Stage)


class Recorder:
    """Preallocated time series, one row per record time and compartment (written by compiled code)."""

    def __init__(self, sim: Simulation):
        self.sim = sim
        self.every = sim.k.sched.record_every
        self.arrays = core.new_records(sim.n_steps // self.every + 2, N_STAGES)

    @property
    def n(self) -> int:
        """Rows written."""
        return int(self.arrays.n[0])

    def record(self, t_day: float) -> None:
        """Store the current state as the row of time ``t_day``."""
        core.record(self.sim.k, self.sim.st, self.arrays, t_day)

    def series(self) -> Series:
        """The recorded rows as arrays, one value per record time (what the readouts read)."""
        a, n = self.arrays, self.n
        comp = a.comp[:n]
        car = comp[:, PB, 2] + comp[:, PB, 3] + comp[:, PB, 4]  # memory + effector + exhausted, in that order
        return Series(
            t_days=a.t_day[:n],
            anc=a.glob[:n, 0],
            bm_blast_percent=a.glob[:n, 2],
            crs_grade=a.glob[:n, 5],
            icans_grade=a.glob[:n, 6],
            car_t_pb_cells=car,
            blasts_pb=comp[:, PB, 0],
            blasts_emd=comp[:, EMD, 0] if self.sim.present[EMD] else np.zeros(n),
            blasts_total=comp[:, :, 0].sum(axis=1),
            blasts_target_negative_total=comp[:, :, 1].sum(axis=1),
            macrophage_pb=comp[:, PB, 8],
            il6_pb=comp[:, PB, 5],
            ifng_pb=comp[:, PB, 6],
            hspc=a.stages[:n, Stage.HSPC],
            platelets=a.glob[:n, 9],
            platelets_transfused=a.glob[:n, 10],
            killed_last={col: float(a.killed[n - 1, s]) for s, col in enumerate(STAGE_COLUMNS)},
        )

    def columns(self) -> dict[str, np.ndarray]:
        """The long time series (one row per time and compartment present) as named columns."""
        a, n = self.arrays, self.n
        rows = {"t_days": np.repeat(a.t_day[:n], N_COMP), "compartment": np.tile(np.array(["bm", "pb", "emd"]), n)}
        for k, col in enumerate(TS_COMP_COLUMNS):
            rows[col] = a.comp[:n, :, k].reshape(-1)
        comp_of = stage_compartments()
        for s, col in enumerate(STAGE_COLUMNS):
            vals = np.zeros((n, N_COMP))
            vals[:, comp_of[s]] = a.stages[:n, s]
            rows[col] = vals.reshape(-1)
        for k, col in enumerate(TS_GLOBAL_COLUMNS):
            rows[col] = np.repeat(a.glob[:n, k], N_COMP)
        for s, col in enumerate(STAGE_COLUMNS):
            rows[f"killed_{col}"] = np.repeat(a.killed[:n, s], N_COMP)
        if not self.sim.present[EMD]:
            keep = rows["compartment"] != "emd"
            rows = {col: v[keep] for col, v in rows.items()}
        return rows

    def frame(self):
        """The time series as a long pandas DataFrame (see :meth:`columns`)."""
        import pandas as pd

        return pd.DataFrame(self.columns())


@dataclass
class Series:
    """Recorded values per record time (blood unless named otherwise; cells, not concentrations)."""

    t_days: np.ndarray
    anc: np.ndarray
    bm_blast_percent: np.ndarray
    crs_grade: np.ndarray
    icans_grade: np.ndarray
    car_t_pb_cells: np.ndarray
    blasts_pb: np.ndarray
    blasts_emd: np.ndarray
    blasts_total: np.ndarray
    blasts_target_negative_total: np.ndarray
    macrophage_pb: np.ndarray
    il6_pb: np.ndarray
    ifng_pb: np.ndarray
    hspc: np.ndarray
    platelets: np.ndarray  # the patient's own (1e9/L)
    platelets_transfused: np.ndarray  # transfused platelets still circulating (1e9/L)
    killed_last: dict


@dataclass
class Result:
    """What one run produced; the long time series is built on first use."""

    scenario: Scenario
    patient: VirtualPatient
    summary: dict
    recorder: Recorder = field(repr=False)

    @cached_property
    def timeseries(self):
        """The time series as a long pandas DataFrame (see :meth:`Recorder.frame`)."""
        return self.recorder.frame()

    @cached_property
    def columns(self) -> dict[str, np.ndarray]:
        """The same time series as named arrays (no pandas: what ``cart-sim run`` writes and plots)."""
        return self.recorder.columns()
