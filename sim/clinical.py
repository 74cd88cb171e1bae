"""The patient's clinical state, updated once per step by the observer phase.

* **CRS**: a latent inflammation index relaxes (time constant ``inflammation_tau_h``)
  toward ``IL-6 / il6_ref + IFN-gamma / ifng_ref`` in blood, IL-6 reduced by
  ``tocilizumab_il6_block`` while tocilizumab blocks its receptor, plus the capillary leak
  of CAR T cells engaging target-positive endothelium (``vascular_leak_index_max``; only
  targets with a ``tissue`` density in the atlas, CD123). Grade 1 (fever) is the index
  crossing ``crs_fever_index``; grades 2-4 crossing ``CRS_THRESHOLDS[0..2]`` (hypotension,
  one vasopressor, several); grade 5 (death) is the index above
  ``CRS_THRESHOLDS[3]`` for 12 hours.
* **ICANS**: a neurotoxicity index relaxes (twice slower) toward
  ``sqrt(IL-6 x IFN-gamma) / icans_ref``; grades 1-4 at ``ICANS_THRESHOLDS``.
* **Interventions by rule**: tocilizumab once at CRS >= its grade (blocks IL-6 signalling
  for 14 days); corticosteroids at CRS >= 3 or ICANS >= 2 for 3 days (halve CAR T
  proliferation, killing and cytokine production, not macrophage activation unless
  ``macrophage_steroid_sensitivity`` > 0; raise infection hazards).
* **Platelet transfusion**: below ``interventions.platelet_transfusion_below_1e9_per_l``
  (10e9/L: AABB 2015, Schiffer 2018 ASCO; ``null``: never) one apheresis dose is given;
  transfused platelets raise the count by ``dose x recovery / blood volume`` and clear
  like the patient's own. They are kept apart, so responses read the patient's own count.
* **Infections**: bacterial, fungal and viral events drawn each step from hazards per day
  (``sim.params``): bacterial rises as ANC falls (x fold below 1.0, 0.5, 0.1e9/L) and with
  the days spent below 0.5 (Bodey 1966); fungal rises only after
  ``infection_fungal_onset_days`` of neutropenia (Gerson 1984); viral rises after
  ``infection_viral_onset_days`` from infusion; lymphodepletion (``infection_ld_fold``,
  waning with its signal), steroids and prior HSCT multiply all three. An event is fatal
  with a per-type probability, raised for bacterial and fungal infections that meet
  profound neutropenia (ANC < 0.1e9/L): the severity of the host's state, not a flat rate.
* **Remission and relapse**: remission is BM blasts < 5% with no circulating blasts and
  no EMD; relapse is BM blasts >= 5% (or EMD) after remission, recorded with the share of
  marrow blasts negative for the CAR target and protected by the iCAR.
* **Death**: CRS grade 5, a fatal infection, a leukemic burden above
  ``lethal_blast_burden``, or progression: marrow failure and organ infiltration at a
  hazard ``progression_death_per_day x (leukemic cells / normal marrow cells)`` per day,
  calibrated so that untreated r/r AML has a median OS of about 3 months (reported 1.5-4.4).
  The simulation stops at death.

The rules run compiled (:mod:`sim.core.clinic`); this module holds their Python view.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from sim.core import clinic as cc
from sim.core.random import new_state as new_streams
from sim.core.step import read_patient
from sim.params import CRS_THRESHOLDS, ICANS_THRESHOLDS, ParamSet, infection_fatality
from sim.readouts import EMD_DETECT_CELLS, PB_BLAST_DETECT_PER_UL

INFECTION_TYPES = cc.INFECTION_TYPES
TOCILIZUMAB_DAYS = 14.0
STEROID_DAYS = 3.0
CRS5_HOURS = 12.0


@dataclass
class Infection:
    """One infection event."""

    day: float
    kind: str
    fatal: bool


@dataclass
class ClinicalState:
    """Latent indices, grades, interventions, infections, remission, relapse and death (a snapshot)."""

    inflammation: float = 0.0
    neuro: float = 0.0
    crs_now: int = 0
    icans_now: int = 0
    crs5_hours: float = 0.0
    toci_until: float = -math.inf
    steroid_until: float = -math.inf
    toci_given: bool = False
    steroids_given: bool = False
    neutropenic_days: float = 0.0  # current run of ANC < 0.5
    infections: list[Infection] = field(default_factory=list)
    remission_day: float | None = None
    relapse_day: float | None = None
    relapse_target_negative_fraction: float | None = None
    relapse_icar_protected_fraction: float | None = None
    hsct_day: float | None = None
    car_t_eliminated_day: float | None = None
    gvhd_day: float | None = None
    gvhd_grade: int = 0
    platelet_transfusions: int = 0
    platelets_transfused_1e9_per_l: float = 0.0
    death_day: float | None = None
    death_cause: str | None = None

    def steroids_active(self, t_day: float) -> bool:
        """Whether corticosteroids act at ``t_day``."""
        return t_day < self.steroid_until

    def toci_active(self, t_day: float) -> bool:
        """Whether tocilizumab blocks IL-6 signalling at ``t_day``."""
        return t_day < self.toci_until

    def record(self) -> dict:
        """The state as plain data (for the summary)."""
        out = asdict(self)
        out["infections"] = [asdict(i) for i in self.infections]
        return out

    @staticmethod
    def of(cs, inf) -> ClinicalState:
        """The snapshot of a compiled state vector ``cs`` and infection table ``inf``."""

        def opt(slot: int) -> float | None:
            return None if math.isnan(cs[slot]) else float(cs[slot])

        n = min(int(cs[cc.N_INFECTIONS]), inf.shape[0])
        return ClinicalState(
            inflammation=float(cs[cc.INFLAMMATION]),
            neuro=float(cs[cc.NEURO]),
            crs_now=int(cs[cc.CRS_NOW]),
            icans_now=int(cs[cc.ICANS_NOW]),
            crs5_hours=float(cs[cc.CRS5_HOURS]),
            toci_until=float(cs[cc.TOCI_UNTIL]),
            steroid_until=float(cs[cc.STEROID_UNTIL]),
            toci_given=bool(cs[cc.TOCI_GIVEN]),
            steroids_given=bool(cs[cc.STEROIDS_GIVEN]),
            neutropenic_days=float(cs[cc.NEUTROPENIC_DAYS]),
            infections=[Infection(float(d), INFECTION_TYPES[int(k)], bool(f)) for d, k, f in inf[:n]],
            remission_day=opt(cc.REMISSION_DAY),
            relapse_day=opt(cc.RELAPSE_DAY),
            relapse_target_negative_fraction=opt(cc.RELAPSE_NEGATIVE),
            relapse_icar_protected_fraction=opt(cc.RELAPSE_ICAR),
            hsct_day=opt(cc.HSCT_DAY),
            car_t_eliminated_day=opt(cc.ELIMINATION_DAY),
            gvhd_day=opt(cc.GVHD_DAY),
            gvhd_grade=int(cs[cc.GVHD_GRADE]),
            platelet_transfusions=int(cs[cc.PLT_TRANSFUSIONS]),
            platelets_transfused_1e9_per_l=float(cs[cc.PLT_TRANSFUSED]),
            death_day=opt(cc.DEATH_DAY),
            death_cause=cc.DEATH_CAUSES[int(cs[cc.DEATH_CAUSE])] or None,
        )


def clinic_constants(
    p: ParamSet, scenario, prior_hsct: bool, blood_l: float, marrow_cells: float, dose_cells_per_kg: float
) -> cc.ClinicConst:
    """The compiled clinic's constants from parameters ``p``, the scenario's intervention rules and the patient's body."""
    iv = scenario.interventions
    threshold = iv.platelet_transfusion_below_1e9_per_l

    def grade(g: int | None) -> int:
        return -1 if g is None else int(g)

    return cc.ClinicConst(
        il6_ref_pg_per_ml=p.il6_ref_pg_per_ml,
        ifng_ref_pg_per_ml=p.ifng_ref_pg_per_ml,
        icans_ref_pg_per_ml=p.icans_ref_pg_per_ml,
        inflammation_tau_h=p.inflammation_tau_h,
        tocilizumab_il6_block=p.tocilizumab_il6_block,
        vascular_leak_index_max=p.vascular_leak_index_max,
        vascular_leak_half_car_t_per_ul=p.vascular_leak_half_car_t_per_ul,
        crs_levels=(p.crs_fever_index, *CRS_THRESHOLDS[:3]),
        crs5_index=CRS_THRESHOLDS[3],
        crs5_hours=CRS5_HOURS,
        icans_levels=tuple(ICANS_THRESHOLDS),
        tocilizumab_grade=grade(iv.tocilizumab_at_crs_grade),
        steroids_crs_grade=grade(iv.steroids_at_crs_grade),
        steroids_icans_grade=grade(iv.steroids_at_icans_grade),
        tocilizumab_days=TOCILIZUMAB_DAYS,
        steroid_days=STEROID_DAYS,
        bacterial_per_day=p.infection_bacterial_per_day,
        anc_fold_below_1=p.infection_anc_fold_below_1,
        anc_fold_below_0_5=p.infection_anc_fold_below_0_5,
        anc_fold_below_0_1=p.infection_anc_fold_below_0_1,
        duration_days=p.infection_duration_days,
        fungal_per_day=p.infection_fungal_per_day,
        fungal_onset_days=p.infection_fungal_onset_days,
        fungal_ramp=p.infection_fungal_ramp,
        viral_per_day=p.infection_viral_per_day,
        viral_onset_days=p.infection_viral_onset_days,
        steroid_fold=p.infection_steroid_fold,
        prior_hsct_fold=p.infection_prior_hsct_fold,
        prior_hsct=bool(prior_hsct),
        fatality=infection_fatality(p),
        fatality_fold_anc_below_0_1=p.infection_fatality_fold_anc_below_0_1,
        ld_fold=p.infection_ld_fold,
        lethal_blast_burden=p.lethal_blast_burden,
        progression_death_per_day=p.progression_death_per_day,
        marrow_cells=marrow_cells,
        transfusion_below_1e9_per_l=math.nan if threshold is None else threshold,
        transfusion_increment_1e9_per_l=p.platelet_transfusion_dose_cells * p.platelet_transfusion_recovery / (blood_l * 1e9),
        transfused_clearance_per_h=1.0 / p.platelet_residence_h,
        pb_blast_detect_per_ul=PB_BLAST_DETECT_PER_UL,
        emd_detect_cells=EMD_DETECT_CELLS,
        **elimination_constants(p, iv.car_t_elimination),
        gvhd_per_day=gvhd_per_day(p, scenario.product, dose_cells_per_kg),
        gvhd_grade_cumulative=tuple(float(x) for x in np.cumsum(GVHD_GRADE_SHARES)),
        gvhd_grade4_fatality=p.gvhd_grade4_fatality,
        **hsct_rule_constants(scenario),
    )


