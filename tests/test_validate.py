"""Validation: metric mapping, predictive intervals, and the CLI outputs."""

import json
import subprocess
import sys

import pandas as pd

from sim.workflows.validate import compare, grade_range, outcome, reported_metrics
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


def test_reported_cr_is_cr_or_cri_where_the_arm_counts_other_responses_apart():
    # CD19 in t(8;21) reports CR 6, MRD-negative CR 6 and overall response 10 of 10: the 4 responders
    # not in CR rule out reading its 'CR' as every marrow remission (CR/CRi/MLFS)
    arm = {"complete_remission": 6, "mrd_negative_complete_remission": 6, "overall_response": 10}
    assert [m for m, _ in reported_metrics(arm)] == [
        "complete_remission:cr_cri",
        "mrd_negative_complete_remission",
        "overall_response",
    ]
    patients = pd.DataFrame({"response_day28": ["CR", "CRi", "MLFS", "PR", "NR"]})
    assert outcome("complete_remission:cr_cri", patients).tolist() == [True, True, False, False, False]
    assert outcome("complete_remission", patients).tolist() == [True, True, True, False, False]


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


def test_trials_report_gives_every_arm_at_reported_size_and_at_n(monkeypatch):
    from types import SimpleNamespace

    import sim.reports as reports
    from sim.workflows.validate import clinical_targets

    # 20 hand-built patients: CRS grade 2 for the first 5, grade 4 for the rest; CR for every 4th
    patients = pd.DataFrame(
        {
            "response_day28": ["CR" if i % 4 == 0 else "NR" for i in range(20)],
            "mrd_negative": [i % 4 == 0 for i in range(20)],
            "crs_grade": [2] * 5 + [4] * 15,
            "icans_grade": [0] * 20,
            "iec_hs": [False] * 20,
            "neutropenia_grade": [4] * 20,
            "thrombocytopenia_grade": [3] * 20,
            "infection_bacterial_day28": [0] * 20,
        }
    )
    monkeypatch.setattr(reports, "run_cohort", lambda sc, n, w: SimpleNamespace(patients=patients))
    text = reports.trials_report(20, 1)
    arms = [(s["id"], str(a["id"])) for s in clinical_targets()["studies"] for a in s["arms"]]
    assert all(f"## {study} / {arm}:" in text for study, arm in arms)
    section = text.split("## cd123_dasatinib / dose_10e6")[1].split("## ")[0]
    # reported 3/3 grade 4-5; the first 3 patients (reported size) are all grade 2; 15 of 20 are grade 4
    assert "| CRS grade 4-5 | 3/3 | 0/3 | 75% (53-89) |" in section
    assert "| CRS grade 2 | NR | 3/3 | 25% (11-47) |" in section
    assert "| CR (ELN 2022, counts recovered) | NR | 1/3 | 25% (11-47) |" in section
    forecast = text.split("## il1rap_resolve / dose_1e6")[1].split("## ")[0]
    assert "forecast" in forecast and "| CRS grade 4 | - | - | 75% (53-89) |" in forecast
