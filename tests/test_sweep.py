"""Sweeps: the same numbers on any executor, crash-safe resume, validated specs, Sobol wiring."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import yaml

from sim.workflows.sweep import Sweep, run_sweep, sobol_indices
from tests.conftest import ROOT

SMALL = ROOT / "tests" / "data" / "sweep_small.yaml"


def cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "sim.cli", *map(str, args)], capture_output=True, text=True, timeout=timeout)


def test_local_pool_and_dask_cluster_give_identical_points(tmp_path):
    from distributed import LocalCluster

    sw = Sweep(SMALL)
    one = run_sweep(sw, tmp_path / "one", workers=1)
    two = run_sweep(sw, tmp_path / "two", workers=2)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        dask = run_sweep(sw, tmp_path / "dask", scheduler=cluster.scheduler_address)
    assert len(one) == 4 and list(one.point) == [0, 1, 2, 3]
    pd.testing.assert_frame_equal(one, two, check_exact=True)
    pd.testing.assert_frame_equal(one, dask, check_exact=True)
    # the metrics differ between points (the sweep varies something that matters)
    assert one.median_car_t_peak_cells_per_ul_blood.nunique() > 1


def test_every_point_runs_the_same_virtual_patients(tmp_path):
    """Common random numbers: a point equals a cohort of the base scenario with the point's values set."""
    from sim.workflows.cohort import run_cohort

    sw = Sweep(SMALL)
    table = run_sweep(sw, tmp_path / "p", workers=1)
    cohort = run_cohort(sw.scenarios[3], 3).patients
    assert table.median_car_t_peak_cells_per_ul_blood[3] == cohort.car_t_peak_cells_per_ul_blood.median()


def sweep_cmd(out):
    return [sys.executable, "-m", "sim.cli", "sweep", str(SMALL), "--workers", "1", "--out", str(out)]


def test_sigkill_midway_then_rerun_equals_uninterrupted(tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen(sweep_cmd(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(list((out / "points").glob("point_*.json"))) < 1:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = sorted(p.name for p in (out / "points").glob("point_*.json"))
    assert 1 <= len(finished) < 4, finished  # killed midway, with finished work kept
    assert not (out / "points.parquet").exists()
    assert subprocess.run(sweep_cmd(out), capture_output=True, timeout=600).returncode == 0
    fresh = tmp_path / "fresh"
    assert subprocess.run(sweep_cmd(fresh), capture_output=True, timeout=600).returncode == 0
    resumed, clean = pd.read_parquet(out / "points.parquet"), pd.read_parquet(fresh / "points.parquet")
    assert list(resumed.point) == [0, 1, 2, 3]
    pd.testing.assert_frame_equal(resumed, clean, check_exact=True)
    assert sorted(p.name for p in out.glob("heatmap_*.png")) == sorted(p.name for p in fresh.glob("heatmap_*.png"))


def test_changed_spec_in_same_folder_is_refused(tmp_path):
    out = tmp_path / "s"
    (out / "points").mkdir(parents=True)
    (out / "points" / "spec.json").write_text('{"hash": "0000000000000000"}')
    r = cli("sweep", SMALL, "--out", out)
    assert r.returncode == 2 and "same sweep spec" in r.stderr and "Traceback" not in r.stderr


def write_spec(tmp_path, **changes):
    data = yaml.safe_load(SMALL.read_text())
    data["base"] = str(ROOT / "scenarios" / "cll1_standard.yaml")
    for key, value in changes.items():
        node = data
        *parents, last = key.split("/")
        for p in parents:
            node = node[p]
        if value is None:
            del node[last]
        else:
            node[last] = value
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("change", "key", "expected"),
    [
        (
            {"parameters/product.dose_cell_per_kg": {"values": [1e6]}},
            "parameters.product.dose_cell_per_kg",
            "'dose_cells_per_kg'",
        ),
        ({"parameters/params.icar_imax": {"values": [0.5, 1.5]}}, "parameters.params.icar_imax", "within [0, 1]"),
        ({"parameters/product.dose_cells_per_kg": {"values": [-1.0]}}, "parameters.product.dose_cells_per_kg", "> 0"),
        ({"metrics": ["cr_rate"]}, "metrics", "a metric name"),
        ({"window/iec_hs": {"max": 0.1}}, "window.iec_hs", "a metric listed under metrics"),
        ({"design": "sobol", "samples": 6}, "samples", "a power of 2"),
        ({"design": "lhs", "samples": 4}, "parameters.product.dose_cells_per_kg", "a numeric range"),
        ({"parameters/patient.antigens.CLL1.blast_median": {"range": [0, 10], "scale": "log", "n": 2}}, "", "low > 0"),
        ({"base": "nowhere.yaml"}, "base", "a scenario file"),
        ({"n_patients": None}, "n_patients", "required"),
    ],
)
def test_bad_specs_are_refused_before_any_work(tmp_path, change, key, expected):
    spec = write_spec(tmp_path, **change)
    out = tmp_path / "out"
    r = cli("sweep", spec, "--out", out, timeout=120)
    assert r.returncode == 2, r.stderr
    assert str(spec) in r.stderr and key in r.stderr and expected in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists()


def test_sobol_indices_recover_a_known_additive_function(tmp_path):
    """Wiring check: y = x1 (x2 unused) gives S1(x1) = ST(x1) = 1 and ST(x2) = 0 analytically."""
    spec = write_spec(
        tmp_path,
        design="sobol",
        samples=256,
        parameters={
            "product.dose_cells_per_kg": {"range": [1e5, 1e7], "scale": "log"},
            "params.hill_n": {"range": [1.0, 4.0]},
        },
        window={},
    )
    sw = Sweep(spec)
    assert len(sw.points) == 256 * (2 + 2)  # Saltelli without second order: N (D + 2)
    table = pd.DataFrame(sw.points)
    table["crs_grade_ge2"] = np.log10(table["product.dose_cells_per_kg"])
    for m in ("median_days_anc_below_0_5", "median_car_t_peak_cells_per_ul_blood"):
        table[m] = 0.0  # constant: no indices
    idx = sobol_indices(sw, table).set_index("parameter")
    assert set(idx.metric) == {"crs_grade_ge2"}
    # tolerance: SALib's Saltelli estimators at N = 256 are within ~0.05 of the truth here
    assert abs(idx.loc["product.dose_cells_per_kg", "S1"] - 1) < 0.05
    assert abs(idx.loc["product.dose_cells_per_kg", "ST"] - 1) < 0.05
    assert abs(idx.loc["params.hill_n", "ST"]) < 0.05
    assert idx.loc["params.hill_n", "ST_lo"] <= 0 <= idx.loc["params.hill_n", "ST_hi"] + 1e-12


def test_sweep_report_shows_the_metric_that_varies_most_on_its_own_scale():
    from sim.reports import _spread

    rare = pd.Series([0.0, 0.0, 0.05])  # CRS >= 3 in at most 2 of 40: a large relative range, a small one on 0-1
    remission = pd.Series([0.0, 0.4, 0.8])
    days = pd.Series([1.0, 13.0, 25.0])
    assert _spread("crs_grade_ge3", rare) < _spread("cr_cri_mlfs", remission)
    assert _spread("median_days_anc_below_0_5", days) == pytest.approx(24.0 / 25.0)
