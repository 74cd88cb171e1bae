"""Benchmarks of the cart-sim core, each a ratio or rate measured in this run.

Usage: ``python -m benchmarks [--quick] [--scenario PATH] [--patients N]``. Prints a table
and writes ``benchmarks/out/*.json``:

* ``patient.json``: a 28-day patient at the default resolution after compilation (median
  over 20 patients, one core), agent-updates per second;
* ``cohort.json``: cohort throughput with 1 and 2 workers and the parallel efficiency
  t1 / (2 t2) on the same patients; ``cohort_1000.json``: a 1000-patient cohort on 2 workers;
* ``memory.json``: peak resident memory of one patient (separate process) across doses
  and leukemic burdens at a fixed resolution;
* ``startup.json``: wall time of ``cart-sim run`` with a warm numba cache and a cold one,
  and of ``cart-sim --help``;
* ``reference.json``: the core against the pure-Mesa reference (``sim.verify.reference``), the
  same scenario and the same cells (core at weight 1), both on one core, several sizes;
* ``scaling.json``: time per step against the resolution (agents per kind);
* ``sweep.json``: a sweep on a local 2-worker Dask cluster against the local 2-thread
  pool, the same points (scheduling overhead).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sim.model import Simulation
from sim.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]


def time_patient(scenario_path: Path, n_patients: int) -> dict:
    """Median wall time of one 28-day patient (compiled, one core) over ``n_patients`` patients.

    Agent-steps are counted on a separate run of the same patient stepped from Python (the
    same seed gives the same trajectory), so counting costs the timed run nothing.
    """
    sc = load_scenario(scenario_path)
    Simulation(sc).run()  # compile / load the numba cache
    times = []
    for i in range(n_patients):
        tic = time.perf_counter()
        Simulation(sc, patient_index=i).run()
        times.append(time.perf_counter() - tic)
    counter = Simulation(sc)
    agent_steps = 0
    while counter.step_index < counter.n_steps and counter.clinic.state.death_day is None:
        agent_steps += counter.car_t.n + counter.blasts.n + counter.myeloid.n
        counter.step()
    tic = time.perf_counter()
    Simulation(sc).run()
    first = time.perf_counter() - tic
    days = sc.horizon_days - (sc.lymphodepletion.start_day if sc.lymphodepletion.enabled else 0.0)  # incl. days before infusion
    return {
        "scenario": sc.name,
        "horizon_days": sc.horizon_days,
        "dt_hours": sc.dt_hours,
        "resolution": sc.resolution.model_dump(),
        "patients": n_patients,
        "patient_28d_s": float(np.median(times)) * 28.0 / days,  # as on 0.1: 28 of the simulated days
        "run_s_median": float(np.median(times)),
        "run_s_range": [min(times), max(times)],
        "agent_steps": agent_steps,
        "agent_updates_per_s": agent_steps / first,
        "simulated_days": days,
    }


def cohort_efficiency(scenario_path: Path, n: int) -> dict:
    from sim.workflows.cohort import run_cohort

    sc = load_scenario(scenario_path)
    run_cohort(sc, 2, 2)  # compile / load the numba cache
    times = {}
    for workers in (1, 2):
        tic = time.perf_counter()
        run_cohort(sc, n, workers)
        times[workers] = time.perf_counter() - tic
    return {
        "n_patients": n,
        "seconds_1_worker": times[1],
        "seconds_2_workers": times[2],
        "patients_per_s_1": n / times[1],
        "patients_per_s_2": n / times[2],
        "cohort_parallel_efficiency": times[1] / (2 * times[2]),
    }


MEM_SNIPPET = (
    "import resource, sys; from sim.scenario import load_scenario; from sim.model import Simulation; "
    "sim = Simulation(load_scenario(sys.argv[1], sys.argv[2:])); burden = sim.blasts.total(); sim.run(); "
    "print(burden, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
)


def peak_memory(scenario_path: Path) -> dict:
    """Peak RSS of one 28-day patient (own process) over doses 1e4-1e9/kg and burdens ~1e8-1e12 blasts."""
    rows = []
    for dose in (1e4, 1e6, 1e9):
        for frac in (0.00015, 0.01, 0.9):
            sets = [f"product.dose_cells_per_kg={dose}", f"patient.bm_blast_fraction={frac}", "horizon_days=28"]
            out = subprocess.run([sys.executable, "-c", MEM_SNIPPET, str(scenario_path), *sets], capture_output=True, text=True)
            burden, mem = (float(v) for v in out.stdout.split()[-2:])
            rows.append({"dose_cells_per_kg": dose, "bm_blast_fraction": frac, "blast_burden_cells": burden, "peak_mem_mb": mem})
    mems = [r["peak_mem_mb"] for r in rows]
    return {"runs": rows, "peak_mem_mb": max(mems), "peak_mem_spread_mb": max(mems) - min(mems)}


def cohort_1000(scenario_path: Path) -> dict:
    """Wall seconds of a 1000-patient, 28-day cohort on 2 workers (``cart-sim cohort`` without the files)."""
    from sim.workflows.cohort import run_cohort

    sc = load_scenario(scenario_path, ["horizon_days=28"])
    tic = time.perf_counter()
    run_cohort(sc, 1000, 2)
    return {"n_patients": 1000, "workers": 2, "cohort_1000_s": time.perf_counter() - tic}


def startup(scenario_path: Path) -> dict:
    """``cart-sim run`` end to end (a 1-day horizon) with a cold and a warm numba cache; ``cart-sim --help``."""
    cmd = [sys.executable, "-m", "sim.cli", "run", str(scenario_path), "--set", "horizon_days=1", "--out"]
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, env in (("cold_cache_s", {"NUMBA_CACHE_DIR": str(Path(tmp) / "cache")}), ("warm_cache_s", {})):
            tic = time.perf_counter()
            subprocess.run([*cmd, str(Path(tmp) / label)], env={**os.environ, **env}, capture_output=True, check=True)
            res[label] = time.perf_counter() - tic
        warm = []
        for k in range(3):
            tic = time.perf_counter()
            subprocess.run([*cmd, str(Path(tmp) / f"warm{k}")], capture_output=True, check=True)
            warm.append(time.perf_counter() - tic)
    res["cli_run_warm_s"] = min(warm)
    helps = []
    for _ in range(3):
        tic = time.perf_counter()
        subprocess.run([sys.executable, "-m", "sim.cli", "--help"], capture_output=True, check=True)
        helps.append(time.perf_counter() - tic)
    res["cli_help_s"] = min(helps)
    return res


def small_patient(scenario_path: Path, weight_kg: float, horizon_days: float):
    """The scenario scaled to ``weight_kg`` (same concentrations, few cells), core agents at weight 1.

    The resolution (1e4 per 1e-6 kg) stays above every cell count of the run, so the core
    never merges: each of its agents is one cell, as in the reference.
    """
    res = int(max(10_000, 1e10 * weight_kg))
    sets = [f"patient.weight_kg={weight_kg}", "product.dose_cells_per_kg=1e8", f"horizon_days={horizon_days}"]
    return load_scenario(scenario_path, [*sets, f"resolution.car_t_agents={res}", f"resolution.blast_agents={res}"])


def reference_speedup(scenario_path: Path, weights_kg: tuple[float, ...], horizon_days: float) -> dict:
    """Core vs pure-Mesa reference on the same patient and cells, one process each (one core).

    The step loops are timed (``run()``); set-up (allocating frames, creating Mesa agents)
    is timed apart.
    """
    from sim.verify.reference import ReferenceModel

    rows = []
    for w in weights_kg:
        sc = small_patient(scenario_path, w, horizon_days)
        Simulation(sc).run()  # compiled before timing
        tic = time.perf_counter()
        core = Simulation(sc)
        core_setup_s = time.perf_counter() - tic
        tic = time.perf_counter()
        core.run()
        core_s = time.perf_counter() - tic
        tic = time.perf_counter()
        model = ReferenceModel(sc, rng=1)
        ref_setup_s = time.perf_counter() - tic
        cells0 = len(model.agents)
        tic = time.perf_counter()
        model.run()
        ref_s = time.perf_counter() - tic
        rows.append({"weight_kg": w, "cells_at_start": cells0, "cells_at_end": len(model.agents), "core_s": core_s,
                     "reference_s": ref_s, "core_setup_s": core_setup_s, "reference_setup_s": ref_setup_s,
                     "speedup": ref_s / core_s})  # fmt: skip
    return {"horizon_days": horizon_days, "steps": core.n_steps, "sizes": rows,
            "speedup_vs_mesa_reference": rows[-1]["speedup"]}  # fmt: skip


def resolution_scaling(scenario_path: Path, resolutions: tuple[int, ...]) -> dict:
    """Seconds per step and per agent-step of a 28-day patient against the resolution."""
    rows = []
    for r in resolutions:
        sc = load_scenario(scenario_path, [f"resolution.car_t_agents={r}", f"resolution.blast_agents={r}"])
        sim = Simulation(sc)
        tic = time.perf_counter()
        sim.run()
        elapsed = time.perf_counter() - tic
        agents = sim.car_t.n + sim.blasts.n + sim.myeloid.n  # at the end of the run
        rows.append({"agents_per_kind": r, "agents_at_end": agents, "s_per_step": elapsed / sim.n_steps,
                     "us_per_agent_step": 1e6 * elapsed / sim.n_steps / max(agents, 1)})  # fmt: skip
    return {"runs": rows}


def sweep_overhead(spec: Path) -> dict:
    """The same sweep on the local 2-process pool and on a local 2-worker Dask cluster."""
    from distributed import LocalCluster

    from sim.workflows.sweep import Sweep, run_sweep

    sw = Sweep(spec)
    with tempfile.TemporaryDirectory() as tmp:
        tic = time.perf_counter()
        run_sweep(sw, Path(tmp) / "pool", workers=2)
        pool_s = time.perf_counter() - tic
        tic = time.perf_counter()
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            start_s = time.perf_counter() - tic
            tic = time.perf_counter()
            run_sweep(sw, Path(tmp) / "dask", scheduler=cluster.scheduler_address)
            dask_s = time.perf_counter() - tic
    return {"points": len(sw.points), "patients_per_point": sw.spec.n_patients, "local_pool_s": pool_s,
            "dask_s": dask_s, "dask_cluster_start_s": start_s, "dask_over_pool": dask_s / pool_s}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--scenario", type=Path, default=ROOT / "scenarios" / "cll1_standard.yaml")
    ap.add_argument("--patients", type=int, default=None, help="patients timed for patient_28d_s (default 20, quick 20)")
    args = ap.parse_args()
    res = time_patient(args.scenario, args.patients or (20 if args.quick else 50))
    res["machine"] = {"python": platform.python_version(), "processor": platform.processor() or platform.machine()}
    print(f"{'metric':<28}{'value':>14}")
    print(f"{'patient_28d_s':<28}{res['patient_28d_s']:>14.3f}  (median of {res['patients']} patients)")
    print(f"{'agent_updates_per_s':<28}{res['agent_updates_per_s']:>14.3g}")
    out = ROOT / "benchmarks" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "patient.json").write_text(json.dumps(res, indent=2) + "\n")
    coh = cohort_efficiency(args.scenario, 8 if args.quick else 40)
    mem = peak_memory(args.scenario)
    start = startup(args.scenario)
    c1000 = cohort_1000(args.scenario)
    for name, data in (("cohort", coh), ("memory", mem), ("startup", start), ("cohort_1000", c1000)):
        (out / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    print(f"{'cohort_parallel_efficiency':<28}{coh['cohort_parallel_efficiency']:>14.2f}")
    print(f"{'patients_per_s (1 / 2 wk)':<28}{coh['patients_per_s_1']:>7.2f} /{coh['patients_per_s_2']:>5.2f}")
    print(f"{'peak_mem_mb':<28}{mem['peak_mem_mb']:>14.0f}")
    print(f"{'peak_mem_spread_mb':<28}{mem['peak_mem_spread_mb']:>14.1f}  (doses 1e4-1e9/kg, blasts 0.1%-90%)")
    print(f"{'cohort_1000_s':<28}{c1000['cohort_1000_s']:>14.1f}  (1000 patients, 28 days, 2 workers)")
    print(f"{'cli_run_warm_s':<28}{start['cli_run_warm_s']:>14.2f}")
    print(f"{'cli_help_s':<28}{start['cli_help_s']:>14.2f}")
    print(f"{'cli_run_cold_cache_s':<28}{start['cold_cache_s']:>14.2f}")
    weights = (1e-7, 1e-6, 1e-5) if args.quick else (1e-7, 1e-6, 1e-5, 3e-5)
    ref = reference_speedup(args.scenario, weights, 2.0 if args.quick else 10.0)
    scal = resolution_scaling(args.scenario, (250, 500, 1000, 2000) if args.quick else (250, 500, 1000, 2000, 4000, 8000))
    swp = sweep_overhead(ROOT / "benchmarks" / "sweep_overhead.yaml")
    for name, data in (("reference", ref), ("scaling", scal), ("sweep", swp)):
        (out / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    for r in ref["sizes"]:
        print(
            f"  reference {r['cells_at_start']:>7d} cells{r['reference_s']:>9.2f} s"
            f" vs core{r['core_s']:>7.3f} s  x{r['speedup']:.0f}"
            f" (set-up {r['reference_setup_s']:.2f} vs {r['core_setup_s']:.3f} s)"
        )
    print(f"{'speedup_vs_mesa_reference':<28}{ref['speedup_vs_mesa_reference']:>14.0f}  (largest size above)")
    for r in scal["runs"]:
        print(
            f"  resolution {r['agents_per_kind']:>6d}: {1e3 * r['s_per_step']:.3f} ms/step,"
            f" {r['us_per_agent_step']:.3f} us/agent-step"
        )
    print(
        f"{'sweep_dask_over_pool':<28}{swp['dask_over_pool']:>14.2f}"
        f"  (cluster start {swp['dask_cluster_start_s']:.1f} s excluded)"
    )


if __name__ == "__main__":
    main()