def hsct_rule_constants(scenario) -> dict:
    """The compiled assessment of ``consolidation.hsct`` (none: never assessed)."""
    rule = scenario.consolidation.hsct
    return dict(
        hsct_assess_day=math.nan if rule is None else rule.assess_day,
        hsct_who=0 if rule is None else ("all", "responders", "mrd_negative").index(rule.who),
        hsct_anc_below_1e9_per_l=math.inf if rule is None or rule.anc_below_1e9_per_l is None else rule.anc_below_1e9_per_l,
        mrd_below_fraction=scenario.outputs.mrd_sensitivity,
    )


#: Grades I-IV of acute GVHD once it starts (assumed: after donor-derived CAR T it is mostly
#: grade I-II, e.g. 2 of 43 both <= II in Zhang C 2021 Leukemia 35:1563).
GVHD_GRADE_SHARES = (0.4, 0.4, 0.15, 0.05)


def tcr_share(p: ParamSet, product) -> float:
    """Share of the product's cells that carry a working TCR (alloreactive when the cells are not the host's)."""
    return {"intact": 1.0, "knocked_out": p.gvhd_tcr_knocked_out_share, "retained_er": p.gvhd_tcr_retained_er_share}[product.tcr]


def gvhd_per_day(p: ParamSet, product, dose_cells_per_kg: float) -> float:
    """Acute GVHD hazard of the product: its TCR-bearing share, whose cells they are, and the dose."""
    if product.source == "autologous":
        return 0.0
    fold = p.gvhd_third_party_fold if product.source == "third_party" else 1.0
    return p.gvhd_per_day_at_1e6_per_kg * tcr_share(p, product) * fold * dose_cells_per_kg / 1e6


