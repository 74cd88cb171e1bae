"""Clinical readouts of one patient, each from model state by a documented rule.

Rules (first versions; ``../shared/DESIGN.md`` section 5):

* **BM blast %** = marrow blasts / (marrow blasts + explicit myeloid lineage in marrow
  + background erythroid/lymphoid cells) x 100.
* **Response** (ELN 2022, Döhner 2022 Blood 140:1345), at day 28 and at monthly marrow
  assessments after it: with BM blasts < 5%, no circulating blasts (<
  ``PB_BLAST_DETECT_PER_UL``) and no EMD (< ``EMD_DETECT_CELLS``), CR = ANC >= 1.0e9/L and
  platelets >= 100e9/L; CRh = ANC >= 0.5 and platelets >= 50; CRi = one of the two CR
  counts recovered (residual neutropenia or thrombocytopenia, no ANC floor); MLFS = neither
  recovered. PR = both CR counts, blasts 5-25% and a fall of >= 50%; PD = marrow blasts up
  by > 50% (by at least 15 points below a 30% baseline) or new EMD; NR (no response,
  stable disease) otherwise. Platelet counts are the patient's own: ELN reads them
  without transfusion, and the model keeps transfused platelets apart.
* **MRD by flow**: marrow blasts among marrow nucleated cells below the scenario's
  ``outputs.mrd_sensitivity`` (1e-3 by default, the ELN 2021 MRD threshold) in a CR, CRh
  or CRi.
* **CRS / ICANS grade**: the highest grade of the latent inflammation / neurotoxicity
  index after infusion (thresholds in :mod:`sim.params`); onset = first day at grade >= 1.
* **IEC-HS**: after CRS onset, blood macrophage activation >= ``IEC_HS_MACROPHAGE`` for
  at least ``IEC_HS_HOURS`` while ANC < 1.0e9/L.
* **Neutropenia**: nadir, days below 0.5 and 0.1e9/L after infusion, CTCAE v5 grade of
  the nadir, first day after the nadir with ANC >= 0.5 (recovery).
* **Thrombocytopenia**: the patient's own platelets: nadir, CTCAE v5 grade, first day after
  a nadir below 50e9/L with a count >= 50 (recovery); transfusions given.
* **Survival**: days from infusion to death (``os_day``), to relapse or death after a
  remission (``lfs_day``; 0 without remission), both censored at the horizon.
"""

from __future__ import annotations

import numpy as np

from sim import __version__

PB_BLAST_DETECT_PER_UL = 1.0  # assumed: 1 blast per uL (1% of 0.1e9/L leukocytes) is detectable
EMD_DETECT_CELLS = 1e8  # assumed: ~0.1 cm^3, below imaging detection
IEC_HS_MACROPHAGE = 0.5
IEC_HS_HOURS = 48.0


#: ELN 2022 response categories, best first.
RESPONSES = ("CR", "CRh", "CRi", "MLFS", "PR", "NR", "PD")
#: Responses in which MRD is assessed (ELN 2022: CR, CRh or CRi without MRD).
MRD_ASSESSED = ("CR", "CRh", "CRi")
#: Days between marrow assessments after day 28.
ASSESSMENT_EVERY_DAYS = 28.0


def _ctcae_grade(value: float, limits: tuple) -> int:
    for grade, limit in limits:
        if value < limit:
            return grade
    return 0


def ctcae_neutropenia_grade(anc_1e9_per_l: float) -> int:
    """CTCAE v5 neutrophil count decreased grade (LLN taken as 2.0e9/L)."""
    return _ctcae_grade(anc_1e9_per_l, ((4, 0.5), (3, 1.0), (2, 1.5), (1, 2.0)))


def ctcae_thrombocytopenia_grade(platelets_1e9_per_l: float) -> int:
    """CTCAE v5 platelet count decreased grade (LLN taken as 150e9/L)."""
    return _ctcae_grade(platelets_1e9_per_l, ((4, 25.0), (3, 50.0), (2, 75.0), (1, 150.0)))


