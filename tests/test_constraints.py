"""Behaviours the emulator fit must keep (sim.workflows.constraints): outcomes, the behaviour prior, bad specs."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from sim.workflows.constraints import Constraint, log_prior, outcome_rule
from sim.workflows.emulate import EmulatorSpec, posterior_draws
from tests.conftest import ROOT

QUICK = ROOT / "scenarios" / "calibration" / "emulator_quick.yaml"


def test_outcomes_are_registry_names_or_comparisons_of_columns_and_ratios():
    d = pd.DataFrame({"a": [0.5, 2.0, np.nan], "b": [1.0, 1.0, 1.0], "crs_grade": [0, 3, 1]})
    assert outcome_rule("a < 1")(d).tolist() == [True, False, False]  # a missing value is false
    assert outcome_rule("a / b >= 2")(d).tolist() == [False, True, False]
    assert outcome_rule("crs_grade_ge3")(d).tolist() == [False, True, False]
    assert outcome_rule("a < .6")(d).tolist() == [True, False, False] and outcome_rule("b >= 1e0")(d).all()
    for bad in ("a <> 1", "a < one", "not_an_outcome", "a < 1 < 2", "a < 1.2.3", "a < ."):
        with pytest.raises(ValueError, match="expected a binary outcome name"):
            outcome_rule(bad)


def _constraint(lo: float, hi: float) -> dict[str, Constraint]:
    return {"c": Constraint(scenario="x.yaml", outcome="a < 1", share=(lo, hi), source="test")}


def test_behaviour_prior_is_the_normal_mass_of_the_logit_share_inside_its_range():
    # range [0.5, 1] is logit [0, inf): with the logit share ~ N(mu, 1) the mass inside is Phi(mu)
    mean, sd = np.array([[0.0], [1.0], [-3.0]]), np.ones((3, 1))
    got = np.exp(log_prior(mean, sd, _constraint(0.5, 1.0)))
    assert got == pytest.approx([0.5, 0.8413447, 0.0013499], rel=1e-5)
    # a closed range: Phi((logit 0.8 - mu) / sd) - Phi((logit 0.2 - mu) / sd), symmetric about 0
    inside = np.exp(log_prior(np.zeros((1, 1)), np.full((1, 1), 0.5), _constraint(0.2, 0.8)))[0]
    z = math.log(4.0) / 0.5
    assert inside == pytest.approx(math.erf(z / math.sqrt(2.0)), rel=1e-9)


def test_the_behaviour_prior_removes_the_draws_that_break_a_behaviour():
    """No data (a count with no information) and a behaviour prior that allows only x0 < 0.5: the weights follow it."""

    class Flat:  # an emulator of one count that says nothing about the parameters
        def predict(self, unit):
            return np.zeros((len(unit), 1)), np.full((len(unit), 1), 0.1)

    spec = EmulatorSpec(name="t", parameters={"hill_n": {}, "kill_per_activation": {}}, posterior_draws=4000, seed=3)
    from sim.workflows.emulate import Metric, weights_from

    metrics = [Metric("s", "a", "s", "training", "m", 0, 0)]  # n = 0: the likelihood is 1 everywhere
    draws, mean, sd, loglik, log_q, _ = posterior_draws(Flat(), metrics, spec, lambda line: None,
                                                     lambda x: np.where(x[:, 0] < 0.5, 0.0, -50.0))  # fmt: skip
    w = weights_from(loglik, np.ones(1, bool), log_q)
    assert w[draws[:, 0] >= 0.5].sum() < 1e-12
    assert abs(w @ draws[:, 0] - 0.25) < 0.02  # uniform on [0, 0.5): mean 0.25; 4000 Halton draws, error ~0.005


@pytest.mark.parametrize(
    ("replace", "by", "expected"),
    [
        ("share: [0.5, 1.0]", "share: [0.9, 0.2]", "constraints.contraction.share"),
        ("scenario: cll1_standard.yaml", "scenario: no_such.yaml", "constraints.contraction.scenario = 'no_such.yaml'"),
        ("outcome: car_t_day28", "outcome: anc <> 3 #", "constraints.contraction.outcome"),
        # caught by --dry-run (and before the reported counts' design in a fit): one patient of the scenario is run
        ("car_t_day28_cells_per_ul_blood /", "car_t_day29_cells_per_ul_blood /", "car_t_day29_cells_per_ul_blood"),
        ("scenario: cll1_standard.yaml", "scenario: cll1_standard.yaml\n    set: [params.no_such=1]", "params.no_such"),
        # stage 2 holds an unidentified parameter at its default, so the default must lie in the prior
        ("il6_max_pg_per_ml: {scale: log}", "il6_max_pg_per_ml: {scale: log, range: [1e5, 1e6]}", "holds the default"),
    ],
)
def test_a_bad_constraint_is_a_one_line_error(tmp_path, replace, by, expected):
    text = QUICK.read_text().replace("scenarios: ..", "")
    assert replace in text
    text = text.replace(replace, by)
    spec = tmp_path / "bad.yaml"
    spec.write_text(text + f"scenarios: {ROOT / 'scenarios'}\n")
    r = subprocess.run([sys.executable, "-m", "sim.cli", "calibrate", str(spec), "--dry-run"], capture_output=True, text=True)
    assert r.returncode == 2 and expected in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