def donor_product_gvl_per_h(p: ParamSet, product, dose_cells_per_kg: float) -> float:
    """Graft-versus-leukemia hazard on blasts from a product of the patient's HSCT donor, as a lymphocyte infusion.

    Only the HSCT donor's cells count: the host (the donor's graft) tolerates and keeps them, while a third party's
    are rejected within days (``allo_rejection_per_h``) and autologous cells are not alloreactive.
    """
    if product.source != "hsct_donor":
        return 0.0
    return p.donor_product_gvl_per_h_at_1e6_per_kg * tcr_share(p, product) * dose_cells_per_kg / 1e6


def hla_rejection_fold(p: ParamSet, product) -> float:
    """Host rejection of a third party's cells relative to ``hla_mismatches_third_party`` mismatched alleles.

    Linear in mismatched alleles plus one for minor histocompatibility antigens (assumed form; graft failure
    rises with HLA mismatch, Horan 2012 Blood 120:2918: odds 2.8 at 7/8 against 8/8). Not rejected otherwise.
    """
    if product.source != "third_party":
        return 0.0
    m = p.hla_mismatches_third_party if product.hla_mismatches is None else product.hla_mismatches
    return (1.0 + m) / (1.0 + p.hla_mismatches_third_party)


def elimination_constants(p: ParamSet, rule) -> dict:
    """The trigger and the kinetics of a CAR T elimination rule (``None``: never)."""
    if rule is None:
        return dict(elimination_crs_grade=-1, elimination_icans_grade=-1, elimination_day=math.nan,
                    elimination_per_h=0.0, elimination_hours=1.0)  # fmt: skip
    switch = rule.agent == "icasp9_dimerizer"
    fraction = rule.fraction if rule.fraction is not None else (
        p.icasp9_eliminated_fraction if switch else p.antibody_eliminated_fraction
    )  # fmt: skip
    hours = rule.hours if rule.hours is not None else (p.icasp9_elimination_h if switch else p.antibody_elimination_h)
    return dict(
        elimination_crs_grade=-1 if rule.at_crs_grade is None else rule.at_crs_grade,
        elimination_icans_grade=-1 if rule.at_icans_grade is None else rule.at_icans_grade,
        elimination_day=math.nan if rule.on_day is None else rule.on_day,
        elimination_per_h=-math.log1p(-fraction) / hours,
        elimination_hours=hours,
    )