def response(
    bm_blast_percent: float,
    baseline_percent: float,
    pb_blasts_per_ul: float,
    emd_cells: float,
    anc: float,
    platelets: float,
    baseline_emd_cells: float = 0.0,
) -> str:
    """ELN 2022 response category (see module docstring)."""
    clear = pb_blasts_per_ul < PB_BLAST_DETECT_PER_UL and emd_cells < EMD_DETECT_CELLS
    counts = anc >= 1.0 and platelets >= 100.0
    if bm_blast_percent < 5.0 and clear:
        if counts:
            return "CR"
        if anc >= 0.5 and platelets >= 50.0:
            return "CRh"
        return "CRi" if anc >= 1.0 or platelets >= 100.0 else "MLFS"
    if counts and 5.0 <= bm_blast_percent <= 25.0 and bm_blast_percent <= 0.5 * baseline_percent:
        return "PR"
    rise = bm_blast_percent > 1.5 * baseline_percent and (baseline_percent >= 30.0 or bm_blast_percent - baseline_percent >= 15.0)
    if rise or (emd_cells >= EMD_DETECT_CELLS > baseline_emd_cells):
        return "PD"
    return "NR"


def days_below(t_days: np.ndarray, values: np.ndarray, limit: float) -> float:
    """Days with ``values < limit`` (left Riemann sum over the record grid)."""
    if len(t_days) < 2:
        return 0.0
    dt = np.diff(t_days)
    return float(np.sum(dt[values[:-1] < limit]))


def first_day(t_days: np.ndarray, mask: np.ndarray) -> float | None:
    """First time where ``mask`` holds, or ``None``."""
    idx = np.flatnonzero(mask)
    return float(t_days[idx[0]]) if idx.size else None


def longest_run_hours(t_days: np.ndarray, mask: np.ndarray) -> float:
    """Longest stretch (hours) where ``mask`` holds."""
    best = run = 0.0
    for k in range(1, len(t_days)):
        run = run + (t_days[k] - t_days[k - 1]) * 24.0 if mask[k] and mask[k - 1] else 0.0
        best = max(best, run)
    return best


def infection_summary(infections: list, horizon_day: float) -> dict:
    """Counts of infections by type by day 28 and over the horizon, and the first day (of each type and of any)."""
    out = {}
    for kind in ("bacterial", "fungal", "viral"):
        days = [i.day for i in infections if i.kind == kind]
        out[f"infection_{kind}_day28"] = sum(d <= 28.0 for d in days)
        out[f"infection_{kind}_total"] = len(days)
        out[f"infection_{kind}_first_day"] = min(days, default=None)
    first = min((i.day for i in infections), default=None)
    out["infection_any_day28"] = any(i.day <= 28.0 for i in infections)
    out["infection_first_day"] = first
    return out


def survival(c, horizon_day: float) -> dict:
    """Relapse, leukemia-free and overall survival (days from infusion; censored at the horizon)."""
    end = c.death_day if c.death_day is not None else horizon_day
    lfs_event = c.relapse_day if c.relapse_day is not None else c.death_day
    if c.remission_day is None:
        lfs_days, lfs_event_flag = 0.0, True  # never in remission: treatment failure on day 0
    else:
        lfs_days = lfs_event if lfs_event is not None else horizon_day
        lfs_event_flag = lfs_event is not None
    negative = c.relapse_target_negative_fraction
    negative_relapse = bool(negative is not None and negative > 0.5)
    return {
        "remission_day": c.remission_day,
        "relapse": c.relapse_day is not None,
        "relapse_day": c.relapse_day,
        "relapse_target_negative": negative_relapse,
        "relapse_antigen_negative": negative_relapse,  # the issue-23 name of the same reading
        "relapse_antigen_negative_fraction": negative,
        "relapse_icar_protected": bool(c.relapse_icar_protected_fraction is not None and c.relapse_icar_protected_fraction > 0.5),
        "lfs_days": float(lfs_days),
        "lfs_day": float(lfs_days),
        "lfs_event": bool(lfs_event_flag),
        "os_days": float(end),
        "os_day": float(end),
        "death": c.death_day is not None,
        "death_day": c.death_day,
        "death_cause": c.death_cause,
        "hsct_day": c.hsct_day,
        "car_t_eliminated_day": c.car_t_eliminated_day,
        "gvhd_day": c.gvhd_day,
        "gvhd_grade": c.gvhd_grade,
    }


