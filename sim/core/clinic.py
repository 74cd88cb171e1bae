"""Phase 7 (second half): the clinic, compiled, on a float state vector with named slots.

The rules are documented in :mod:`sim.clinical`, which also holds the Python view of the
state (:class:`~sim.clinical.ClinicalState`). ``None`` is NaN in the vector; infection
events are rows ``(day, kind, fatal)`` of a preallocated array.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from sim.core.random import S_GVHD, S_INFECTION, uniform

# slots of the clinical state vector ``cs``
(
    INFLAMMATION,
    NEURO,
    CRS_NOW,
    ICANS_NOW,
    CRS5_HOURS,
    TOCI_UNTIL,
    STEROID_UNTIL,
    TOCI_GIVEN,
    STEROIDS_GIVEN,
    NEUTROPENIC_DAYS,
    REMISSION_DAY,
    RELAPSE_DAY,
    RELAPSE_NEGATIVE,
    RELAPSE_ICAR,
    HSCT_DAY,
    DEATH_DAY,
    DEATH_CAUSE,
    N_INFECTIONS,
    PLT_TRANSFUSED,
    PLT_TRANSFUSIONS,
    ELIMINATION_DAY,
    ELIMINATION_UNTIL,
    GVHD_DAY,
    GVHD_GRADE,
    HSCT_ELIGIBLE,
) = range(25)
N_SLOTS = 25
#: Infection events kept per patient (later ones are counted but not stored).
MAX_INFECTIONS = 256

INFECTION_TYPES = ("bacterial", "fungal", "viral")
#: Death causes by code (0: alive); infection codes follow ``INFECTION_TYPES``.
DEATH_CAUSES = (
    "", "CRS", "progression", "infection (bacterial)", "infection (fungal)", "infection (viral)", "ICANS", "IEC-HS",
    "GVHD", "other",
)  # fmt: skip
CAUSE_CRS, CAUSE_PROGRESSION, CAUSE_INFECTION, CAUSE_GVHD = 1, 2, 3, 8
#: Acute GVHD counts from day 7 to day 100 after the first infusion.
GVHD_WINDOW_DAYS = (7.0, 100.0)
#: Slack when a step's end, a sum of floats, is compared with a scheduled day.
DAY_EPS = 1e-9


class ClinicConst(NamedTuple):
    """Grading thresholds, intervention rules and infection hazards of one patient."""

    il6_ref_pg_per_ml: float
    ifng_ref_pg_per_ml: float
    icans_ref_pg_per_ml: float
    inflammation_tau_h: float
    tocilizumab_il6_block: float
    vascular_leak_index_max: float
    vascular_leak_half_car_t_per_ul: float
    crs_levels: tuple  # index levels of CRS grades 1-4 (fever, hypotension, one and several vasopressors)
    crs5_index: float  # grade 5 when sustained
    crs5_hours: float
    icans_levels: tuple  # index levels of ICANS grades 1-4
    tocilizumab_grade: int  # -1: never
    steroids_crs_grade: int  # -1: never
    steroids_icans_grade: int  # -1: never
    tocilizumab_days: float
    steroid_days: float
    bacterial_per_day: float
    anc_fold_below_1: float
    anc_fold_below_0_5: float
    anc_fold_below_0_1: float
    duration_days: float
    fungal_per_day: float
    fungal_onset_days: float
    fungal_ramp: float
    viral_per_day: float
    viral_onset_days: float
    steroid_fold: float
    prior_hsct_fold: float
    prior_hsct: bool
    fatality: tuple  # per infection type
    fatality_fold_anc_below_0_1: float  # severity: bacterial and fungal infections in profound neutropenia
    ld_fold: float  # infection hazards while the lymphodepletion signal is 1
    lethal_blast_burden: float
    progression_death_per_day: float  # at a leukemic burden of one normal marrow
    marrow_cells: float  # the patient's normal marrow cellularity
    transfusion_below_1e9_per_l: float  # platelet count that triggers a transfusion (NaN: never)
    transfusion_increment_1e9_per_l: float
    transfused_clearance_per_h: float
    pb_blast_detect_per_ul: float
    emd_detect_cells: float
    elimination_crs_grade: int  # CAR T elimination (suicide switch, depleting antibody) at this CRS grade; -1: never
    elimination_icans_grade: int  # or ICANS grade; -1: never
    elimination_day: float  # or on this day (NaN: never)
    elimination_per_h: float  # hazard on every CAR T cell while the agent acts
    elimination_hours: float  # how long it acts
    gvhd_per_day: float  # acute GVHD onset hazard of the product's alloreactive T cells (0: none)
    gvhd_grade_cumulative: tuple  # P(grade <= 1..4 | GVHD)
    gvhd_grade4_fatality: float
    hsct_assess_day: float  # consolidation.hsct: when eligibility is read (NaN: no rule)
    hsct_who: int  # 0 all, 1 responders, 2 MRD-negative responders
    hsct_anc_below_1e9_per_l: float  # and only with ANC below this (inf: any ANC)
    mrd_below_fraction: float  # marrow blast fraction read as MRD-negative


class Readings(NamedTuple):
    """What the clinic reads off the patient at the end of a step."""

    il6_pg_per_ml: float  # blood
    ifng_pg_per_ml: float
    engaged_car_t_per_ul: float  # CAR T cells per uL of blood times their activation by endothelium
    anc_1e9_per_l: float
    bm_blast_percent: float
    pb_blasts_per_ul: float
    emd_blasts: float
    total_blasts: float
    bm_blasts: float
    bm_target_negative: float
    bm_icar_protected: float
    platelets_1e9_per_l: float  # the patient's own (without transfused platelets)
    ld_signal: float  # 1 during lymphodepletion, decaying after


@njit(cache=True)
def fresh_state():
    """A fresh clinical state vector (no value is None but the dates) and infection table."""
    cs = np.full(N_SLOTS, np.nan)
    for slot in (
        INFLAMMATION, NEURO, CRS_NOW, ICANS_NOW, CRS5_HOURS, TOCI_GIVEN, STEROIDS_GIVEN, NEUTROPENIC_DAYS, PLT_TRANSFUSED,
        PLT_TRANSFUSIONS,
    ):  # fmt: skip
        cs[slot] = 0.0
    cs[TOCI_UNTIL] = -np.inf
    cs[STEROID_UNTIL] = -np.inf
    cs[ELIMINATION_UNTIL] = -np.inf
    cs[DEATH_CAUSE] = 0.0
    cs[N_INFECTIONS] = 0.0
    cs[GVHD_GRADE] = 0.0
    return cs, np.zeros((MAX_INFECTIONS, 3))


@njit(cache=True)
def steroids_active(cs, t_day):
    """Whether corticosteroids act at ``t_day``."""
    return t_day < cs[STEROID_UNTIL]


@njit(cache=True)
def steroid_damp(cs, t_day):
    """Steroid damping of CAR T proliferation, killing and cytokine production."""
    return 0.5 if steroids_active(cs, t_day) else 1.0


@njit(cache=True)
def _count_at_or_above(x, levels):
    g = 0
    for lv in levels:
        if x >= lv:
            g += 1
    return g


@njit(cache=True)
def update_grades(k, cs, r, t_day, dt_h):
    """Relax the inflammation and neurotoxicity indices and read off CRS and ICANS grades."""
    il6 = r.il6_pg_per_ml * (1.0 - k.tocilizumab_il6_block if t_day < cs[TOCI_UNTIL] else 1.0)
    drive = il6 / k.il6_ref_pg_per_ml + r.ifng_pg_per_ml / k.ifng_ref_pg_per_ml
    if k.vascular_leak_index_max > 0.0:  # capillary leak: CAR T cells engaging target-positive endothelium
        x = r.engaged_car_t_per_ul / k.vascular_leak_half_car_t_per_ul
        drive += k.vascular_leak_index_max * (x**4 / (1.0 + x**4) if x > 0.0 else 0.0)
    rate = 1.0 / k.inflammation_tau_h
    cs[INFLAMMATION] = drive + (cs[INFLAMMATION] - drive) * math.exp(-rate * dt_h)
    neuro_drive = math.sqrt(max(r.il6_pg_per_ml, 0.0) * max(r.ifng_pg_per_ml, 0.0)) / k.icans_ref_pg_per_ml
    cs[NEURO] = neuro_drive + (cs[NEURO] - neuro_drive) * math.exp(-0.5 * rate * dt_h)
    cs[CRS_NOW] = _count_at_or_above(cs[INFLAMMATION], k.crs_levels)
    cs[ICANS_NOW] = _count_at_or_above(cs[NEURO], k.icans_levels)
    cs[CRS5_HOURS] = cs[CRS5_HOURS] + dt_h if cs[INFLAMMATION] >= k.crs5_index else 0.0
    if cs[CRS5_HOURS] >= k.crs5_hours:
        cs[CRS_NOW] = 5


@njit(cache=True)
def apply_interventions(k, cs, t_end):
    """Tocilizumab once at its CRS grade; corticosteroids at their CRS or ICANS grade."""
    if k.tocilizumab_grade >= 0 and cs[CRS_NOW] >= k.tocilizumab_grade and cs[TOCI_GIVEN] == 0.0:
        cs[TOCI_UNTIL] = t_end + k.tocilizumab_days
        cs[TOCI_GIVEN] = 1.0
    crs_rule = k.steroids_crs_grade >= 0 and cs[CRS_NOW] >= k.steroids_crs_grade
    icans_rule = k.steroids_icans_grade >= 0 and cs[ICANS_NOW] >= k.steroids_icans_grade
    if crs_rule or icans_rule:
        cs[STEROID_UNTIL] = t_end + k.steroid_days
        cs[STEROIDS_GIVEN] = 1.0


@njit(cache=True)
def occurs(rs, s, per_day, dt_h):
    """Whether an event of hazard ``per_day`` happens within a step of ``dt_h`` hours (one draw of stream ``s``)."""
    return uniform(rs, s) < -math.expm1(-per_day * dt_h / 24.0)


@njit(cache=True)
def trigger_elimination(k, cs, t_end):
    """Give the eliminating agent once, at its CRS or ICANS grade or on its day."""
    if not math.isnan(cs[ELIMINATION_DAY]):
        return
    by_crs = k.elimination_crs_grade >= 0 and cs[CRS_NOW] >= k.elimination_crs_grade
    by_icans = k.elimination_icans_grade >= 0 and cs[ICANS_NOW] >= k.elimination_icans_grade
    if by_crs or by_icans or t_end >= k.elimination_day - DAY_EPS:  # NaN day: False
        cs[ELIMINATION_DAY] = t_end
        cs[ELIMINATION_UNTIL] = t_end + k.elimination_hours / 24.0


@njit(cache=True)
def elimination_per_h(k, cs, t_day, dt_h):
    """Mean elimination hazard on CAR T cells over the step [t_day, t_day + dt_h): the agent's share of it."""
    if math.isnan(cs[ELIMINATION_DAY]):
        return 0.0
    overlap_h = (min(t_day + dt_h / 24.0, cs[ELIMINATION_UNTIL]) - max(t_day, cs[ELIMINATION_DAY])) * 24.0
    return k.elimination_per_h * max(overlap_h, 0.0) / dt_h


