"""One virtual patient: setup, the step, and the run.

The step, in order (each phase is one numba kernel in ``sim/core``):

====  ===============  ==========================  ==========================================
 #    phase            kernel                      what happens
====  ===============  ==========================  ==========================================
 0    resample         nb_resample_agents          split/merge CAR T and blast agents
 1    engage           nb_engage_targets           CAR T meet targets; activation kills
 2    car_t            nb_update_car_t             division, death, phenotype, exhaustion
 3    blasts           nb_grow_blasts              division in marrow space, death, drift
 4    hematopoiesis    nb_step_hematopoiesis       HSPC, transit, release, G-CSF feedback
 5    cytokines        nb_update_cytokines         IL-6, IFN-gamma, IL-18, macrophages
 6    traffic          nb_traffic_cells            marrow <-> blood <-> EMD
 7    observe          nb_observe_agents           totals, clinical state, interventions
====  ===============  ==========================  ==========================================

Events (lymphodepletion, infusion) are applied before the phases of the step in which
they fall. ``Simulation.step()`` runs exactly this list; ``run()`` loops it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from sim import rng
from sim.antigens import Stage, default_atlas
from sim.clinical import Clinic
from sim.core.blasts import nb_grow_blasts
from sim.core.car_t import EFFECTOR, MEMORY, nb_update_car_t
from sim.core.common import BM, EMD, N_COMP, PB, seed_step, space_factor
from sim.core.cytokines import IFNG, IL6, IL18, MAC, nb_il18_boost, nb_update_cytokines
from sim.core.engage import nb_engage_targets, nb_record_load, nb_target_activation
from sim.core.frames import Frame
from sim.core.hematopoiesis import N_STAGES, nb_step_hematopoiesis
from sim.core.observe import nb_observe_agents
from sim.core.resample import nb_resample_agents
from sim.core.traffic import nb_traffic_cells
from sim.params import resolve
from sim.patient import VirtualPatient, sample_patient
from sim.scenario import Scenario

#: The step order, written once (see the module docstring).
STEP_PHASES = ("resample", "engage", "car_t", "blasts", "hematopoiesis", "cytokines", "traffic", "observe")

#: Named kernel streams, one per random phase.
STREAMS = ("resample", "engage", "car_t", "blasts", "hematopoiesis", "traffic")

LOGIC_CODE = {"single": 0, "or": 1, "and": 2}
EXHAUSTION_PARAM = {
    "4-1BB": "exhaustion_per_engagement_41bb",
    "CD28": "exhaustion_per_engagement_cd28",
    "CD28_SAVVY": "exhaustion_per_engagement_savvy",
}


class InvariantError(RuntimeError):
    """A ``--check`` invariant broke; the message names the phase and the step."""


@dataclass
class Lineage:
    """Healthy steady state and rates of the myeloid lineage for one body weight."""

    k_tr: float
    r_p: float
    k_rel: float
    k_circ: float
    k_mono: float
    d_h: float
    m_h: float
    healthy: np.ndarray  # cells per class at ANC_healthy
    background_bm: float  # normal marrow cells outside the explicit lineage

    def background(self, hspc: float, floor: float) -> float:
        """Marrow cells outside the explicit lineage.

        A fixed floor (lymphocytes, plasma cells, stroma that survive aplasia) plus a part
        that follows HSPC (erythroid and other output).
        """
        return self.background_bm * (floor + (1.0 - floor) * hspc / self.healthy[Stage.HSPC])

    @staticmethod
    def steady(p: dict[str, float], c_norm: float, blood_l: float) -> Lineage:
        """Derive transit rates and the healthy steady state (Friberg-type chain)."""
        k_tr = 5.0 / p["precursor_transit_h"]
        a = p["mitotic_amplification"] ** (1.0 / 3.0)
        r_p = k_tr * (1.0 - 1.0 / a)
        k_rel = 1.0 / p["reserve_residence_h"]
        k_circ = math.log(2) / p["neutrophil_half_life_h"]
        k_mono = math.log(2) / p["monocyte_half_life_h"]
        n = np.zeros(N_STAGES)
        n[Stage.BLOOD_NEUTROPHIL] = p["anc_healthy_1e9_per_l"] * 1e9 * blood_l
        flux = k_circ * n[Stage.BLOOD_NEUTROPHIL]
        n[Stage.RESERVE] = flux / k_rel
        n[Stage.BAND] = n[Stage.METAMYELOCYTE] = n[Stage.MYELOCYTE] = flux / k_tr
        n[Stage.PROMYELOCYTE] = flux / (a * k_tr)
        n[Stage.MYELOBLAST] = flux / (a * a * k_tr)
        n[Stage.HSPC] = p["hspc_fraction_of_bm"] * c_norm
        n[Stage.MONOCYTE] = p["monocyte_healthy_1e9_per_l"] * 1e9 * blood_l
        d_h = flux / a**3 / n[Stage.HSPC]
        m_h = k_mono * n[Stage.MONOCYTE] / n[Stage.HSPC]
        bm = n[: Stage.RESERVE + 1].sum()
        return Lineage(k_tr, r_p, k_rel, k_circ, k_mono, d_h, m_h, n, max(c_norm - bm, 0.1 * c_norm))


def stage_compartments() -> np.ndarray:
    """Compartment of each lineage class."""
    comp = np.full(N_STAGES, BM, np.int8)
    comp[Stage.BLOOD_NEUTROPHIL] = PB
    comp[Stage.MONOCYTE] = PB
    return comp


class Simulation:
    """One virtual patient treated with one product.

    Args:
        scenario: The validated scenario.
        patient_index: Which virtual patient of the population (common random numbers).
        patient: A pre-drawn patient (defaults to ``sample_patient(scenario, patient_index)``).
        check: Run invariant checks after every phase (slower).
        replicate: Stochastic replicate of the same patient and initial state (0 = default);
            only the kernel streams change.

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
        self.step_index = 0
        self.replicate = replicate
        suffix = f".{replicate}" if replicate else ""
        self.stream_seeds = {s: rng.kernel_stream_seed(scenario.seed, patient_index, f"kernel.{s}{suffix}") for s in STREAMS}
        self.phase_seconds = dict.fromkeys(STEP_PHASES, 0.0)

        # body and marrow
        w_kg = pt.weight_kg
        self.c_norm = p["bm_cells_per_kg"] * w_kg
        self.c_max = p["marrow_capacity_factor"] * self.c_norm
        self.volume_l = np.array([p["bm_volume_l_per_kg"] * w_kg, p["blood_volume_l_per_kg"] * w_kg, p["emd_volume_l"]])
        self.present = np.array([True, True, pt.has_emd])
        self.c_emd = p["emd_volume_l"] * 1e12  # packed tissue ~1e9 cells per cm^3
        self.lineage = Lineage.steady(p, self.c_norm, self.volume_l[PB])
        self.f0 = space_factor(self.c_norm, self.c_max, p["crowding_exponent"])

        self._setup_lineage_and_blasts()
        self._setup_product()
        self._setup_state()

    # ------------------------------------------------------------------ setup
    def _setup_lineage_and_blasts(self) -> None:
        p, pt, lin = self.p, self.patient, self.lineage
        q = pt.anc_baseline_1e9_per_l / p["anc_healthy_1e9_per_l"]
        self.myeloid = Frame(N_STAGES, ())
        for s in range(N_STAGES):
            self.myeloid.add(float(np.round(lin.healthy[s] * q)), int(stage_compartments()[s]), s)
        normal_bm = q * lin.healthy[: Stage.RESERVE + 1].sum() + lin.background(
            q * lin.healthy[Stage.HSPC], p["background_floor"]
        )
        frac = pt.bm_blast_fraction
        # a packed marrow holds at most its capacity: extreme fractions are capped there
        blasts_bm = min(frac / (1.0 - frac) * normal_bm, max(0.95 * self.c_max - normal_bm, 0.0))
        occupancy = blasts_bm + normal_bm
        f_init = max(space_factor(occupancy, self.c_max, p["crowding_exponent"]), 0.05)
        self.h_set = self.myeloid.w[Stage.HSPC] * self.f0 / f_init
        self.anc0 = pt.anc_baseline_1e9_per_l
        # blasts: division from the cell cycle, death so that free-marrow net growth matches the doubling time
        self.r_b = math.log(2) / p["blast_cycle_h"]
        net = math.log(2) / (pt.blast_doubling_days * 24.0)
        self.d_b = max(self.r_b * self.f0 - net, 0.0)
        egress = p["blast_egress_per_h"] * (occupancy / self.c_max) ** p["crowding_exponent"]
        blasts_pb = blasts_bm * egress / (p["blast_homing_per_h"] + p["blast_pb_death_per_h"])
        self.blasts = Frame(4 * self.scenario.resolution.blast_agents + 64, (*self.atlas.names, "divisions_pending"))
        self._seed_blasts(blasts_bm, BM, self.scenario.resolution.blast_agents, "bm")
        self._seed_blasts(blasts_pb, PB, max(self.scenario.resolution.blast_agents // 10, 1), "pb")
        if pt.has_emd:
            self._seed_blasts(pt.emd_blasts, EMD, max(self.scenario.resolution.blast_agents // 10, 1), "emd")

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
        dens = np.zeros((len(names) + 1, n_agents + len(names)))  # last row: divisions pending
        # the first agents of the main clone are the LSC-like share, with the LSC densities
        n_lsc = int(np.ceil(self.p["lsc_fraction_of_blasts"] * n_agents))
        for k, name in enumerate(names):
            a = self.patient.antigens[name]
            if a.positive:
                z = rng.generator(self.scenario.seed, self.index, f"blast.init.{where}.{name}").standard_normal(dens.shape[1])
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
        self.k_inh = p["icar_k_molecules"]
        if prod.icar:
            self.imax = prod.icar.imax if prod.icar.imax is not None else p["icar_imax"]
            self.k_inh = prod.icar.k_molecules or p["icar_k_molecules"]
        factor = p["cd28_threshold_factor"] if prod.costimulation == "CD28" else 1.0
        factor *= prod.activation_threshold_factor  # the binder (e.g. scFv vs natural ligand)
        self.k_kill = p["k_kill_molecules"] * factor
        self.k_cyt = p["k_cytokine_molecules"] * factor
        self.k_exh = p[EXHAUSTION_PARAM[prod.costimulation]]
        armored = prod.armoring == "IL-18"
        self.armor_fg = p["il18_armor_fg_per_cell_h"] if armored else 0.0
        # IL-18 gain on CAR T proliferation, IFN-gamma and macrophage drive (0: no response)
        self.il18_boost_max = p["il18_boost_max"] * (1.0 if armored else p["il18_response_unarmored"])
        self.competence = np.array([p["competence_memory"], 1.0, p["competence_exhausted"]])
        # activation of each lineage class (constant densities from the atlas)
        self.my_a_kill, self.my_a_stim = self.activations(self.atlas.stage_density_matrix(), N_STAGES)
        # CAR T cells as targets of each other (fratricide) through antigens the product still carries
        t_dens = self.atlas.t_cell_densities()
        for a in prod.knockout:
            t_dens[names.index(a)] = 0.0
        self.car_a_kill, self.car_a_stim = self.activation_of(t_dens)
        # the target on a normal tissue met in blood and marrow and not depleted (endothelium)
        _, self.tissue_a_stim = self.activation_of(self.atlas.tissue_densities())
        self.tissue_sigma = p["tissue_engagement_per_h"] * self.tissue_a_stim
        mem, fold = prod.memory_fraction, 1.0
        if prod.manufacturing == "dasatinib":
            mem = 1.0 - 0.5 * (1.0 - mem)  # assumed: dasatinib halves the differentiated share
            fold = p["dasatinib_expansion_fold"]
        self.memory_fraction = mem
        self.expansion_fitness = self.patient.product_fitness * fold
        self.dose_cells = float(np.round(self.patient.dose_cells_per_kg * self.patient.weight_kg))
        # room for CAR T cells: the body's, or the programmed burst of the infused cells if smaller
        burst = max(p["car_t_expansion_limit_fold"] * self.dose_cells, 1.0)
        self.car_t_room = p["car_t_capacity_cells"] if armored else min(p["car_t_capacity_cells"], burst)
        self.car_t = Frame(4 * self.scenario.resolution.car_t_agents + 64, ("load",))
        self.infused = False

    def _setup_state(self) -> None:
        self.stim = np.zeros(N_COMP)
        self.sigma = np.zeros(N_COMP)
        self.t_engaged = np.zeros(N_COMP)
        self.kills_blast = np.zeros(N_COMP)
        self.kills_myeloid = np.zeros(N_STAGES)
        self.killed_total_myeloid = np.zeros(N_STAGES)
        self.killed_total_blasts = 0.0
        self.boost = np.ones(N_COMP)
        self.cyt = np.zeros((N_COMP, 4))
        for c in range(N_COMP):
            if self.present[c]:
                self.cyt[c, IL6] = self.p["il6_baseline_pg_per_ml"]
                self.cyt[c, IL18] = self.p["il18_baseline_pg_per_ml"]
        self.car_obs = np.zeros((N_COMP, 3))
        self.bl_obs = np.zeros((N_COMP, 3))
        self.clinic = Clinic(self, self.replicate)
        self.recorder = Recorder(self)
        self._observe_agents()

    # ------------------------------------------------------------------ time and events
    @property
    def t_day(self) -> float:
        """Time (days, infusion at 0) at the start of the current step."""
        return self.t0_day + self.step_index * self.dt / 24.0

    def ld_window(self, t_day: float) -> bool:
        """Whether lymphodepleting chemotherapy acts at ``t_day``."""
        ld = self.scenario.lymphodepletion
        return ld.enabled and ld.start_day <= t_day < ld.start_day + ld.days

    def ld_signal(self, t_day: float) -> float:
        """Homeostatic signal L(t): 1 during and after lymphodepletion, decaying."""
        ld = self.scenario.lymphodepletion
        if not ld.enabled or t_day < ld.start_day:
            return 0.0
        end = ld.start_day + ld.days
        return 1.0 if t_day < end else math.exp(-(t_day - end) / self.p["ld_signal_decay_days"])

    def car_t_constants(self) -> tuple[float, ...]:
        """The fixed rate arguments of ``car_t_rates`` (r_max ... k_exh), shared with the oracle."""
        p = self.p
        return (
            p["car_t_max_division_per_h"],
            p["car_t_division_cap_per_h"],
            p["homeostatic_division_per_h"],
            p["memory_death_per_h"],
            p["effector_death_per_h"],
            p["exhausted_death_per_h"],
            p["aicd_per_engagement"],
            p["differentiation_per_h"],
            p["memory_reversion_fraction"],
            self.k_exh,
        )

    def t_cell_space(self, car_t_cells: float) -> float:
        """Room left for CAR T division: max(0, 1 - T / room), room = min(K_T, burst of the infused cells)."""
        return max(0.0, 1.0 - car_t_cells / self.car_t_room)

    def add_tissue_engagement(self, sigma: np.ndarray) -> None:
        """Add the engagements per CAR T cell per hour with the target-positive tissue of marrow and blood."""
        if self.tissue_sigma > 0.0:
            sigma[BM] += self.tissue_sigma
            sigma[PB] += self.tissue_sigma

    def car_t_per_ul_blood(self) -> float:
        """CAR T cells per uL of blood (all phenotypes, as of the last observation)."""
        return float(self.car_obs[PB].sum()) / (self.volume_l[PB] * 1e6)

    def rejection_per_h(self, t_day: float) -> float:
        """Host rejection of an allogeneic product, rising as host immunity recovers (1 - L(t))."""
        if self.scenario.product.donor != "allogeneic":
            return 0.0
        return self.p["allo_rejection_per_h"] * (1.0 - self.ld_signal(t_day))

    def transplant(self) -> None:
        """Consolidating allo-HSCT: conditioning, CAR T ablation, donor graft, then GVL."""
        p = self.p
        suffix = f".{self.replicate}" if self.replicate else ""
        draws = rng.generator(self.scenario.seed, self.index, f"hsct{suffix}")
        for frame, survive in ((self.blasts, 10.0 ** -p["hsct_blast_log_kill"]), (self.car_t, 1e-4)):
            w = frame.w[: frame.n]
            w[:] = draws.binomial(w.astype(np.int64), survive).astype(float)
        my = self.myeloid.w
        my[: Stage.MONOCYTE] = np.round(my[: Stage.MONOCYTE] * 0.01)
        my[Stage.HSPC] = float(np.round(p["hsct_cd34_per_kg"] * self.patient.weight_kg))
        self.h_set = self.lineage.healthy[Stage.HSPC]  # donor marrow
        self.clinic.state.hsct_day = self.t_day

    def gvl_per_h(self) -> float:
        """Graft-versus-leukemia hazard after a consolidating HSCT."""
        return self.p["hsct_gvl_per_h"] if self.clinic.state.hsct_day is not None else 0.0

    def infuse(self) -> None:
        """Add the product to blood as memory-like and effector agents."""
        total = self.dose_cells
        n_agents = int(min(self.scenario.resolution.car_t_agents, max(total, 1)))
        self.car_t.ensure(self.car_t.n + n_agents)
        n_mem = int(round(n_agents * self.memory_fraction))
        base = np.floor(total / n_agents)
        extra = int(total - base * n_agents)
        for i in range(n_agents):
            self.car_t.add(base + (1.0 if i < extra else 0.0), PB, MEMORY if i < n_mem else EFFECTOR)
        self.infused = True

    # ------------------------------------------------------------------ the step
    def step(self) -> None:
        """Advance one dt: events, then phases 0-7 in the order of ``STEP_PHASES``."""
        if not self.infused and self.t_day >= 0.0:
            self.infuse()
        c, iv = self.clinic.state, self.scenario.interventions
        if c.hsct_day is None:
            if iv.consolidation_hsct_day is not None and self.t_day >= iv.consolidation_hsct_day and self.clinic.in_remission():
                self.transplant()
            elif iv.rescue_hsct_day is not None and self.t_day >= iv.rescue_hsct_day:
                self.transplant()
        for name in STEP_PHASES:
            tic = time.perf_counter()
            before = self._check_before(name) if self.check else None
            getattr(self, f"_phase_{name}")()
            if self.check:
                self._check_after(name, before)
            self.phase_seconds[name] += time.perf_counter() - tic
        self.step_index += 1

    def run(self, progress=None) -> Result:
        """Run to the horizon and return the result (time series and summary)."""
        self.recorder.record(self.t_day)
        while self.step_index < self.n_steps and self.clinic.state.death_day is None:
            self.step()
            if progress is not None:
                progress(self.step_index, self.n_steps)
        from sim.readouts import summarize

        ts = self.recorder.frame()
        return Result(self.scenario, self.patient, ts, summarize(self, ts))

    def _seed(self, stream: str) -> None:
        seed_step(self.stream_seeds[stream], self.step_index)

    def _phase_resample(self) -> None:
        self._seed("resample")
        res = self.scenario.resolution
        for frame, target, n_cls in ((self.car_t, res.car_t_agents, 3), (self.blasts, res.blast_agents, self.n_blast_classes)):
            frame.ensure(target + 1)
            frame.n = nb_resample_agents(frame.w, frame.comp, frame.cls, frame.x, frame.n, target, n_cls)

    def _phase_engage(self) -> None:
        self._seed("engage")
        bl = self.blasts
        a_kill, a_stim = self.activations(self.blast_densities_seen(), bl.n)
        p = self.p
        ct, my = self.car_t, self.myeloid
        nb_engage_targets(
            self.dt,
            ct.w,
            ct.comp,
            ct.cls,
            ct.n,
            bl.w,
            bl.comp,
            bl.n,
            a_kill,
            a_stim,
            my.w,
            my.comp,
            my.n,
            self.my_a_kill,
            self.my_a_stim,
            self.car_a_kill,
            self.car_a_stim,
            self.volume_l,
            self.competence,
            p["search_rate_l_per_h"],
            p["handling_time_h"],
            p["kill_per_activation"],
            self.damp,
            self.kills_blast,
            self.kills_myeloid,
            self.sigma,
            self.t_engaged,
        )
        self.add_tissue_engagement(self.sigma)
        nb_record_load(ct.comp, ct.x, ct.n, self.sigma, self.dt)
        self.killed_total_myeloid += self.kills_myeloid
        self.killed_total_blasts += self.kills_blast.sum()

    def blast_densities_seen(self) -> np.ndarray:
        """Blast antigen densities as CAR T cells meet them (raised by an active adjuvant)."""
        x, adj = self.blasts.x, self.scenario.adjuvant
        if adj is None or not adj.start_day <= self.t_day < adj.end_day:
            return x
        x = x.copy()
        for name in adj.antigens:
            x[self.atlas.index(name)] *= adj.fold
        return x

    def activations(self, x: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Killing and cytokine-level activation of targets with densities ``x[antigen, target]``."""
        a_kill, a_stim = np.empty(n), np.empty(n)
        p = self.p
        nb_target_activation(
            x, n, self.car1, self.car2, self.logic, self.icar, self.k_kill, self.k_cyt, p["hill_n"], self.imax, self.k_inh,
            p["icar_hill_m"], a_kill, a_stim,
        )  # fmt: skip
        return a_kill, a_stim

    def activation_of(self, densities: np.ndarray) -> tuple[float, float]:
        """Killing and cytokine-level activation of one kind of target with ``densities[antigen]``."""
        a_kill, a_stim = self.activations(densities.reshape(-1, 1), 1)
        return float(a_kill[0]), float(a_stim[0])

    @property
    def damp(self) -> float:
        """Steroid damping of CAR T proliferation, killing and cytokine production."""
        return 0.5 if self.clinic.state.steroids_active(self.t_day) else 1.0

    def _phase_car_t(self) -> None:
        self._seed("car_t")
        p, ct = self.p, self.car_t
        ct.ensure(ct.n + 9)
        if self.il18_boost_max > 0.0:
            nb_il18_boost(self.cyt, p["il18_baseline_pg_per_ml"], p["il18_half_sat_pg_per_ml"], self.il18_boost_max, self.boost)
        ct.n = nb_update_car_t(
            self.dt,
            ct.w,
            ct.comp,
            ct.cls,
            ct.x,
            ct.n,
            self.stim,
            self.sigma,
            self.boost,
            self.expansion_fitness,
            self.ld_signal(self.t_day),
            p["ld_expansion_floor"],
            self.t_cell_space(self.car_t.total()),
            self.damp,
            self.rejection_per_h(self.t_day),
            p["stim_memory_h"],
            p["stim_half_sat_per_h"],
            *self.car_t_constants(),
        )

    def occupancy(self) -> float:
        """Marrow cells competing for space: blasts, lineage in marrow, background."""
        bl = self.blasts
        blasts_bm = float(bl.w[: bl.n][bl.comp[: bl.n] == BM].sum())
        return blasts_bm + self.normal_bm_cells()

    def normal_bm_cells(self) -> float:
        """Normal marrow nucleated cells: explicit lineage plus background tracking HSPC."""
        w = self.myeloid.w
        return float(w[: Stage.RESERVE + 1].sum()) + self.background_bm()

    def background_bm(self) -> float:
        """Erythroid, lymphoid and other marrow cells (see :meth:`Lineage.background`)."""
        return self.lineage.background(self.myeloid.w[Stage.HSPC], self.p["background_floor"])

    def _ld_hazard(self, kill_per_day: float) -> float:
        return -math.log(1.0 - kill_per_day) / 24.0 if self.ld_window(self.t_day) else 0.0

    def _phase_blasts(self) -> None:
        self._seed("blasts")
        p, bl = self.p, self.blasts
        k = p["crowding_exponent"]
        f_bm = space_factor(self.occupancy(), self.c_max, k)
        emd_total = float(bl.w[: bl.n][bl.comp[: bl.n] == EMD].sum()) if self.present[EMD] else 0.0
        f_emd = space_factor(emd_total, self.c_emd, k)
        nb_grow_blasts(
            self.dt,
            bl.w,
            bl.comp,
            bl.x,
            bl.n,
            self.r_b,
            self.d_b,
            f_bm,
            f_emd,
            p["blast_pb_death_per_h"],
            self._ld_hazard(p["ld_blast_kill_per_day"]) + self.gvl_per_h(),
            p["antigen_noise_sd"],
        )

    def bm_blast_percent(self) -> float:
        """Marrow blasts as a percentage of marrow nucleated cells (lineage and background included)."""
        blasts = self.bl_obs[BM, 0]
        return 100.0 * blasts / (blasts + self.normal_bm_cells())

    def anc(self) -> float:
        """Absolute neutrophil count in blood (1e9/L)."""
        return self.myeloid.w[Stage.BLOOD_NEUTROPHIL] / (self.volume_l[PB] * 1e9)

    def _phase_hematopoiesis(self) -> None:
        self._seed("hematopoiesis")
        p, lin = self.p, self.lineage
        f = space_factor(self.occupancy(), self.c_max, p["crowding_exponent"])
        gcsf = min((self.anc0 / max(self.anc(), 1e-6)) ** p["gcsf_gamma"], p["gcsf_max_fold"])
        nb_step_hematopoiesis(
            self.dt,
            self.myeloid.w,
            f / self.f0,
            gcsf,
            self._ld_hazard(p["ld_myelo_kill_per_day"]),
            p["hspc_renewal_per_h"],
            self.h_set,
            lin.d_h,
            lin.m_h,
            lin.r_p,
            lin.k_tr,
            lin.k_rel,
            lin.k_circ,
            lin.k_mono,
        )

    def _phase_cytokines(self) -> None:
        p = self.p
        mono = 0.5 + 0.5 * self.myeloid.w[Stage.MONOCYTE] / max(self.lineage.healthy[Stage.MONOCYTE], 1.0)
        ln2 = math.log(2)
        nb_update_cytokines(
            self.dt,
            self.cyt,
            self.sigma,
            self.t_engaged,
            self.car_obs.sum(axis=1),
            self.volume_l,
            self.present,
            mono,
            self.damp,
            p["ifng_pg_per_engagement"],
            ln2 / p["il6_half_life_h"],
            ln2 / p["ifng_half_life_h"],
            ln2 / p["il18_half_life_h"],
            p["il6_baseline_pg_per_ml"],
            p["il18_baseline_pg_per_ml"],
            p["il6_max_pg_per_ml"],
            p["macrophage_activation_per_h"] * self.patient.inflammatory_reactivity,
            p["macrophage_ifng_half_sat_pg_per_ml"],
            p["macrophage_decay_per_h"],
            p["il18_macrophage_fold"],
            self.armor_fg,
            p["il18_half_sat_pg_per_ml"],
            self.il18_boost_max,
            p["cytokine_exchange_per_h"],
            p["ifng_bystander_fg_per_cell_h"],
            p["bystander_il18_half_sat_pg_per_ml"],
            1.0 - p["macrophage_steroid_sensitivity"] * (1.0 - self.damp),
        )

    def traffic_rates(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-hour rates [from, to] for CAR T and blasts."""
        p = self.p
        car = np.zeros((N_COMP, N_COMP))
        car[PB, BM] = p["car_t_bm_entry_per_h"]
        car[BM, PB] = p["car_t_bm_exit_per_h"]
        blast = np.zeros((N_COMP, N_COMP))
        blast[BM, PB] = p["blast_egress_per_h"] * (self.occupancy() / self.c_max) ** p["crowding_exponent"]
        blast[PB, BM] = p["blast_homing_per_h"]
        if self.present[EMD]:
            car[PB, EMD] = p["car_t_emd_entry_per_h"]
            car[EMD, PB] = p["car_t_emd_exit_per_h"]
        return car, blast

    def _phase_traffic(self) -> None:
        self._seed("traffic")
        car_rates, blast_rates = self.traffic_rates()
        for frame, rates, n_cls in ((self.car_t, car_rates, 3), (self.blasts, blast_rates, self.n_blast_classes)):
            frame.ensure(frame.n + N_COMP * n_cls)
            frame.n = nb_traffic_cells(self.dt, frame.w, frame.comp, frame.cls, frame.x, frame.n, rates, n_cls)

    def _observe_agents(self) -> None:
        ct, bl = self.car_t, self.blasts
        nb_observe_agents(
            ct.w,
            ct.comp,
            ct.cls,
            ct.n,
            bl.w,
            bl.comp,
            bl.x,
            bl.n,
            self.car1,
            self.car2,
            self.logic,
            self.icar,
            self.imax,
            self.k_inh,
            self.p["icar_hill_m"],
            self.car_obs,
            self.bl_obs,
        )

    def _phase_observe(self) -> None:
        self._observe_agents()
        self.clinic.update(self.t_day, self.t_day + self.dt / 24.0)
        if (self.step_index + 1) % self.recorder.every == 0:
            self.recorder.record(self.t_day + self.dt / 24.0)

    # ------------------------------------------------------------------ checking mode
    def _check_before(self, phase: str) -> float | None:
        if phase == "resample":
            return self.car_t.total() + self.blasts.total()
        return None

    def _check_after(self, phase: str, before: float | None) -> None:
        where = f"after phase {phase!r} at step {self.step_index} (day {self.t_day:.3f})"
        for name, frame in (("car_t", self.car_t), ("blasts", self.blasts), ("myeloid", self.myeloid)):
            w = frame.w[: frame.n]
            if not np.all(np.isfinite(w)) or np.any(w < 0):
                raise InvariantError(f"{name} weights negative or not finite {where}")
            if np.any(w != np.round(w)):
                raise InvariantError(f"{name} weights not whole cells {where}")
            if np.any((frame.comp[: frame.n] < 0) | (frame.comp[: frame.n] >= N_COMP)):
                raise InvariantError(f"{name} compartment code out of range {where}")
        if not np.all(np.isfinite(self.cyt)) or np.any(self.cyt < 0):
            raise InvariantError(f"cytokine pools negative or not finite {where}")
        if before is not None and self.car_t.total() + self.blasts.total() != before:
            raise InvariantError(
                f"split/merge changed the total weight ({before} -> {self.car_t.total() + self.blasts.total()}) {where}"
            )
        if not self.present[EMD] and (
            np.any(self.car_t.comp[: self.car_t.n] == EMD) or np.any(self.blasts.comp[: self.blasts.n] == EMD)
        ):
            raise InvariantError(f"agents in an absent EMD compartment {where}")


TS_COMP_COLUMNS = (
    "blasts",
    "blasts_target_negative",
    "car_t_memory",
    "car_t_effector",
    "car_t_exhausted",
    "il6_pg_per_ml",
    "ifng_pg_per_ml",
    "il18_pg_per_ml",
    "macrophage_activation",
    "blasts_icar_protected",
)
STAGE_COLUMNS = tuple(s.name.lower() for s in Stage)
TS_GLOBAL_COLUMNS = (
    "anc_1e9_per_l",
    "bm_nucleated_cells",
    "bm_blast_percent",
    "inflammation_index",
    "neurotoxicity_index",
    "crs_grade_now",
    "icans_grade_now",
    "tocilizumab",
    "steroids",
)


class Recorder:
    """Preallocated time series, one row per record time and compartment."""

    def __init__(self, sim: Simulation):
        self.sim = sim
        self.every = max(1, int(round(sim.scenario.outputs.record_every_hours / sim.dt)))
        n_rec = sim.n_steps // self.every + 2
        self.t_day = np.zeros(n_rec)
        self.comp = np.zeros((n_rec, N_COMP, len(TS_COMP_COLUMNS)))
        self.stages = np.zeros((n_rec, N_STAGES))
        self.glob = np.zeros((n_rec, len(TS_GLOBAL_COLUMNS)))
        self.killed = np.zeros((n_rec, N_STAGES))
        self.n = 0

    def record(self, t_day: float) -> None:
        """Store the current state as the row of time ``t_day``."""
        s, i = self.sim, self.n
        c = s.clinic.state
        self.t_day[i] = t_day
        self.comp[i, :, 0] = s.bl_obs[:, 0]
        self.comp[i, :, 1] = s.bl_obs[:, 1]
        self.comp[i, :, 9] = s.bl_obs[:, 2]
        self.comp[i, :, 2:5] = s.car_obs
        self.comp[i, :, 5] = s.cyt[:, IL6]
        self.comp[i, :, 6] = s.cyt[:, IFNG]
        self.comp[i, :, 7] = s.cyt[:, IL18]
        self.comp[i, :, 8] = s.cyt[:, MAC]
        self.stages[i] = s.myeloid.w[:N_STAGES]
        self.glob[i] = (
            s.anc(),
            s.bl_obs[BM, 0] + s.normal_bm_cells(),
            s.bm_blast_percent(),
            c.inflammation,
            c.neuro,
            c.crs_now,
            c.icans_now,
            float(c.toci_active(t_day)),
            float(c.steroids_active(t_day)),
        )
        self.killed[i] = s.killed_total_myeloid
        self.n += 1

    def frame(self):
        """The time series as a long pandas DataFrame (one row per time and compartment)."""
        import pandas as pd

        n = self.n
        rows = {"t_days": np.repeat(self.t_day[:n], N_COMP), "compartment": np.tile(np.array(["bm", "pb", "emd"]), n)}
        for k, col in enumerate(TS_COMP_COLUMNS):
            rows[col] = self.comp[:n, :, k].reshape(-1)
        comp_of = stage_compartments()
        for s, col in enumerate(STAGE_COLUMNS):
            vals = np.zeros((n, N_COMP))
            vals[:, comp_of[s]] = self.stages[:n, s]
            rows[col] = vals.reshape(-1)
        for k, col in enumerate(TS_GLOBAL_COLUMNS):
            rows[col] = np.repeat(self.glob[:n, k], N_COMP)
        for s, col in enumerate(STAGE_COLUMNS):
            rows[f"killed_{col}"] = np.repeat(self.killed[:n, s], N_COMP)
        df = pd.DataFrame(rows)
        if not self.sim.present[EMD]:
            df = df[df.compartment != "emd"].reset_index(drop=True)
        return df


@dataclass
class Result:
    """What one run produced."""

    scenario: Scenario
    patient: VirtualPatient
    timeseries: object  # pandas.DataFrame
    summary: dict
