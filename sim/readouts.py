"""Clinical readouts of one patient, each from model state by a documented rule.

Rules (first versions; ``../shared/DESIGN.md`` section 5):

* **BM blast %** = marrow blasts / (marrow blasts + explicit myeloid lineage in marrow
  + background erythroid/lymphoid cells) x 100.
* **Response at day 28** (ELN 2022, platelets not modelled): CR = BM blasts < 5%, no
  circulating blasts (< ``PB_BLAST_DETECT_PER_UL``), no EMD (< ``EMD_DETECT_CELLS``) and
  ANC >= 1.0e9/L; CRi = the same with 0.5 <= ANC < 1.0 (partial recovery); MLFS = the
  same without recovery (ANC < 0.5); PR = blasts 5-25% and a fall of >= 50% from
  baseline; NR otherwise. MRD-negative: CR or CRi with BM blasts < 0.1%.
* **CRS / ICANS grade**: the highest grade of the latent inflammation / neurotoxicity
  index after infusion (thresholds in :mod:`sim.params`); onset = first day at grade >= 1.
* **IEC-HS**: after CRS onset, blood macrophage activation >= ``IEC_HS_MACROPHAGE`` for
  at least ``IEC_HS_HOURS`` while ANC < 1.0e9/L.
* **Neutropenia**: nadir, days below 0.5 and 0.1e9/L after infusion, CTCAE v5 grade of
  the nadir, first day after the nadir with ANC >= 0.5 (recovery).
"""

from __future__ import annotations

import numpy as np

from sim import __version__

PB_BLAST_DETECT_PER_UL = 1.0  # assumed: 1 blast per uL (1% of 0.1e9/L leukocytes) is detectable
EMD_DETECT_CELLS = 1e8  # assumed: ~0.1 cm^3, below imaging detection
IEC_HS_MACROPHAGE = 0.5
IEC_HS_HOURS = 48.0


def ctcae_neutropenia_grade(anc_1e9_per_l: float) -> int:
    """CTCAE v5 neutrophil count decreased grade (LLN taken as 2.0e9/L)."""
    for grade, limit in ((4, 0.5), (3, 1.0), (2, 1.5), (1, 2.0)):
        if anc_1e9_per_l < limit:
            return grade
    return 0


def response(bm_blast_percent: float, baseline_percent: float, pb_blasts_per_ul: float, emd_cells: float, anc: float) -> str:
    """ELN 2022 response category (see module docstring)."""
    clear = pb_blasts_per_ul < PB_BLAST_DETECT_PER_UL and emd_cells < EMD_DETECT_CELLS
    if bm_blast_percent < 5.0 and clear:
        if anc >= 1.0:
            return "CR"
        return "CRi" if anc >= 0.5 else "MLFS"
    if 5.0 <= bm_blast_percent <= 25.0 and bm_blast_percent <= 0.5 * baseline_percent:
        return "PR"
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
    """Counts of infections by type by day 28 and over the horizon, and the first day."""
    out = {}
    for kind in ("bacterial", "fungal", "viral"):
        days = [i.day for i in infections if i.kind == kind]
        out[f"infection_{kind}_day28"] = sum(d <= 28.0 for d in days)
        out[f"infection_{kind}_total"] = len(days)
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
    return {
        "remission_day": c.remission_day,
        "relapse": c.relapse_day is not None,
        "relapse_day": c.relapse_day,
        "relapse_target_negative": bool(
            c.relapse_target_negative_fraction is not None and c.relapse_target_negative_fraction > 0.5
        ),
        "relapse_icar_protected": bool(c.relapse_icar_protected_fraction is not None and c.relapse_icar_protected_fraction > 0.5),
        "lfs_days": float(lfs_days),
        "lfs_event": bool(lfs_event_flag),
        "os_days": float(end),
        "death": c.death_day is not None,
        "death_day": c.death_day,
        "death_cause": c.death_cause,
        "hsct_day": c.hsct_day,
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
    early_death = c.death_day is not None and c.death_day < 28.0
    resp = (
        "NR" if early_death else response(blast_pct[k28], blast_pct[k0], r.blasts_pb[k28] / blood_ul, r.blasts_emd[k28], anc[k28])
    )
    crs, icans = r.crs_grade, r.icans_grade
    crs_onset = first_day(t, post & (crs >= 1))
    iec = False
    if crs_onset is not None:
        iec = longest_run_hours(t, (t >= crs_onset) & (r.macrophage_pb >= IEC_HS_MACROPHAGE) & (anc < 1.0)) >= IEC_HS_HOURS
    anc_post = np.where(post, anc, np.inf)
    k_nadir = int(np.argmin(anc_post))
    recovery = first_day(t, (np.arange(len(t)) > k_nadir) & (anc >= 0.5)) if anc[k_nadir] < 0.5 else None
    k_peak = int(np.argmax(np.where(post, car_t_pb, -1.0)))
    horizon = sim.scenario.horizon_days
    return {
        "scenario": sim.scenario.name,
        "seed": sim.scenario.seed,
        "patient_index": sim.index,
        "replicate": sim.replicate,
        "version": __version__,
        "horizon_days": horizon,
        "dose_cells_per_kg": sim.patient.dose_cells_per_kg,
        "response_day28": resp,
        "early_death": bool(early_death),
        "mrd_negative": bool(resp in ("CR", "CRi") and blast_pct[k28] < 0.1),
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