def assessments(t: np.ndarray, horizon_day: float) -> list[int]:
    """Record rows of the marrow assessments: day 28, then every ``ASSESSMENT_EVERY_DAYS`` to the last record."""
    days = np.arange(28.0, min(horizon_day, t[-1]) + 1e-9, ASSESSMENT_EVERY_DAYS)
    return [int(np.argmin(np.abs(t - d))) for d in (days if days.size else [min(28.0, t[-1])])]


def nadir_and_recovery(t: np.ndarray, values: np.ndarray, post: np.ndarray, level: float) -> tuple[int, float | None]:
    """Row of the lowest value after infusion, and the first day after it back at ``level`` (if it fell below)."""
    k_nadir = int(np.argmin(np.where(post, values, np.inf)))
    if values[k_nadir] >= level:
        return k_nadir, None
    return k_nadir, first_day(t, (np.arange(len(t)) > k_nadir) & (values >= level))


def engraftment_days(t: np.ndarray, anc: np.ndarray, hsct_day: float | None) -> float | None:
    """Days from HSCT to ANC >= 0.5e9/L after the post-conditioning nadir (None: no HSCT, not yet, or ANC never below 0.5)."""
    if hsct_day is None:
        return None
    recovery = nadir_and_recovery(t, anc, t >= hsct_day, 0.5)[1]
    return None if recovery is None else recovery - hsct_day


def platelet_summary(t: np.ndarray, own: np.ndarray, post: np.ndarray, k0: int, k28: int, transfusions: int) -> dict:
    """The patient's own platelets after infusion: nadir, grade, recovery, transfusions."""
    k_nadir, recovery = nadir_and_recovery(t, own, post, 50.0)
    return {
        "platelets_baseline_1e9_per_l": float(own[k0]),
        "platelet_nadir_1e9_per_l": float(own[k_nadir]),
        "platelet_nadir_day": float(t[k_nadir]),
        "thrombocytopenia_grade": ctcae_thrombocytopenia_grade(float(own[k_nadir])),
        "platelet_recovery_day": recovery,
        "platelets_day28_1e9_per_l": float(own[k28]),
        "platelet_transfusions": int(transfusions),
    }


