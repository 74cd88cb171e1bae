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
* **Infections**: bacterial, fungal and viral events drawn each step from hazards per day
  (``sim.params``): bacterial rises as ANC falls (x fold below 1.0, 0.5, 0.1e9/L) and with
  the days spent below 0.5; fungal rises only after ``infection_fungal_onset_days`` of
  neutropenia; viral rises after ``infection_viral_onset_days`` from infusion; steroids and
  prior HSCT multiply all three. Each event is fatal with a per-type probability.
* **Remission and relapse**: remission is BM blasts < 5% with no circulating blasts and
  no EMD; relapse is BM blasts >= 5% (or EMD) after remission, recorded with the share of
  marrow blasts negative for the CAR target and protected by the iCAR.
* **Death**: CRS grade 5, a fatal infection, or a leukemic burden above
  ``lethal_blast_burden``. The simulation stops at death.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from sim import rng
from sim.core.common import BM, EMD, PB, hill
from sim.core.cytokines import IFNG, IL6
from sim.params import CRS_THRESHOLDS, ICANS_THRESHOLDS
from sim.readouts import EMD_DETECT_CELLS, PB_BLAST_DETECT_PER_UL

INFECTION_TYPES = ("bacterial", "fungal", "viral")
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
    """Latent indices, grades, interventions, infections, remission, relapse and death."""

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


