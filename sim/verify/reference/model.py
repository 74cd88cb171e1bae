"""The pure-Mesa reference model: the core's rules with one ``mesa.Agent`` per cell.

Every CAR T cell, blast and myeloid cell is a Mesa agent; every event is a Bernoulli
draw per cell with the probability the core's kernels use (the rate formulas are the
same functions, called as plain Python through numba's ``py_func``). What differs is the
machinery the core adds for speed: super-individual weights, binomial draws on weights,
split/merge and the spawning of movers. Run at weight 1 the two must give the same
outcome distributions (``tests/test_reference.py``).

The patient, the lineage steady state, the product constants, the cytokine fields and
the clinic are shared with the core through a host :class:`~sim.model.Simulation`: they
are not cells. The host's cell frames are read once, to create the initial agents, and
then stand unused; the host's lineage counts, observations and clinical state are kept
in step with the agents.

Example:
    >>> from sim.verify.reference import ReferenceModel
    >>> from sim.scenario import load_scenario
    >>> sc = load_scenario("scenarios/cll1_standard.yaml", ["horizon_days=1", "patient.weight_kg=1e-7",
    ...                                                    "product.dose_cells_per_kg=3e8"])
    >>> model = ReferenceModel(sc, rng=1)
    >>> result = model.run()
    >>> result.summary["scenario"], len(model.agents) > 0
    ('cll1_standard', True)
"""

from __future__ import annotations

import math

import mesa
import numpy as np

from sim.antigens import Stage
from sim.core.blasts import lost_antigen
from sim.core.car_t import EFFECTOR, EXHAUSTED, MEMORY, car_t_rates, signal
from sim.core.common import BM, EMD, N_COMP, PB, activation, growth_prob, hill, prob, relax, space_factor
from sim.core.cytokines import MAC, nb_il18_boost
from sim.core.engage import add_tissue_engagement, bystander_hazard, competence, kill_hazard_and_stimulation
from sim.core.hematopoiesis import N_STAGES, gcsf_fold, mitotic_transit
from sim.core.platelets import nb_step_platelets
from sim.core.step import blast_extra_death, take_next_infusion
from sim.model import STEP_PHASES, Simulation, stage_compartments
from sim.scenario import Scenario

# The rate formulas of the core, as plain Python (no compiled code in the cell loops).
_activation = activation.py_func
_car_t_rates = car_t_rates.py_func
_kill_hazard_and_stimulation = kill_hazard_and_stimulation.py_func
_bystander_hazard = bystander_hazard.py_func
_competence = competence.py_func
_blast_extra_death = blast_extra_death.py_func
_add_tissue_engagement = add_tissue_engagement.py_func
_signal = signal.py_func
_gcsf_fold = gcsf_fold.py_func
_mitotic_transit = mitotic_transit.py_func
_step_platelets = nb_step_platelets.py_func
_growth_prob = growth_prob.py_func
_lost_antigen = lost_antigen.py_func
_hill = hill.py_func
_prob = prob.py_func
_relax = relax.py_func
_space_factor = space_factor.py_func

STAGE_COMP = [int(c) for c in stage_compartments()]


class CarTCell(mesa.Agent):
    """One CAR T cell: compartment, phenotype (memory-like, effector, exhausted), engagement load."""

    def __init__(self, model: ReferenceModel, comp: int, phenotype: int, load: float = 0.0):
        super().__init__(model)
        self.comp, self.phenotype, self.load = comp, phenotype, load


class Blast(mesa.Agent):
    """One leukemic blast: compartment, clone (0 main, 1 + k negative for antigen k), antigen densities."""

    def __init__(self, model: ReferenceModel, comp: int, clone: int, densities: list[float]):
        super().__init__(model)
        self.comp, self.clone = comp, clone
        self.set_densities(densities)

    def set_densities(self, densities: list[float]) -> None:
        """Set antigen densities and the activation they give (killing and cytokine level)."""
        m = self.model
        self.densities = densities
        d1 = densities[m.host.car1]
        d2 = densities[m.host.car2] if m.host.car2 >= 0 else 0.0
        di = densities[m.host.icar] if m.host.icar >= 0 else 0.0
        args = (m.host.logic, di)
        self.a_kill = _activation(d1, d2, *args, m.host.k_kill, m.p.hill_n, m.host.imax, m.host.k_inh, m.p.icar_hill_m)
        self.a_stim = _activation(d1, d2, *args, m.host.k_cyt, m.p.hill_n, m.host.imax, m.host.k_inh, m.p.icar_hill_m)


