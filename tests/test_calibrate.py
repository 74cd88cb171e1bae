"""Calibration: a known parameter is recovered, a killed fit resumes, workers do not matter."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from sim.workflows.calibrate import load_param_set, run_calibration
from tests.conftest import ROOT

TINY = ROOT / "tests" / "data" / "calibration_tiny.yaml"
MICRO = ROOT / "tests" / "data" / "calibration_micro.yaml"


def generations_stored(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db) as con:
            row = con.execute("SELECT COUNT(*) FROM populations WHERE t >= 0").fetchone()
        return int(row[0])
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_quick_fit_recovers_known_parameter_and_resumes_after_sigkill(tmp_path):
    """Synthetic data at car_t_max_division_per_h = 0.06 (prior 0.03-0.15).

    Tolerance: the posterior median within 0.01 of the truth (8% of the prior width; the
    3-patient statistics move by ~100 cells/uL per 0.01) and the truth inside the 95%
    credible interval.
    """
    out = tmp_path / "fit"
    cmd = [sys.executable, "-m", "sim.cli", "calibrate", str(TINY), "--workers", "2", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and generations_stored(out / "abc.db") < 1 and proc.poll() is None:
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert generations_stored(out / "abc.db") == 1  # killed after the first generation was checkpointed
    with sqlite3.connect(out / "abc.db") as con:
        first = con.execute("SELECT epsilon, nr_samples FROM populations WHERE t = 0").fetchall()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    assert "resuming tiny: 1 of 3 generations" in r.stderr
    with sqlite3.connect(out / "abc.db") as con:
        assert con.execute("SELECT epsilon, nr_samples FROM populations WHERE t = 0").fetchall() == first
    assert generations_stored(out / "abc.db") == 3
    record = yaml.safe_load((out / "calibrated.yaml").read_text())["provenance"]
    post = record["posterior"]["car_t_max_division_per_h"]
    assert abs(post["median"] - 0.06) < 0.01, post
    assert post["ci95"][0] <= 0.06 <= post["ci95"][1], post
    assert len(record["acceptance_thresholds"]) == 3 and record["seed"] == 3
    assert (out / "corner.png").stat().st_size > 0
    assert load_param_set(str(out / "calibrated.yaml")) == {"car_t_max_division_per_h": post["median"]}


def test_posterior_does_not_depend_on_the_number_of_workers(tmp_path):
    run_calibration(MICRO, tmp_path / "one", workers=1, log=lambda s: None)
    run_calibration(MICRO, tmp_path / "two", workers=2, log=lambda s: None)
    a, b = pd.read_parquet(tmp_path / "one" / "posterior.parquet"), pd.read_parquet(tmp_path / "two" / "posterior.parquet")
    assert len(a) == 6 and a.car_t_max_division_per_h.nunique() > 1
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_params_option_loads_a_parameter_set_under_scenario_params(tmp_path):
    f = tmp_path / "set.yaml"
    f.write_text(yaml.safe_dump({"params": {"hill_n": 3.0, "icar_imax": 0.5}}))
    out = tmp_path / "run"
    args = ["run", ROOT / "scenarios" / "cll1_standard.yaml", "--params", f, "--dry-run", "--out", out]
    r = subprocess.run([sys.executable, "-m", "sim.cli", *map(str, args)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert '"hill_n": 3.0' in r.stdout and '"icar_imax": 0.5' in r.stdout


@pytest.mark.parametrize(
    ("content", "key", "expected"),
    [
        ({"params": {"hill_nn": 3.0}}, "params.hill_nn", "a parameter name"),
        ({"params": {"icar_imax": 1.5}}, "params.icar_imax", "within"),
        ({"other": 1}, "params", "a mapping"),
        ({"params": {"hill_n": True}}, "params.hill_n", "a number"),
    ],
)
def test_bad_parameter_sets_are_refused(tmp_path, content, key, expected):
    f = tmp_path / "set.yaml"
    f.write_text(yaml.safe_dump(content))
    args = ["run", ROOT / "scenarios" / "cll1_standard.yaml", "--params", f, "--out", tmp_path / "o"]
    r = subprocess.run([sys.executable, "-m", "sim.cli", *map(str, args)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and str(f) in r.stderr and key in r.stderr and expected in r.stderr, r.stderr
    assert not (tmp_path / "o").exists()


def test_missing_parameter_set_is_a_user_error(tmp_path):
    args = ["run", ROOT / "scenarios" / "cll1_standard.yaml", "--params", "nonexistent", "--out", tmp_path / "o"]
    r = subprocess.run([sys.executable, "-m", "sim.cli", *map(str, args)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--params" in r.stderr and "Traceback" not in r.stderr


def test_calibration_spec_errors_name_the_file_and_key(tmp_path):
    spec = yaml.safe_load(MICRO.read_text())
    spec["scenario"] = str(ROOT / "scenarios" / "cll1_standard.yaml")
    spec["parameters"] = {"car_t_max_division_per_h": {"range": [0.5, 0.1]}}
    f = tmp_path / "spec.yaml"
    f.write_text(yaml.safe_dump(spec))
    r = subprocess.run(
        [sys.executable, "-m", "sim.cli", "calibrate", str(f), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and str(f) in r.stderr and "parameters.car_t_max_division_per_h.range" in r.stderr, r.stderr
    assert not (tmp_path / "o").exists()


def test_parameter_sets_read_exponents_without_a_sign(tmp_path):
    """YAML 1.1 reads ``2.0e11`` as a string; a parameter file takes it as the number."""
    f = tmp_path / "set.yaml"
    f.write_text("params:\n  car_t_capacity_cells: 2.0e11\n  search_rate_l_per_h: 3e-11\n")
    assert load_param_set(str(f)) == {"car_t_capacity_cells": 2e11, "search_rate_l_per_h": 3e-11}


def test_the_bundled_earlier_parameter_set_loads_and_changes_only_what_it_lists():
    from sim.params import PARAMETERS

    values = load_param_set(str(ROOT / "scenarios" / "params" / "dose_step_off.yaml"))
    assert values and all(v != PARAMETERS[n].value for n, v in values.items())


def test_calibrate_without_pyabc_names_the_extra(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pyabc(name, *args, **kwargs):
        if name == "pyabc" or name.startswith("pyabc."):
            raise ImportError("No module named 'pyabc'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyabc)
    from sim.errors import UserError

    with pytest.raises(UserError, match=r"cart-sim\[calibrate\]"):
        run_calibration(TINY, tmp_path / "fit")
    assert not (tmp_path / "fit").exists()  # nothing written
