"""The training set (sim/data/training_arms.yaml): every count traced to its extraction record, every arm a scenario."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sim.scenario import load_scenario
from sim.workflows.validate import SCENARIO_DIRS, arm_scenarios, reported_arms, reported_metrics, target_set
from tests.conftest import ROOT

RECORDS = ROOT / "docs" / "training_candidates"
COUNT_FIELDS = ("patients", "complete_remission", "cr_cri", "mlfs", "mrd_negative_complete_remission", "overall_response",
                "cr_cri_mlfs", "best_overall_response", "crs_grade", "icans_grade")  # fmt: skip
ARMS = [(s, a) for s in target_set("training")["studies"] for a in s["arms"]]


def record_of(arm: dict) -> dict:
    """The arm of the extraction record that ``arm['record']`` names (FILE#study/arm)."""
    file, _, path = arm["record"].partition("#")
    study_id, arm_id = path.split("/")
    studies = yaml.safe_load((RECORDS / file).read_text())["studies"]
    (study,) = [s for s in studies if s["id"] == study_id]
    (found,) = [a for a in study["arms"] if str(a["id"]) == arm_id]
    return found


def test_the_training_set_holds_arms_beyond_the_calibration_set():
    calibration = {s["id"] for s in target_set("calibration")["studies"]}
    training = {s["id"] for s, _ in ARMS}
    assert len(ARMS) >= 12 and not calibration & training


@pytest.mark.parametrize(("study", "arm"), ARMS, ids=[f"{s['id']}.{a['id']}" for s, a in ARMS])
def test_every_count_equals_its_record_or_says_how_it_was_derived(study, arm):
    record = record_of(arm)
    derived = arm.get("derived") or {}
    assert record["patients"] == arm["patients"]
    for field in COUNT_FIELDS:
        if arm.get(field) is None:
            continue
        if field in derived:
            assert len(derived[field]) > 10, f"{field}: a derived count needs its reason"
        else:
            assert record.get(field) == arm[field], (field, record.get(field), arm[field])
    assert set(derived) <= set(COUNT_FIELDS), set(derived) - set(COUNT_FIELDS)
    assert study["citation"] and study["text_level"] in ("abstract", "full_text") and study["group"]
    assert reported_metrics(arm), "an arm with nothing to score"


def test_every_training_arm_has_a_scenario_of_its_reported_size():
    scenarios = arm_scenarios(ROOT / SCENARIO_DIRS["training"])
    for key in reported_arms("training"):
        sc = load_scenario(scenarios[key])
        (arm,) = [a for s, a in ARMS if (s["id"], str(a["id"])) == key]
        assert sc.trial.patients == arm["patients"], key
        assert Path(scenarios[key]).name == f"{key[0]}.{key[1]}.yaml"