def summarize(sim) -> dict:
    """The patient summary (``summary.json``) from a finished simulation's recorded series."""
    c = sim.clinic.state
    r = sim.recorder.series()
    t = r.t_days
    post = t >= 0.0
    anc = r.anc
    blood_ul = sim.volume_l[1] * 1e6
    car_t_pb = r.car_t_pb_cells / blood_ul
    k28 = int(np.argmin(np.abs(t - min(28.0, t[-1]))))
    k0 = int(np.argmin(np.abs(t - 0.0)))
    blast_pct = r.bm_blast_percent
    horizon = sim.scenario.horizon_days

    def response_at(k: int) -> str:
        if c.death_day is not None and c.death_day <= t[k] + 1e-9:
            return "NR"  # died before the assessment
        pb = r.blasts_pb[k] / blood_ul
        return response(blast_pct[k], blast_pct[k0], pb, r.blasts_emd[k], anc[k], r.platelets[k], r.blasts_emd[k0])

    early_death = c.death_day is not None and c.death_day < 28.0
    resp = "NR" if early_death else response_at(k28)
    best = min((response_at(k) for k in assessments(t, horizon)), key=RESPONSES.index)
    best = min(resp, best, key=RESPONSES.index)
    mrd_level = float(blast_pct[k28]) / 100.0
    crs, icans = r.crs_grade, r.icans_grade
    crs_onset = first_day(t, post & (crs >= 1))
    iec = False
    if crs_onset is not None:
        iec = longest_run_hours(t, (t >= crs_onset) & (r.macrophage_pb >= IEC_HS_MACROPHAGE) & (anc < 1.0)) >= IEC_HS_HOURS
    k_nadir, recovery = nadir_and_recovery(t, anc, post, 0.5)
    k_peak = int(np.argmax(np.where(post, car_t_pb, -1.0)))
    return {
        "scenario": sim.scenario.name,
        "seed": sim.scenario.seed,
        "patient_index": sim.index,
        "replicate": sim.replicate,
        "version": __version__,
        "horizon_days": horizon,
        "dose_cells_per_kg": sim.patient.dose_cells_per_kg,
        "infusions_given": sim.infusions_given,
        "infusions_held": sim.infusions_held,
        "dose_given_cells_per_kg": sim.dose_given_cells_per_kg,
        "response_day28": resp,
        "best_response": best,
        "early_death": bool(early_death),
        "mrd_negative": bool(resp in MRD_ASSESSED and mrd_level < sim.scenario.outputs.mrd_sensitivity),
        "mrd_level_day28": mrd_level,
        "mrd_sensitivity": sim.scenario.outputs.mrd_sensitivity,
        "bm_blast_percent_baseline": float(blast_pct[k0]),
        "bm_blast_percent_day28": float(blast_pct[k28]),
        "crs_grade": int(crs[post].max(initial=0)),
        "crs_onset_day": crs_onset,
        "crs_duration_days": days_below(t[post], -crs[post], -0.5),  # days at grade >= 1
        "icans_grade": int(icans[post].max(initial=0)),
        "iec_hs": bool(iec),
        "tocilizumab_given": bool(c.toci_given),
        "steroids_given": bool(c.steroids_given),
        "anc_baseline_1e9_per_l": float(anc[k0]),
        "anc_nadir_1e9_per_l": float(anc[k_nadir]),
        "anc_nadir_day": float(t[k_nadir]),
        "neutropenia_grade": ctcae_neutropenia_grade(float(anc[k_nadir])),
        "days_anc_below_0_5": days_below(t[post], anc[post], 0.5),
        "days_anc_below_0_1": days_below(t[post], anc[post], 0.1),
        "anc_recovery_day": recovery,
        "hsct_engraftment_days": engraftment_days(t, anc, c.hsct_day),
        **platelet_summary(t, r.platelets, post, k0, k28, c.platelet_transfusions),
        "car_t_peak_cells_per_ul_blood": float(car_t_pb[k_peak]),
        "car_t_tmax_days": float(t[k_peak]),
        "il6_peak_pg_per_ml": float(r.il6_pb[post].max()) if post.any() else 0.0,
        "ifng_peak_pg_per_ml": float(r.ifng_pb[post].max()) if post.any() else 0.0,
        "blasts_total_day28": float(r.blasts_total[k28]),
        "blasts_total_baseline": float(r.blasts_total[k0]),
        "blasts_target_negative_day28": float(r.blasts_target_negative_total[k28]),
        "hspc_loss_fraction": float(max(0.0, 1.0 - r.hspc[post].min() / r.hspc[k0])) if post.any() and r.hspc[k0] > 0 else 0.0,
        "car_t_day28_cells_per_ul_blood": float(car_t_pb[k28]),
        **infection_summary(c.infections, horizon),
        **survival(c, horizon),
        "infections": [vars(i) for i in c.infections],
        "myeloid_killed": r.killed_last,
        "patient": sim.patient.flat(),
    }