class MyeloidCell(mesa.Agent):
    """One cell of the normal myeloid lineage (HSPC .. blood neutrophil, monocyte)."""

    def __init__(self, model: ReferenceModel, stage: int):
        super().__init__(model)
        self.stage = stage
        model.stage_count[stage] += 1

    def die(self) -> None:
        """Remove the cell and its count."""
        self.model.stage_count[self.stage] -= 1
        self.remove()

    def mature(self, stage: int) -> None:
        """Move on to ``stage``."""
        self.model.stage_count[self.stage] -= 1
        self.model.stage_count[stage] += 1
        self.stage = stage


class _Host(Simulation):
    """The core's patient, fields and clinic, with marrow occupancy counted from the reference's blasts."""

    ref_blasts_bm = 0.0

    def occupancy(self) -> float:
        return self.ref_blasts_bm + self.normal_bm_cells()


class ReferenceModel(mesa.Model):
    """One virtual patient with one Mesa agent per cell.

    Args:
        scenario: The validated scenario (keep it small: ``patient.weight_kg`` ~1e-7-1e-5 kg
            gives 1e3-1e5 marrow cells at the same concentrations as a patient).
        patient_index: Which virtual patient of the population.
        rng: Seed of the per-cell draws (Mesa's generators).
    """

    def __init__(self, scenario: Scenario, patient_index: int = 0, rng: int | None = None):
        super().__init__(rng=rng)
        iv = scenario.interventions
        if iv.consolidation_hsct_day is not None or iv.rescue_hsct_day is not None or scenario.adjuvant is not None:
            raise ValueError("the reference model implements neither HSCT nor adjuvants")
        self.host = host = _Host(scenario, patient_index)
        self.p, self.dt = host.p, host.dt
        self.stage_count = host.myeloid.w  # the host reads lineage counts from here (ANC, marrow)
        counts = self.stage_count[:N_STAGES].astype(np.int64).copy()
        self.stage_count[:] = 0.0
        for stage, k in enumerate(counts):
            for _ in range(k):
                MyeloidCell(self, stage)
        bl = host.blasts
        for j in range(bl.n):
            for _ in range(int(bl.w[j])):
                Blast(self, int(bl.comp[j]), int(bl.cls[j]), [float(v) for v in bl.x[: len(host.atlas.names), j]])
        self._observe()

    # ------------------------------------------------------------------ views
    def cells(self, kind: type) -> list:
        """A snapshot list of the agents of one kind (safe to add and remove while iterating)."""
        return list(self.agents_by_type[kind]) if kind in self.agents_by_type else []

    def _blasts_in(self, comp: int) -> int:
        return sum(1 for b in self.cells(Blast) if b.comp == comp)

    # ------------------------------------------------------------------ the step
    def step(self) -> None:
        """Advance one dt: infusion when due, then the phases of ``sim.model.STEP_PHASES``."""
        host = self.host
        while host.infusion_due():
            self._infuse()
        for name in STEP_PHASES:
            getattr(self, f"_phase_{name}")()
        host.step_index += 1

    def run(self):
        """Run to the horizon; return the same :class:`~sim.model.Result` as the core."""
        from sim.model import Result
        from sim.readouts import summarize

        host = self.host
        host.recorder.record(host.t_day)
        while host.step_index < host.n_steps and host.clinic.state.death_day is None:
            self.step()
        return Result(host.scenario, host.patient, summarize(host), host.recorder)

    def _infuse(self) -> None:
        total = int(take_next_infusion(self.host.k, self.host.st))
        n_mem = int(round(total * self.host.memory_fraction))
        for i in range(total):
            CarTCell(self, PB, MEMORY if i < n_mem else EFFECTOR)

    def _bernoulli(self, p: float) -> bool:
        return p > 0.0 and (p >= 1.0 or self.random.random() < p)

    def _phase_resample(self) -> None:
        """Nothing to do: every agent is one cell."""

    def _phase_engage(self) -> None:
        host, dt = self.host, self.dt
        blasts, myeloid, car_t = self.cells(Blast), self.cells(MyeloidCell), self.cells(CarTCell)
        act_kill, act_stim, t_kill, cells = [0.0] * N_COMP, [0.0] * N_COMP, [0.0] * N_COMP, [0.0] * N_COMP
        for b in blasts:
            act_kill[b.comp] += b.a_kill
            act_stim[b.comp] += b.a_stim
            cells[b.comp] += 1.0
        for s in range(N_STAGES):
            act_kill[STAGE_COMP[s]] += self.stage_count[s] * host.my_a_kill[s]
            act_stim[STAGE_COMP[s]] += self.stage_count[s] * host.my_a_stim[s]
            cells[STAGE_COMP[s]] += self.stage_count[s]
        for t in car_t:
            t_kill[t.comp] += _competence(host.k.engage, t.phenotype)
            act_kill[t.comp] += host.car_a_kill  # fratricide
            act_stim[t.comp] += host.car_a_stim
        hazard, bystander = [0.0] * N_COMP, [0.0] * N_COMP
        for c in range(N_COMP):
            host.t_engaged[c], host.sigma[c], host.kills_blast[c] = t_kill[c], 0.0, 0.0
            hazard[c], host.sigma[c] = _kill_hazard_and_stimulation(
                host.k.engage, act_kill[c], act_stim[c], t_kill[c], host.volume_l[c], host.damp
            )
            bystander[c] = _bystander_hazard(host.k.engage, hazard[c], act_kill[c], cells[c])
        for b in blasts:
            if self._bernoulli(_prob(hazard[b.comp] * b.a_kill + bystander[b.comp], dt)):
                host.kills_blast[b.comp] += 1.0
                b.remove()
        survivors = []
        for t in car_t:
            if self._bernoulli(_prob(hazard[t.comp] * host.car_a_kill, dt)):
                t.remove()
            else:
                survivors.append(t)
        car_t = survivors
        host.kills_myeloid[:] = 0.0
        for m in myeloid:
            if self._bernoulli(_prob(hazard[STAGE_COMP[m.stage]] * host.my_a_kill[m.stage], dt)):
                host.kills_myeloid[m.stage] += 1.0
                m.die()
        _add_tissue_engagement(host.k.engage, host.sigma)
        for t in car_t:
            t.load += host.sigma[t.comp] * dt
        host.killed_total_myeloid[:] += host.kills_myeloid

    def _phase_car_t(self) -> None:
        host, p, dt = self.host, self.p, self.dt
        for c in range(N_COMP):
            host.stim[c] = _relax(host.stim[c], host.sigma[c], 1.0 / p.stim_memory_h, dt)
        if host.k.cytokines.il18_boost_max > 0.0:
            nb_il18_boost(host.k.cytokines, host.cyt, host.boost)
        cells = self.cells(CarTCell)
        space = host.t_cell_space(float(len(cells)))
        ld, damp = host.ld_signal(host.t_day), host.damp
        d_extra = host.rejection_per_h(host.t_day) + host.elimination_per_h(host.t_day)
        for t in cells:
            c = t.comp
            g = _signal(host.k.car_t, host.stim[c])
            rates = _car_t_rates(host.k.car_t, t.phenotype, g, host.sigma[c], host.boost[c], ld, space, damp)
            div, death, to_m, to_e, to_x = rates
            family = [t]
            if self._bernoulli(_growth_prob(div, dt)):
                family.append(CarTCell(self, c, t.phenotype, t.load))
            for cell in family:
                if self._bernoulli(_prob(death + d_extra, dt)):
                    cell.remove()
                elif self._bernoulli(_prob(to_m + to_e + to_x, dt)):
                    u = self.random.random() * (to_m + to_e + to_x)
                    cell.phenotype = MEMORY if u < to_m else (EFFECTOR if u < to_m + to_e else EXHAUSTED)

    def _phase_blasts(self) -> None:
        host, p, dt = self.host, self.p, self.dt
        k = p.crowding_exponent
        host.ref_blasts_bm = float(self._blasts_in(BM))
        f = {BM: _space_factor(host.occupancy(), host.c_max, k)}
        if host.present[EMD]:
            f[EMD] = _space_factor(float(self._blasts_in(EMD)), host.c_emd, k)
        extra = _blast_extra_death(host.k.sched, host.st.cs, host.t_day)
        # a division adds 1/2 division per cell to each daughter: the core's drift at weight 1
        s = p.antigen_noise_sd * math.sqrt(0.5)
        for b in self.cells(Blast):
            if b.comp == PB:
                if self._bernoulli(_prob(p.blast_pb_death_per_h + extra, dt)):
                    b.remove()
                continue
            family = [b]
            if self._bernoulli(_growth_prob(host.r_b * f[b.comp], dt)):
                family.append(self._daughter(b))
            for cell in family:
                if self._bernoulli(_prob(host.d_b + extra, dt)):
                    cell.remove()
                elif len(family) == 2 and s > 0.0:
                    cell.set_densities([d * math.exp(s * self.rng.standard_normal() - 0.5 * s * s) for d in cell.densities])

    def _daughter(self, b: Blast) -> Blast:
        """A daughter of ``b``: a main-clone daughter may lose one CAR antigen (the core's rule)."""
        k = self.host.k.blasts
        if b.clone == 0 and k.antigen_loss_per_division > 0.0 and self._bernoulli(k.antigen_loss_per_division):
            a = _lost_antigen(k, self.rng.random())
            return Blast(self, b.comp, 1 + a, [0.0 if j == a else d for j, d in enumerate(b.densities)])
        return Blast(self, b.comp, b.clone, b.densities)

    def _phase_hematopoiesis(self) -> None:
        host, p, lin, dt = self.host, self.p, self.host.lineage, self.dt
        host.ref_blasts_bm = float(self._blasts_in(BM))
        ratio = _space_factor(host.occupancy(), host.c_max, p.crowding_exponent) / host.f0
        gcsf = _gcsf_fold(lin, host.anc())
        ld = host.ld_hazards_per_h(host.t_day)[1]
        h = float(self.stage_count[Stage.HSPC])
        stay, leave, mature = _mitotic_transit(lin, gcsf, ld, dt)
        for m in self.cells(MyeloidCell):  # flows from the start-of-step state
            s = m.stage
            if s == Stage.HSPC:
                family = [m]
                if self._bernoulli(_growth_prob(lin.r_h * ratio, dt)):
                    family.append(MyeloidCell(self, s))
                for cell in family:
                    if self._bernoulli(_prob(lin.r_h * h / host.h_set + ld, dt)):
                        cell.die()
            elif s <= Stage.MYELOCYTE:  # mitotic: divide, then each cell exits (matures or dies)
                family = [m]
                if self._bernoulli(stay + leave - 1.0):
                    family.append(MyeloidCell(self, s))
                for cell in family:
                    if self._bernoulli(leave / (stay + leave)):
                        if self._bernoulli(mature):
                            cell.mature(s + 1)
                        else:
                            cell.die()
            elif s <= Stage.BAND:
                if self._bernoulli(_prob(lin.k_tr, dt)):
                    m.mature(s + 1)
            elif s == Stage.RESERVE:
                if self._bernoulli(_prob(lin.k_rel * gcsf, dt)):
                    m.mature(Stage.BLOOD_NEUTROPHIL)
            elif self._bernoulli(_prob(lin.k_circ if s == Stage.BLOOD_NEUTROPHIL else lin.k_mono, dt)):
                m.die()
        if h > 0.0:
            for _ in range(self.rng.poisson(lin.d_h * h * dt)):
                MyeloidCell(self, Stage.MYELOBLAST)
            for _ in range(self.rng.poisson(lin.m_h * h * dt)):
                MyeloidCell(self, Stage.MONOCYTE)
        # platelets are a field, not cells: the core's chain, fed by this model's HSPC
        _step_platelets(
            dt,
            host.k.platelets,
            host.platelets,
            float(self.stage_count[Stage.HSPC]),
            host.bm_blast_percent() / 100.0,
            ld,
            host.cyt[PB, MAC],
        )

    def _phase_cytokines(self) -> None:
        self.host._phase_cytokines()  # a field, not cells: reads the CAR T counts of the last observe, as the core does

    def _phase_traffic(self) -> None:
        host = self.host
        host.ref_blasts_bm = float(self._blasts_in(BM))
        car_rates, blast_rates = host.traffic_rates()
        for kind, rates in ((CarTCell, car_rates), (Blast, blast_rates)):
            for cell in self.cells(kind):
                row = rates[cell.comp]
                h_out = float(row.sum())
                if self._bernoulli(_prob(h_out, self.dt)):
                    u, acc = self.random.random() * h_out, 0.0
                    for b in range(N_COMP):
                        acc += row[b]
                        if row[b] > 0.0 and u < acc:
                            cell.comp = b
                            break

    def _observe(self) -> None:
        host = self.host
        host.car_obs[:] = 0.0
        host.bl_obs[:] = 0.0
        for t in self.cells(CarTCell):
            host.car_obs[t.comp, t.phenotype] += 1.0
        for b in self.cells(Blast):
            host.bl_obs[b.comp, 0] += 1.0
            d = b.densities
            neg1 = d[host.car1] <= 0.0
            neg2 = d[host.car2] <= 0.0 if host.car2 >= 0 else neg1
            negative = neg1 if host.logic == 0 else (neg1 and neg2 if host.logic == 1 else neg1 or neg2)
            host.bl_obs[b.comp, 1] += float(negative)
            if host.icar >= 0 and host.imax * _hill(d[host.icar], host.k_inh, self.p.icar_hill_m) >= 0.5:
                host.bl_obs[b.comp, 2] += 1.0
        host.ref_blasts_bm = float(host.bl_obs[BM, 0])

    def _phase_observe(self) -> None:
        host = self.host
        self._observe()
        host.clinic.update(host.t_day, host.t_day + self.dt / 24.0)
        if (host.step_index + 1) % host.recorder.every == 0:
            host.recorder.record(host.t_day + self.dt / 24.0)
