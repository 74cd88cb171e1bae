"""Cohorts: identical for any number of workers, resumable, with the documented summary."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd

from sim.workflows.cohort import chunk_indices, run_cohort, wilson
from tests.conftest import SCENARIOS, scenario


def small(*extra):
    return scenario("cll1_standard", "horizon_days=6", "resolution.car_t_agents=100", "resolution.blast_agents=100", *extra)


def test_cohort_identical_for_one_and_two_workers():
    sc = small()
    one = run_cohort(sc, 6, workers=1)
    two = run_cohort(sc, 6, workers=2)
    pd.testing.assert_frame_equal(one.patients, two.patients, check_exact=True)
    assert np.array_equal(one.trajectories, two.trajectories, equal_nan=True)


def test_patient_i_does_not_depend_on_cohort_size():
    sc = small()
    a = run_cohort(sc, 3, workers=1).patients
    b = run_cohort(sc, 5, workers=1).patients.iloc[:3].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_resume_skips_finished_chunks(tmp_path):
    sc = small()
    full = run_cohort(sc, 6, workers=1, chunk_dir=tmp_path / "a")
    chunks = sorted((tmp_path / "a").glob("chunk_*.npz"))
    assert len(chunks) == len(chunk_indices(6, 1))
    # a rerun with every chunk present simulates nothing and gives the same table
    calls = []
    again = run_cohort(sc, 6, workers=1, chunk_dir=tmp_path / "a", progress=calls.append)
    assert calls == [6]
    pd.testing.assert_frame_equal(full.patients, again.patients, check_exact=True)


def test_wilson_interval_matches_known_values():
    r = wilson(5, 12)
    assert abs(r["rate"] - 5 / 12) < 1e-12
    # Wilson 95% interval for 5/12 (Newcombe 1998 method 3): 0.193 - 0.680
    assert abs(r["ci95"][0] - 0.193) < 0.002 and abs(r["ci95"][1] - 0.680) < 0.002


def test_cohort_cli_writes_outputs_and_summary(tmp_path):
    out = tmp_path / "c"
    args = ["cohort", str(SCENARIOS / "cll1_standard.yaml"), "-n", "4", "--workers", "2", "--out", str(out)]
    args += ["--set", "horizon_days=5", "--set", "resolution.car_t_agents=100", "--set", "resolution.blast_agents=100"]
    r = subprocess.run([sys.executable, "-m", "sim.cli", *args], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    expected = [
        "cohort.png",
        "km.png",
        "patients.parquet",
        "spaghetti.png",
        "summary.json",
        "swimmer.png",
        "trajectories.parquet",
    ]
    assert sorted(p.name for p in out.iterdir()) == expected
    traj = pd.read_parquet(out / "trajectories.parquet")  # long: 4 patients x days 0-5
    assert len(traj) == 4 * 6 and {"patient_index", "day", "anc_1e9_per_l", "car_t_blood_per_ul"} <= set(traj.columns)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_patients"] == 4
    for endpoint in ("os", "lfs"):  # Kaplan-Meier medians with 95% intervals (lifelines)
        assert set(summary["survival"][endpoint]) == {"median_days", "ci95", "events", "n"}
    assert {"cr", "cr_cri", "mrd_negative_cr", "crs_grade_ge3", "icans_any", "iec_hs", "neutropenia_grade4"} <= set(
        summary["rates"]
    )
    patients = pd.read_parquet(out / "patients.parquet")
    assert len(patients) == 4 and list(patients.patient_index) == [0, 1, 2, 3]
    assert {"patient_weight_kg", "patient_product_fitness", "response_day28", "os_days"} <= set(patients.columns)