class Clinic:
    """The clinical state of a simulation and its update, one step at a time.

    Args:
        sim: The simulation whose state is read (or anything with ``p``, ``scenario``, ``index``,
            ``patient`` when readings are given to :meth:`update`).
        replicate: Stochastic replicate (selects the infection stream).
        rs: The patient's random stream state (default: a fresh one for ``sim``'s patient).
    """

    def __init__(self, sim, replicate: int = 0, rs=None):
        self.sim = sim
        self.p = sim.p
        suffix = f".{replicate}" if replicate else ""
        self.rs = rs if rs is not None else new_streams(sim.scenario.seed, sim.index, suffix)
        pt = sim.patient
        self.k = clinic_constants(sim.p, sim.scenario, pt.prior_hsct, sim.volume_l[1], sim.c_norm, pt.dose_cells_per_kg)
        self.cs, self.inf = cc.fresh_state()

    @property
    def state(self) -> ClinicalState:
        """A snapshot of the clinical state."""
        return ClinicalState.of(self.cs, self.inf)

    def readings(self) -> cc.Readings:
        """What the clinic reads off the simulation now."""
        return read_patient(self.sim.k, self.sim.st)

    def update(self, t_day: float, t_end: float, readings: cc.Readings | None = None) -> None:
        """Advance the clinical state over the step [t_day, t_end) (from ``readings``, default the simulation's)."""
        r = self.readings() if readings is None else readings
        cc.nb_clinic_update(self.k, self.cs, self.inf, r, t_day, t_end, self.rs)

    def hazards_per_day(self, t_day: float, anc: float, ld_signal: float = 0.0) -> dict[str, float]:
        """Infection hazards per day by type at ``t_day`` (``ld_signal``: the lymphodepletion signal, 0-1)."""
        hazards = cc.infection_hazards_per_day(self.k, self.cs, t_day, anc, ld_signal)
        return dict(zip(INFECTION_TYPES, hazards, strict=True))