@njit(cache=True)
def transfuse_platelets(k, cs, r, dt_h):
    """Transfused platelets clear like the patient's own; a count below the threshold gets one adult dose."""
    cs[PLT_TRANSFUSED] *= math.exp(-k.transfused_clearance_per_h * dt_h)
    if r.platelets_1e9_per_l + cs[PLT_TRANSFUSED] < k.transfusion_below_1e9_per_l:
        cs[PLT_TRANSFUSED] += k.transfusion_increment_1e9_per_l
        cs[PLT_TRANSFUSIONS] += 1.0


@njit(cache=True)
def progression_hazard_per_day(k, r):
    """Death from the leukemia (marrow failure, organ infiltration) per day, in proportion to its burden."""
    return k.progression_death_per_day * r.total_blasts / k.marrow_cells


@njit(cache=True)
def fatality_probability(k, kind, anc):
    """Probability that an infection of type ``kind`` is fatal: bacterial and fungal ones are graver without neutrophils."""
    f = k.fatality[kind]
    if kind < 2 and anc < 0.1:
        f *= k.fatality_fold_anc_below_0_1
    return min(f, 1.0)


@njit(cache=True)
def infection_hazards_per_day(k, cs, t_day, anc, ld_signal):
    """Bacterial, fungal and viral hazards per day (see :mod:`sim.clinical`)."""
    fold = 1.0
    if anc < 1.0:
        fold = k.anc_fold_below_1
    if anc < 0.5:
        fold = k.anc_fold_below_0_5
    if anc < 0.1:
        fold = k.anc_fold_below_0_1
    days = cs[NEUTROPENIC_DAYS]
    bacterial = k.bacterial_per_day * fold * (1.0 + days / k.duration_days)
    fungal = k.fungal_per_day * (1.0 + k.fungal_ramp * max(0.0, days - k.fungal_onset_days) / 10.0)
    viral = k.viral_per_day * (1.0 + 3.0 * min(1.0, max(0.0, t_day / k.viral_onset_days)))
    mult = 1.0 + (k.ld_fold - 1.0) * ld_signal
    if steroids_active(cs, t_day):
        mult *= k.steroid_fold
    if k.prior_hsct or not math.isnan(cs[HSCT_DAY]):
        mult *= k.prior_hsct_fold
    return bacterial * mult, fungal * mult, viral * mult


