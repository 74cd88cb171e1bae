"""Virtual trial arms: N virtual patients on a local process pool.

Patient ``i`` is drawn from the scenario's population with its own named streams, so a
cohort's rows do not depend on how many workers ran it. Work is split into chunks; each
finished chunk is written atomically under ``DIR/chunks/`` so an interrupted cohort
resumes where it stopped, and the final tables are assembled from the chunks.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from sim import outcomes
from sim.parallel import run_tasks
from sim.scenario import Scenario
from sim.workflows.survival import median_summary

#: Daily trajectories kept per patient for cohort figures.
TRAJECTORIES = ("car_t_blood_per_ul", "blasts_total", "anc_1e9_per_l", "il6_pg_per_ml")


def flatten_summary(summary: dict) -> dict:
    """One table row from a patient summary (nested dicts prefixed, event lists dropped)."""
    row = {}
    for k, v in summary.items():
        if k == "patient":
            row.update({f"patient_{pk}": pv for pk, pv in v.items()})
        elif k == "myeloid_killed":
            row.update({f"killed_{sk}": sv for sk, sv in v.items()})
        elif not isinstance(v, (list, dict)):
            row[k] = v
    return row


def daily_trajectories(result, horizon_days: float, blood_l: float) -> np.ndarray:
    """CAR T per uL blood, total blasts, ANC and blood IL-6 on days 0..horizon (NaN after death)."""
    r = result.recorder.series()
    t = r.t_days
    days = np.arange(0, int(horizon_days) + 1)
    series = [r.car_t_pb_cells / (blood_l * 1e6), r.blasts_total, r.anc, r.il6_pb]
    out = np.full((len(TRAJECTORIES), len(days)), np.nan)
    idx = np.searchsorted(t, days - 1e-9)
    ok = idx < len(t)
    for k, y in enumerate(series):
        out[k, ok] = y[idx[ok]]
    return out


def trajectories_long(result):
    """The daily trajectories as a long table: one row per patient and day, one column per series."""
    import pandas as pd

    traj = result.trajectories
    n, _, n_days = traj.shape
    table = {"patient_index": np.repeat(result.patients.patient_index.to_numpy(), n_days), "day": np.tile(np.arange(n_days), n)}
    if "posterior_draw" in result.patients:  # patient i of each replicate cohort is a different patient
        table = {"posterior_draw": np.repeat(result.patients.posterior_draw.to_numpy(), n_days), **table}
    for k, name in enumerate(TRAJECTORIES):
        table[name] = traj[:, k, :].reshape(-1)
    return pd.DataFrame(table)


def run_chunk(scenario_json: str, indices: list[int]) -> tuple[list[dict], np.ndarray]:
    """Simulate patients ``indices`` (a worker's unit of work)."""
    from sim.model import Simulation

    sc = Scenario.model_validate_json(scenario_json)
    rows, trajs = [], []
    for i in indices:
        sim = Simulation(sc, patient_index=i)
        result = sim.run()
        rows.append(flatten_summary(result.summary))
        trajs.append(daily_trajectories(result, sc.horizon_days, sim.volume_l[1]))
    return rows, np.array(trajs)


def wilson(k: int, n: int) -> dict:
    """Rate with its Wilson 95% interval."""
    if n == 0:
        return {"count": 0, "n": 0, "rate": None, "ci95": [None, None]}
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=0.95, method="wilson")
    return {"count": int(k), "n": int(n), "rate": k / n, "ci95": [float(ci.low), float(ci.high)]}


#: Binary outcomes of a cohort summary (name -> rule) and continuous ones, from the registry.
OUTCOMES = outcomes.rules()
CONTINUOUS = tuple(outcomes.CONTINUOUS)


def summarize_cohort(sc: Scenario, patients: pd.DataFrame) -> dict:
    """Rates with Wilson intervals, grade distributions and medians of a cohort."""
    n = len(patients)
    out = {"scenario": sc.name, "seed": sc.seed, "n_patients": n, "horizon_days": sc.horizon_days}
    out["rates"] = {name: wilson(int(rule(patients).sum()), n) for name, rule in OUTCOMES.items()}
    for col in ("response_day28", "crs_grade", "icans_grade", "neutropenia_grade"):
        counts = patients[col].value_counts().sort_index()
        out[f"{col}_distribution"] = {str(k): wilson(int(v), n) for k, v in counts.items()}
    out["survival"] = median_summary(patients)
    out["medians"] = {
        c: {
            "median": float(patients[c].median()),
            "q10": float(patients[c].quantile(0.1)),
            "q90": float(patients[c].quantile(0.9)),
        }
        for c in CONTINUOUS
    }
    return out


def spec_hash(sc: Scenario, n: int) -> str:
    """Identity of a cohort run (scenario content and size) for resuming."""
    from sim.io import content_hash

    return content_hash({"scenario": sc.model_dump(mode="json"), "n": n})


@dataclass
class CohortResult:
    """Patients table, daily trajectories (patients x series x days) and the summary."""

    patients: pd.DataFrame
    trajectories: np.ndarray
    summary: dict


