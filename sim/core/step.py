"""The step, in order, and the compiled time loop.

====  ===============  ==================================================================
 #    phase            what happens
====  ===============  ==================================================================
 0    resample         split/merge CAR T and blast agents (``nb_resample_agents``)
 1    engage           CAR T meet targets; activation kills (``nb_engage_targets``)
 2    car_t            division, death, phenotype, exhaustion (``nb_update_car_t``)
 3    blasts           division in marrow space, death, drift (``nb_grow_blasts``)
 4    hematopoiesis    HSPC, transit, release, G-CSF feedback (``nb_step_hematopoiesis``);
                      megakaryocytes and platelets, TPO feedback (``nb_step_platelets``)
 5    cytokines        IL-6, IFN-gamma, IL-18, macrophages (``nb_update_cytokines``)
 6    traffic          marrow <-> blood <-> EMD (``nb_traffic_cells``)
 7    observe          totals, clinical state, interventions, record (``nb_clinic_update``)
====  ===============  ==================================================================

``STEP_PHASES`` names them; :func:`nb_step` runs them in this order and
:meth:`sim.model.Simulation.step` runs the same ``phase_*`` functions one by one from
Python (checking mode, per-phase timing). Events (infusion, HSCT) fall between steps:
:func:`nb_run` returns to Python when one is due, and Python applies it.

A patient is three records: ``Consts`` (typed constants of each component), a
``PatientState`` (struct of arrays, including the clinic's state vector) and ``Records``
(the preallocated time series); plus ``rs``, its random streams.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from sim.core import clinic as cc
from sim.core.blasts import BlastConst, bm_and_emd_blasts, nb_grow_blasts
from sim.core.car_t import CarTConst, nb_update_car_t
from sim.core.common import BM, EMD, N_COMP, PB, space_factor
from sim.core.cytokines import IFNG, IL6, IL18, MAC, CytokineConst, deaths_per_ml_h, nb_il18_boost, nb_update_cytokines
from sim.core.engage import EngageConst, Targeting, nb_engage_targets, nb_refresh_activation
from sim.core.frames import Agents
from sim.core.hematopoiesis import HSPC, MONOCYTE, LineageConst, anc, nb_step_hematopoiesis, normal_bm_cells
from sim.core.observe import nb_observe_agents
from sim.core.platelets import PlateletConst, nb_step_platelets, platelet_count
from sim.core.resample import nb_resample_agents
from sim.core.traffic import TrafficConst, nb_traffic_cells, traffic_rates

#: The step order, written once (see the module docstring).
STEP_PHASES = ("resample", "engage", "car_t", "blasts", "hematopoiesis", "cytokines", "traffic", "observe")

# slots of ``PatientState.scal``
# INFUSED and HELD: infusions of the schedule given and held back (holds persist, so the given are the first ones)
STEP, H_SET, INFUSED, ADJUVANT_ON, HELD = range(5)
N_SCAL = 5

# what nb_run returns
DONE, INFUSE, TRANSPLANT = 0, 1, 2

#: Columns of ``Records.comp`` (per compartment) and ``Records.glob`` (whole patient).
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
    "platelets_1e9_per_l",
    "platelets_transfused_1e9_per_l",
)


class Schedule(NamedTuple):
    """Time grid, resolution and the time-bound treatments around the product."""

    dt_h: float
    t0_day: float  # first step (start of lymphodepletion, or 0)
    record_every: int  # steps between records
    car_t_agents: int  # resolution targets
    blast_agents: int
    n_blast_classes: int
    ld_enabled: bool
    ld_start_day: float
    ld_days: float
    ld_signal_decay_days: float
    ld_blast_hazard_per_h: float  # while lymphodepletion acts
    ld_myelo_hazard_per_h: float
    adjuvant_start_day: float  # NaN: no adjuvant
    adjuvant_end_day: float
    adjuvant_fold: np.ndarray  # per antigen while the adjuvant acts
    hsct_gvl_per_h: float
    product_gvl_per_h: float  # from a product of the patient's HSCT donor, from day 0 until eliminated
    consolidation_hsct_day: float  # NaN: none
    rescue_hsct_day: float  # NaN: none
    hsct_rule_day: float  # consolidation.hsct: the transplant day of eligible patients (NaN: none)
    infusion_days: np.ndarray  # increasing, the first 0
    infusion_fractions: np.ndarray  # shares of the patient's dose
    hold_at_crs_grade: int  # later infusions are held once CRS reaches this grade (-1: never)
    dose_cells: float  # the patient's whole dose (CAR+ cells)


class Consts(NamedTuple):
    """The typed constants of one patient, one record per component."""

    sched: Schedule
    targeting: Targeting
    engage: EngageConst
    car_t: CarTConst
    blasts: BlastConst
    lineage: LineageConst
    platelets: PlateletConst
    cytokines: CytokineConst
    traffic: TrafficConst
    clinic: cc.ClinicConst


class PatientState(NamedTuple):
    """Everything that changes, as arrays (kernels update them in place)."""

    car: Agents
    bl: Agents
    my_w: np.ndarray  # cells per lineage class
    my_comp: np.ndarray
    plt: np.ndarray  # platelet chain (sim.core.platelets), platelet-equivalents
    my_a_kill: np.ndarray  # activation of each lineage class (constant densities)
    my_a_stim: np.ndarray
    bl_a_kill: np.ndarray  # activation of each blast agent (a row of ``bl.x``)
    bl_a_stim: np.ndarray
    bl_a_stale: np.ndarray  # 1: densities moved since the activation was computed (a row of ``bl.x``)
    stim: np.ndarray  # smoothed stimulation per compartment
    sigma: np.ndarray  # cytokine-level engagements per T cell per hour
    t_engaged: np.ndarray
    kills_blast: np.ndarray
    kills_myeloid: np.ndarray
    killed_myeloid: np.ndarray  # cumulative
    boost: np.ndarray  # IL-18 proliferation boost per compartment
    cyt: np.ndarray  # [compartment, IL-6 | IFN-gamma | IL-18 | macrophage activation]
    car_obs: np.ndarray  # [compartment, phenotype]
    bl_obs: np.ndarray  # [compartment, all | target-negative | iCAR-protected]
    volume_l: np.ndarray
    present: np.ndarray
    scal: np.ndarray  # STEP, H_SET, INFUSED, ADJUVANT_ON
    cs: np.ndarray  # clinical state vector (sim.core.clinic)
    inf: np.ndarray  # infection events


class Records(NamedTuple):
    """The time series, one row per record time."""

    t_day: np.ndarray
    comp: np.ndarray  # [row, compartment, TS_COMP_COLUMNS]
    stages: np.ndarray  # [row, lineage class]
    glob: np.ndarray  # [row, TS_GLOBAL_COLUMNS]
    killed: np.ndarray  # [row, lineage class], cumulative
    n: np.ndarray  # rows written


# ---------------------------------------------------------------------- time-bound signals
@njit(cache=True)
def t_day_of(k, st):
    """Time (days, infusion at 0) at the start of the current step."""
    return k.sched.t0_day + st.scal[STEP] * k.sched.dt_h / 24.0


@njit(cache=True)
def ld_window(sc, t_day):
    """Whether lymphodepleting chemotherapy acts at ``t_day``."""
    return sc.ld_enabled and sc.ld_start_day <= t_day < sc.ld_start_day + sc.ld_days


@njit(cache=True)
def ld_signal(sc, t_day):
    """Homeostatic signal L(t): 1 during and after lymphodepletion, decaying."""
    if not sc.ld_enabled or t_day < sc.ld_start_day:
        return 0.0
    end = sc.ld_start_day + sc.ld_days
    return 1.0 if t_day < end else math.exp(-(t_day - end) / sc.ld_signal_decay_days)


@njit(cache=True)
def ld_hazards(sc, t_day):
    """Lymphodepletion hazards (per hour) on (blasts, cycling myeloid cells) at ``t_day``."""
    if ld_window(sc, t_day):
        return sc.ld_blast_hazard_per_h, sc.ld_myelo_hazard_per_h
    return 0.0, 0.0


@njit(cache=True)
def blast_extra_death(sc, cs, t_day):
    """Lymphodepletion and graft-versus-leukemia hazards on blasts (per hour).

    Graft-versus-leukemia comes from a transplant in the course, or else from a donor-derived product's T cells
    once infused and until they are eliminated.
    """
    if not math.isnan(cs[cc.HSCT_DAY]):
        gvl = sc.hsct_gvl_per_h
    elif t_day >= 0.0 and math.isnan(cs[cc.ELIMINATION_DAY]):
        gvl = sc.product_gvl_per_h
    else:
        gvl = 0.0
    return ld_hazards(sc, t_day)[0] + gvl


@njit(cache=True)
def density_fold(sc, t_day):
    """Antigen density as CAR T cells see it, per antigen (an active adjuvant raises it)."""
    if sc.adjuvant_start_day <= t_day < sc.adjuvant_end_day:
        return sc.adjuvant_fold
    return np.ones_like(sc.adjuvant_fold)


# ---------------------------------------------------------------------- readings
@njit(cache=True)
def marrow_occupancy(k, st):
    """Marrow cells competing for space: blasts, lineage in marrow, background."""
    return bm_and_emd_blasts(st.bl, st.bl.n[0])[0] + normal_bm_cells(k.lineage, st.my_w)


@njit(cache=True)
def bm_blast_percent(k, st):
    """Marrow blasts (last observation) as a percentage of marrow nucleated cells."""
    blasts = st.bl_obs[BM, 0]
    return 100.0 * blasts / (blasts + normal_bm_cells(k.lineage, st.my_w))


@njit(cache=True)
def read_patient(k, st):
    """What the clinic reads off the patient (from the last observation)."""
    blood_ul = st.volume_l[PB] * 1e6
    car_t_pb = st.car_obs[PB, 0] + st.car_obs[PB, 1] + st.car_obs[PB, 2]
    return cc.Readings(
        st.cyt[PB, IL6],
        st.cyt[PB, IFNG],
        car_t_pb / blood_ul * k.engage.tissue_a_stim,
        anc(k.lineage, st.my_w),
        bm_blast_percent(k, st),
        st.bl_obs[PB, 0] / blood_ul,
        st.bl_obs[EMD, 0],
        st.bl_obs[BM, 0] + st.bl_obs[PB, 0] + st.bl_obs[EMD, 0],
        st.bl_obs[BM, 0],
        st.bl_obs[BM, 1],
        st.bl_obs[BM, 2],
        platelet_count(k.platelets, st.plt),
        ld_signal(k.sched, t_day_of(k, st)),
    )


# ---------------------------------------------------------------------- phases 0-7
@njit(cache=True)
def phase_resample(k, st, rs, rec):
    """0: keep each agent kind near its resolution."""
    sc = k.sched
    st.car.n[0] = nb_resample_agents(st.car, st.car.n[0], sc.car_t_agents, 3, rs)
    st.bl.n[0] = nb_resample_agents(st.bl, st.bl.n[0], sc.blast_agents, sc.n_blast_classes, rs)


@njit(cache=True)
def phase_engage(k, st, rs, rec):
    """1: encounters and killing."""
    t = t_day_of(k, st)
    on = 1.0 if k.sched.adjuvant_start_day <= t < k.sched.adjuvant_end_day else 0.0
    if on != st.scal[ADJUVANT_ON]:  # the adjuvant starts or stops: every activation changes
        st.bl_a_stale[:] = 1.0
        st.scal[ADJUVANT_ON] = on
    nb_refresh_activation(st.bl.x, st.bl.n[0], k.targeting, density_fold(k.sched, t), st.bl_a_kill, st.bl_a_stim, st.bl_a_stale)
    nb_engage_targets(k.sched.dt_h, k.engage, st, cc.steroid_damp(st.cs, t), rs)


@njit(cache=True)
def phase_car_t(k, st, rs, rec):
    """2: CAR T fate."""
    t = t_day_of(k, st)
    if k.cytokines.il18_boost_max > 0.0:
        nb_il18_boost(k.cytokines, st.cyt, st.boost)
    eliminated = cc.elimination_per_h(k.clinic, st.cs, t, k.sched.dt_h)
    nb_update_car_t(k.sched.dt_h, k.car_t, st, ld_signal(k.sched, t), cc.steroid_damp(st.cs, t), eliminated, rs)


@njit(cache=True)
def phase_blasts(k, st, rs, rec):
    """3: blast growth."""
    t = t_day_of(k, st)
    occupancy, extra = marrow_occupancy(k, st), blast_extra_death(k.sched, st.cs, t)
    st.bl.n[0] = nb_grow_blasts(k.sched.dt_h, k.blasts, st.bl, st.bl.n[0], occupancy, extra, rs)


@njit(cache=True)
def phase_hematopoiesis(k, st, rs, rec):
    """4: normal hematopoiesis: the myeloid lineage, then the platelets its HSPC feed."""
    t = t_day_of(k, st)
    bk = k.blasts
    ratio = space_factor(marrow_occupancy(k, st), bk.c_max, bk.crowding_exponent) / k.lineage.f0
    ld = ld_hazards(k.sched, t)[1]
    nb_step_hematopoiesis(k.sched.dt_h, k.lineage, st.my_w, ratio, st.scal[H_SET], ld, rs)
    nb_step_platelets(k.sched.dt_h, k.platelets, st.plt, st.my_w[HSPC], bm_blast_percent(k, st) / 100.0, ld, st.cyt[PB, MAC])


@njit(cache=True)
def phase_cytokines(k, st, rs, rec):
    """5: cytokine fields (read the CAR T counts of the last observation)."""
    t = t_day_of(k, st)
    mono = 0.5 + 0.5 * st.my_w[MONOCYTE] / max(k.lineage.healthy[MONOCYTE], 1.0)
    car_t_cells = np.zeros(N_COMP)
    for c in range(N_COMP):
        car_t_cells[c] = st.car_obs[c, 0] + st.car_obs[c, 1] + st.car_obs[c, 2]
    deaths = st.kills_blast.sum() + st.kills_myeloid.sum()  # this step's kills, anywhere
    damps = deaths_per_ml_h(deaths / k.sched.dt_h, st.volume_l, st.present)
    damp = cc.steroid_damp(st.cs, t)
    nb_update_cytokines(
        k.sched.dt_h, k.cytokines, st.cyt, st.sigma * st.t_engaged, car_t_cells, damps, st.volume_l, st.present, mono,
        damp,
    )  # fmt: skip


@njit(cache=True)
def phase_traffic(k, st, rs, rec):
    """6: trafficking between marrow, blood and EMD."""
    car_rates, blast_rates = traffic_rates(k.traffic, marrow_occupancy(k, st))
    st.car.n[0] = nb_traffic_cells(k.sched.dt_h, st.car, st.car.n[0], car_rates, 3, rs)
    st.bl.n[0] = nb_traffic_cells(k.sched.dt_h, st.bl, st.bl.n[0], blast_rates, k.sched.n_blast_classes, rs)


@njit(cache=True)
def observe_agents(k, st):
    """Per-compartment totals of the agent frames."""
    nb_observe_agents(st.car, st.car.n[0], st.bl, st.bl.n[0], k.targeting, st.car_obs, st.bl_obs)


@njit(cache=True)
def phase_observe(k, st, rs, rec):
    """7: observe, update the clinic, record when due."""
    t = t_day_of(k, st)
    t_end = t + k.sched.dt_h / 24.0
    observe_agents(k, st)
    cc.nb_clinic_update(k.clinic, st.cs, st.inf, read_patient(k, st), t, t_end, rs)
    if (int(st.scal[STEP]) + 1) % k.sched.record_every == 0:
        record(k, st, rec, t_end)


@njit(cache=True)
def nb_step(k, st, rs, rec):
    """One step: phases 0-7 in the order of ``STEP_PHASES``."""
    phase_resample(k, st, rs, rec)
    phase_engage(k, st, rs, rec)
    phase_car_t(k, st, rs, rec)
    phase_blasts(k, st, rs, rec)
    phase_hematopoiesis(k, st, rs, rec)
    phase_cytokines(k, st, rs, rec)
    phase_traffic(k, st, rs, rec)
    phase_observe(k, st, rs, rec)
    st.scal[STEP] += 1.0


# ---------------------------------------------------------------------- events and the loop
@njit(cache=True)
def pending_event(k, st):
    """The event due before the current step: ``INFUSE``, ``TRANSPLANT`` or ``DONE`` (none)."""
    t = t_day_of(k, st)
    sc = k.sched
    i = int(st.scal[INFUSED] + st.scal[HELD])
    if i < sc.infusion_days.shape[0] and t >= sc.infusion_days[i] - cc.DAY_EPS:
        return INFUSE
    if math.isnan(st.cs[cc.HSCT_DAY]):
        if t >= sc.consolidation_hsct_day and cc.in_remission(k.clinic, read_patient(k, st)):
            return TRANSPLANT
        if t >= sc.rescue_hsct_day:
            return TRANSPLANT
        if t >= sc.hsct_rule_day and st.cs[cc.HSCT_ELIGIBLE] == 1.0:
            return TRANSPLANT
    return DONE


def take_next_infusion(k, st) -> float:
    """Give or hold the next infusion of the schedule; return its cells (0 when held).

    Later infusions are held for good once CRS reaches the hold grade, and once the CAR T cells
    were eliminated. Shares are rounded on the running total, so the infusions add up to the dose.
    """
    sc = k.sched
    i = int(st.scal[INFUSED] + st.scal[HELD])
    crs_hold = 0 <= sc.hold_at_crs_grade <= st.cs[cc.CRS_NOW]
    if i > 0 and (st.scal[HELD] > 0.0 or crs_hold or not math.isnan(st.cs[cc.ELIMINATION_DAY])):
        st.scal[HELD] += 1.0
        return 0.0
    st.scal[INFUSED] += 1.0
    cum = np.concatenate((np.zeros(1), np.cumsum(sc.infusion_fractions)))
    return float(np.round(sc.dose_cells * cum[i + 1]) - np.round(sc.dose_cells * cum[i]))


@njit(cache=True, nogil=True)
def nb_run(k, st, rs, rec, stop_step):
    """Step until ``stop_step``, death, or an event Python must apply (returned; see ``pending_event``)."""
    while st.scal[STEP] < stop_step and math.isnan(st.cs[cc.DEATH_DAY]):
        event = pending_event(k, st)
        if event != DONE:
            return event
        nb_step(k, st, rs, rec)
    return DONE


# ---------------------------------------------------------------------- recording
@njit(cache=True)
def record(k, st, rec, t_day):
    """Store the current state as the row of time ``t_day``."""
    i = rec.n[0]
    rec.t_day[i] = t_day
    for c in range(N_COMP):
        rec.comp[i, c, 0] = st.bl_obs[c, 0]
        rec.comp[i, c, 1] = st.bl_obs[c, 1]
        rec.comp[i, c, 9] = st.bl_obs[c, 2]
        for ph in range(3):
            rec.comp[i, c, 2 + ph] = st.car_obs[c, ph]
        rec.comp[i, c, 5] = st.cyt[c, IL6]
        rec.comp[i, c, 6] = st.cyt[c, IFNG]
        rec.comp[i, c, 7] = st.cyt[c, IL18]
        rec.comp[i, c, 8] = st.cyt[c, MAC]
    for s in range(st.my_w.shape[0]):
        rec.stages[i, s] = st.my_w[s]
        rec.killed[i, s] = st.killed_myeloid[s]
    cs = st.cs
    g = rec.glob[i]
    g[0] = anc(k.lineage, st.my_w)
    g[1] = st.bl_obs[BM, 0] + normal_bm_cells(k.lineage, st.my_w)
    g[2] = bm_blast_percent(k, st)
    g[3] = cs[cc.INFLAMMATION]
    g[4] = cs[cc.NEURO]
    g[5] = cs[cc.CRS_NOW]
    g[6] = cs[cc.ICANS_NOW]
    g[7] = 1.0 if t_day < cs[cc.TOCI_UNTIL] else 0.0
    g[8] = 1.0 if cc.steroids_active(cs, t_day) else 0.0
    g[9] = platelet_count(k.platelets, st.plt)
    g[10] = cs[cc.PLT_TRANSFUSED]
    rec.n[0] = i + 1


def new_records(n_rows: int, n_stages: int) -> Records:
    """Preallocated time series of ``n_rows`` rows."""
    return Records(
        np.zeros(n_rows),
        np.zeros((n_rows, N_COMP, len(TS_COMP_COLUMNS))),
        np.zeros((n_rows, n_stages)),
        np.zeros((n_rows, len(TS_GLOBAL_COLUMNS))),
        np.zeros((n_rows, n_stages)),
        np.zeros(1, np.int64),
    )