@njit(cache=True)
def draw_infections(k, cs, inf, t_day, dt_h, r, rs):
    """Draw this step's infections; a fatal one ends the course."""
    anc = r.anc_1e9_per_l
    cs[NEUTROPENIC_DAYS] = cs[NEUTROPENIC_DAYS] + dt_h / 24.0 if anc < 0.5 else 0.0
    hazards = infection_hazards_per_day(k, cs, t_day, anc, r.ld_signal)
    for kind in range(3):
        if occurs(rs, S_INFECTION, hazards[kind], dt_h):
            fatal = uniform(rs, S_INFECTION) < fatality_probability(k, kind, anc)
            i = int(cs[N_INFECTIONS])
            if i < inf.shape[0]:
                inf[i, 0] = round(t_day * 1e4) / 1e4
                inf[i, 1] = kind
                inf[i, 2] = 1.0 if fatal else 0.0
            cs[N_INFECTIONS] = i + 1
            if fatal and math.isnan(cs[DEATH_DAY]):
                cs[DEATH_DAY] = t_day + dt_h / 24.0
                cs[DEATH_CAUSE] = CAUSE_INFECTION + kind


@njit(cache=True)
def draw_gvhd(k, cs, t_day, dt_h, rs):
    """Acute GVHD from the product's own TCRs (own stream): onset in days 7-100, a grade, death at grade IV.

    None starts once the CAR T cells were eliminated (a suicide switch is the treatment of such GVHD).
    """
    if k.gvhd_per_day <= 0.0 or not math.isnan(cs[GVHD_DAY]) or not math.isnan(cs[ELIMINATION_DAY]):
        return
    if not GVHD_WINDOW_DAYS[0] <= t_day < GVHD_WINDOW_DAYS[1]:
        return
    if not occurs(rs, S_GVHD, k.gvhd_per_day, dt_h):
        return
    cs[GVHD_DAY] = t_day
    u = uniform(rs, S_GVHD)
    grade = 1
    while grade < 4 and u >= k.gvhd_grade_cumulative[grade - 1]:
        grade += 1
    cs[GVHD_GRADE] = grade
    if grade == 4 and uniform(rs, S_GVHD) < k.gvhd_grade4_fatality and math.isnan(cs[DEATH_DAY]):
        cs[DEATH_DAY] = t_day + dt_h / 24.0
        cs[DEATH_CAUSE] = CAUSE_GVHD


