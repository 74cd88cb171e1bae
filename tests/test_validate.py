"""Validation: metric mapping, predictive intervals, and the CLI outputs."""

import json
import subprocess
import sys

import pandas as pd

from sim.validate import compare, grade_range, reported_metrics
from tests.conftest import ROOT


def test_grade_ranges_and_metric_extraction():
    assert grade_range("2") == (2, 2) and grade_range("3-4") == (3, 4)
    arm = {
        "complete_remission": 5,
        "overall_response": None,
        "crs_grade": {"0": 2, "1-2": 9},
        "icans_grade": None,
        "other": {"iec_hs": 3},
    }
    assert reported_metrics(arm) == [("complete_remission", 5), ("crs_grade:0", 2), ("crs_grade:1-2", 9), ("other:iec_hs", 3)]


def test_predictive_interval_contains_likely_counts_and_excludes_unlikely_ones():
    # simulated rate 0.5 (100 of 200): for a cohort of 10 the central 95% interval is about 2-8
    patients = pd.DataFrame({"crs_grade": [2] * 100 + [0] * 100})
    agree = compare("s", "a", "crs_grade:2", 5, 10, patients)
    assert agree.verdict == "agrees" and agree.interval95[0] <= 3 and agree.interval95[1] >= 7
    assert compare("s", "a", "crs_grade:2", 10, 10, patients).verdict == "disagrees"
    assert compare("s", "a", "other:liver_function_damage", 4, 12, patients).verdict == "not modelled"


def test_validate_cli_writes_outputs_and_strict_reflects_the_verdicts(tmp_path):
    out = tmp_path / "v"
    cmd = [sys.executable, "-m", "sim.cli", "validate", "-n", "10", "--workers", "2", "--out", str(out), "--strict"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert r.returncode in (0, 1), r.stderr
    data = json.loads((out / "validation.json").read_text())
    assert (out / "validation.png").exists()
    s = data["summary"]
    assert (r.returncode == 1) == (s["agree"] < s["metrics"])
    assert {"study", "arm", "metric", "reported", "simulated_mean", "interval95", "verdict"} <= set(data["records"][0])
