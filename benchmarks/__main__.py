"""Time one 28-day patient at the default resolution and report agent-updates per second.

Usage: ``python -m benchmarks [--quick] [--scenario PATH] [--repeats N]``. Prints a table
and writes ``benchmarks/out/patient.json``. Compilation happens in a warm-up run that is
not timed; the reported time is the minimum over repeats (machines here are noisy).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from sim.model import STEP_PHASES, Simulation
from sim.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]


def time_patient(scenario_path: Path, repeats: int) -> dict:
    sc = load_scenario(scenario_path)
    Simulation(sc).run()  # compile / load the numba cache
    best, phases, agent_steps = np.inf, {}, 0
    for _ in range(repeats):
        sim = Simulation(sc)
        counts = []
        original = sim.step

        def counted_step(sim=sim, original=original, counts=counts):
            counts.append(sim.car_t.n + sim.blasts.n + sim.myeloid.n)
            original()

        sim.step = counted_step
        tic = time.perf_counter()
        sim.run()
        elapsed = time.perf_counter() - tic
        if elapsed < best:
            best, phases, agent_steps = elapsed, dict(sim.phase_seconds), int(np.sum(counts))
    return {
        "scenario": sc.name,
        "horizon_days": sc.horizon_days,
        "dt_hours": sc.dt_hours,
        "resolution": sc.resolution.model_dump(),
        "patient_28d_s": best * 28.0 / (sc.horizon_days - sc.lymphodepletion.start_day) if sc.horizon_days else best,
        "run_s": best,
        "agent_steps": agent_steps,
        "agent_updates_per_s": agent_steps / best,
        "phase_s": {k: phases[k] for k in STEP_PHASES},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--scenario", type=Path, default=ROOT / "scenarios" / "cll1_standard.yaml")
    ap.add_argument("--repeats", type=int, default=None)
    args = ap.parse_args()
    repeats = args.repeats or (3 if args.quick else 10)
    res = time_patient(args.scenario, repeats)
    res["machine"] = {"python": platform.python_version(), "processor": platform.processor() or platform.machine()}
    print(f"{'metric':<28}{'value':>14}")
    print(f"{'patient_28d_s':<28}{res['patient_28d_s']:>14.3f}")
    print(f"{'run_s (incl. day -5..0)':<28}{res['run_s']:>14.3f}")
    print(f"{'agent_updates_per_s':<28}{res['agent_updates_per_s']:>14.3g}")
    for k, v in res["phase_s"].items():
        print(f"  phase {k:<20}{v:>14.3f} s")
    out = ROOT / "benchmarks" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "patient.json").write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