@njit(cache=True)
def assess_for_hsct(k, cs, r, t_end):
    """On the assessment day, mark the patient eligible (1) or not (0) for consolidating HSCT."""
    if not math.isnan(cs[HSCT_ELIGIBLE]) or not t_end >= k.hsct_assess_day - DAY_EPS:  # NaN day: never
        return
    ok = r.anc_1e9_per_l < k.hsct_anc_below_1e9_per_l
    if k.hsct_who >= 1:
        ok = ok and in_remission(k, r)
    if k.hsct_who == 2:  # the marrow read at MRD sensitivity, whatever the counts (MLFS included)
        ok = ok and r.bm_blast_percent / 100.0 < k.mrd_below_fraction
    cs[HSCT_ELIGIBLE] = 1.0 if ok and math.isnan(cs[DEATH_DAY]) else 0.0


@njit(cache=True)
def in_remission(k, r):
    """BM blasts < 5%, no circulating blasts, no detectable EMD."""
    return r.bm_blast_percent < 5.0 and r.pb_blasts_per_ul < k.pb_blast_detect_per_ul and r.emd_blasts < k.emd_detect_cells


@njit(cache=True)
def remission_and_relapse(k, cs, r, t_end):
    """First remission; then the first relapse, with the share of marrow blasts negative or protected."""
    if math.isnan(cs[REMISSION_DAY]):
        if in_remission(k, r):
            cs[REMISSION_DAY] = t_end
        return
    relapsed = r.bm_blast_percent >= 5.0 or r.emd_blasts >= k.emd_detect_cells
    if math.isnan(cs[RELAPSE_DAY]) and relapsed:
        cs[RELAPSE_DAY] = t_end
        total = max(r.bm_blasts, 1.0)
        cs[RELAPSE_NEGATIVE] = r.bm_target_negative / total
        cs[RELAPSE_ICAR] = r.bm_icar_protected / total