def chunk_indices(n: int, workers: int) -> list[list[int]]:
    """Split 0..n-1 into contiguous chunks: about 4 per worker, at most 50 patients each."""
    size = max(1, min(50, -(-n // max(4 * workers, 1))))
    return [list(range(a, min(a + size, n))) for a in range(0, n, size)]


def run_cohort(
    sc: Scenario,
    n: int,
    workers: int = 1,
    chunk_dir: Path | None = None,
    progress: Callable[[int], None] | None = None,
    scheduler: str | None = None,
) -> CohortResult:
    """Simulate ``n`` virtual patients of ``sc``.

    Args:
        sc: The scenario (one arm).
        n: Number of virtual patients (indices 0..n-1).
        workers: Worker processes (1 runs in this process).
        chunk_dir: Where finished chunks are kept (resume); ``None`` keeps nothing.
        progress: Called with the number of patients finished so far.
        scheduler: A Dask scheduler address; the chunks then run on that cluster.

    Returns:
        The cohort, identical for any ``workers``.
    """
    from sim.io import atomic_path

    chunks = chunk_indices(n, workers)
    done: dict[int, tuple[list[dict], np.ndarray]] = {}
    if chunk_dir is not None:
        chunk_dir.mkdir(parents=True, exist_ok=True)
        for k in range(len(chunks)):
            f = chunk_dir / f"chunk_{k:05d}.npz"
            if f.exists():
                with np.load(f, allow_pickle=False) as z:
                    done[k] = (json.loads(str(z["rows"])), z["traj"])
    finished = sum(len(chunks[k]) for k in done)
    if progress:
        progress(finished)

    def keep(k: int, res: tuple[list[dict], np.ndarray]) -> None:
        nonlocal finished
        done[k] = res
        if chunk_dir is not None:
            with atomic_path(chunk_dir / f"chunk_{k:05d}.npz") as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, rows=json.dumps(res[0], default=_py), traj=res[1])
        finished += len(chunks[k])
        if progress:
            progress(finished)

    payload = sc.model_dump_json()
    todo = {k: (payload, chunks[k]) for k in range(len(chunks)) if k not in done}
    run_tasks(run_chunk, todo, workers, scheduler, keep)
    rows = [r for k in range(len(chunks)) for r in done[k][0]]
    traj = np.concatenate([done[k][1] for k in range(len(chunks))])
    patients = patients_frame(rows)
    return CohortResult(patients, traj, summarize_cohort(sc, patients))


def run_posterior_cohort(
    sc: Scenario,
    draws: list[dict[str, float]],
    n: int,
    workers: int = 1,
    chunk_dir: Path | None = None,
    progress: Callable[[int], None] | None = None,
    scheduler: str | None = None,
) -> CohortResult:
    """``n`` patients split into one replicate cohort per posterior draw (``sim.workflows.posterior.parameter_draws``).

    Replicate r runs ``n // len(draws)`` patients on root seed + r under draw r (a scenario's own
    ``params`` still win); the patients table gains ``posterior_draw``, and the summary a
    ``posterior_predictive`` block: the spread of the replicate cohorts' rates, which carries the
    parameters' uncertainty as well as the cohort size.
    """
    from sim.scenario import with_param_set

    per = max(n // len(draws), 1)
    parts = []
    for r, draw in enumerate(draws):
        arm = with_param_set(sc.model_copy(update={"seed": sc.seed + r}), draw)
        cb = (lambda k, base=r * per: progress(base + k)) if progress else None
        parts.append(run_cohort(arm, per, workers, None if chunk_dir is None else chunk_dir / f"draw_{r:04d}", cb, scheduler))
    patients = pd.concat([p.patients.assign(posterior_draw=r) for r, p in enumerate(parts)], ignore_index=True)
    summary = summarize_cohort(sc, patients)
    summary["posterior_predictive"] = posterior_predictive([p.patients for p in parts])
    return CohortResult(patients, np.concatenate([p.trajectories for p in parts]), summary)


def posterior_predictive(replicates: list[pd.DataFrame]) -> dict:
    """Per binary outcome: median and central 95% range of the replicate cohorts' rates."""
    out = {"replicates": len(replicates), "patients_per_replicate": len(replicates[0]), "rates": {}}
    for name, rule in OUTCOMES.items():
        rates = [float(rule(p).mean()) for p in replicates]
        lo, mid, hi = np.quantile(rates, [0.025, 0.5, 0.975])
        out["rates"][name] = {"median": float(mid), "interval95": [float(lo), float(hi)]}
    return out


def patients_frame(rows: list[dict]) -> pd.DataFrame:
    """The patients table with stable dtypes: optional numbers (None when absent) become float NaN."""
    df = pd.DataFrame(rows)
    for col in df.columns:
        if df[col].dtype == object and all(v is None or isinstance(v, (int, float)) for v in df[col]):
            df[col] = df[col].astype(float)
    return df


def _py(o):
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(type(o).__name__)


def default_workers() -> int:
    """Worker count: the CPUs this process may use."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