class Clinic:
    """Updates a :class:`ClinicalState` from a simulation, one step at a time.

    Args:
        sim: The simulation whose state is read.
        replicate: Stochastic replicate (selects the infection stream).
    """

    def __init__(self, sim, replicate: int = 0):
        self.sim = sim
        self.p = sim.p
        suffix = f".{replicate}" if replicate else ""
        self.rng = rng.generator(sim.scenario.seed, sim.index, f"clinical.infection{suffix}")
        self.state = ClinicalState()
        # index levels of CRS grades 1-4: the fever threshold (a parameter), then hypotension and vasopressors
        self.crs_levels = (self.p["crs_fever_index"], *CRS_THRESHOLDS[:3])

    def update(self, t_day: float, t_end: float) -> None:
        """Advance the clinical state over the step [t_day, t_end)."""
        dt_h = (t_end - t_day) * 24.0
        self._grades(t_day, dt_h)
        self._interventions(t_end)
        if t_day >= 0.0:
            self._infections(t_day, dt_h)
            self._remission_and_relapse(t_end)
        self._death(t_end)

    def _grades(self, t_day: float, dt_h: float) -> None:
        s, p, cyt = self.state, self.p, self.sim.cyt
        il6 = cyt[PB, IL6] * (1.0 - p["tocilizumab_il6_block"] if s.toci_active(t_day) else 1.0)
        drive = il6 / p["il6_ref_pg_per_ml"] + cyt[PB, IFNG] / p["ifng_ref_pg_per_ml"]
        if p["vascular_leak_index_max"] > 0.0:  # capillary leak: CAR T cells engaging target-positive endothelium
            engaged_per_ul = self.sim.car_t_per_ul_blood() * self.sim.tissue_a_stim
            drive += p["vascular_leak_index_max"] * hill(engaged_per_ul, p["vascular_leak_half_car_t_per_ul"], 4.0)
        rate = 1.0 / p["inflammation_tau_h"]
        s.inflammation = drive + (s.inflammation - drive) * math.exp(-rate * dt_h)
        neuro_drive = math.sqrt(max(cyt[PB, IL6], 0.0) * max(cyt[PB, IFNG], 0.0)) / p["icans_ref_pg_per_ml"]
        s.neuro = neuro_drive + (s.neuro - neuro_drive) * math.exp(-0.5 * rate * dt_h)
        s.crs_now = int(sum(s.inflammation >= th for th in self.crs_levels))
        s.icans_now = int(sum(s.neuro >= th for th in ICANS_THRESHOLDS))
        s.crs5_hours = s.crs5_hours + dt_h if s.inflammation >= CRS_THRESHOLDS[3] else 0.0
        if s.crs5_hours >= CRS5_HOURS:
            s.crs_now = 5

    def _interventions(self, t_end: float) -> None:
        s, iv = self.state, self.sim.scenario.interventions
        if iv.tocilizumab_at_crs_grade is not None and s.crs_now >= iv.tocilizumab_at_crs_grade and not s.toci_given:
            s.toci_until, s.toci_given = t_end + TOCILIZUMAB_DAYS, True
        crs_rule = iv.steroids_at_crs_grade is not None and s.crs_now >= iv.steroids_at_crs_grade
        icans_rule = iv.steroids_at_icans_grade is not None and s.icans_now >= iv.steroids_at_icans_grade
        if crs_rule or icans_rule:
            s.steroid_until, s.steroids_given = t_end + STEROID_DAYS, True

    def hazards_per_day(self, t_day: float, anc: float) -> dict[str, float]:
        """Infection hazards per day by type at ``t_day`` (see module docstring)."""
        s, p = self.state, self.p
        fold = 1.0
        for limit, key in ((1.0, "below_1"), (0.5, "below_0_5"), (0.1, "below_0_1")):
            if anc < limit:
                fold = p[f"infection_anc_fold_{key}"]
        bacterial = p["infection_bacterial_per_day"] * fold * (1.0 + s.neutropenic_days / p["infection_duration_days"])
        late = max(0.0, s.neutropenic_days - p["infection_fungal_onset_days"]) / 10.0
        fungal = p["infection_fungal_per_day"] * (1.0 + p["infection_fungal_ramp"] * late)
        viral_ramp = min(1.0, max(0.0, t_day / p["infection_viral_onset_days"]))
        viral = p["infection_viral_per_day"] * (1.0 + 3.0 * viral_ramp)
        mult = p["infection_steroid_fold"] if s.steroids_active(t_day) else 1.0
        if self.sim.patient.prior_hsct or s.hsct_day is not None:
            mult *= p["infection_prior_hsct_fold"]
        return {"bacterial": bacterial * mult, "fungal": fungal * mult, "viral": viral * mult}

    def _infections(self, t_day: float, dt_h: float) -> None:
        s, p = self.state, self.p
        anc = self.sim.anc()
        s.neutropenic_days = s.neutropenic_days + dt_h / 24.0 if anc < 0.5 else 0.0
        for kind, h in self.hazards_per_day(t_day, anc).items():
            if self.rng.random() < -math.expm1(-h * dt_h / 24.0):
                cf = p[f"infection_fatality_{kind}"] * (3.0 if kind == "bacterial" and anc < 0.1 else 1.0)
                fatal = bool(self.rng.random() < min(cf, 1.0))
                s.infections.append(Infection(round(t_day, 4), kind, fatal))
                if fatal and s.death_day is None:
                    s.death_day, s.death_cause = t_day + dt_h / 24.0, f"infection ({kind})"

    def in_remission(self) -> bool:
        """BM blasts < 5%, no circulating blasts, no detectable EMD."""
        sim = self.sim
        pb_per_ul = sim.bl_obs[PB, 0] / (sim.volume_l[PB] * 1e6)
        return sim.bm_blast_percent() < 5.0 and pb_per_ul < PB_BLAST_DETECT_PER_UL and sim.bl_obs[EMD, 0] < EMD_DETECT_CELLS

    def _remission_and_relapse(self, t_end: float) -> None:
        s, sim = self.state, self.sim
        if s.remission_day is None:
            if self.in_remission():
                s.remission_day = t_end
            return
        relapsed = sim.bm_blast_percent() >= 5.0 or sim.bl_obs[EMD, 0] >= EMD_DETECT_CELLS
        if s.relapse_day is None and relapsed:
            s.relapse_day = t_end
            total = max(sim.bl_obs[BM, 0], 1.0)
            s.relapse_target_negative_fraction = float(sim.bl_obs[BM, 1] / total)
            s.relapse_icar_protected_fraction = float(sim.bl_obs[BM, 2] / total)

    def _death(self, t_end: float) -> None:
        s = self.state
        if s.death_day is not None:
            return
        if s.crs_now == 5:
            s.death_day, s.death_cause = t_end, "CRS"
        elif self.sim.bl_obs[:, 0].sum() >= self.p["lethal_blast_burden"]:
            s.death_day, s.death_cause = t_end, "leukemia"