@njit(cache=True)
def nb_clinic_update(k, cs, inf, r, t_day, t_end, rs):
    """Advance the clinical state over the step [t_day, t_end) from the readings ``r``."""
    dt_h = (t_end - t_day) * 24.0
    update_grades(k, cs, r, t_day, dt_h)
    apply_interventions(k, cs, t_end)
    trigger_elimination(k, cs, t_end)
    transfuse_platelets(k, cs, r, dt_h)
    if t_day >= 0.0:
        draw_infections(k, cs, inf, t_day, dt_h, r, rs)
        draw_gvhd(k, cs, t_day, dt_h, rs)
        assess_for_hsct(k, cs, r, t_end)
        remission_and_relapse(k, cs, r, t_end)
    if math.isnan(cs[DEATH_DAY]):
        if cs[CRS_NOW] == 5:
            cs[DEATH_DAY], cs[DEATH_CAUSE] = t_end, CAUSE_CRS
        elif r.total_blasts >= k.lethal_blast_burden:
            cs[DEATH_DAY], cs[DEATH_CAUSE] = t_end, CAUSE_PROGRESSION
        elif t_day >= 0.0 and occurs(rs, S_INFECTION, progression_hazard_per_day(k, r), dt_h):
            cs[DEATH_DAY], cs[DEATH_CAUSE] = t_end, CAUSE_PROGRESSION
