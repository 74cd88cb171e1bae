"""Posterior draws per replicate cohort (issue 25, item 3): the predictive interval carries parameter uncertainty."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import betabinom

from sim.workflows.posterior import parameter_draws
from sim.workflows.validate import compare


def _cohort(grades: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"crs_grade": grades})


def test_one_cohort_gives_the_beta_binomial_interval_as_before():
    """The single-cohort path is the beta-binomial of 30 of 100 simulated, for a reported cohort of 20."""
    r = compare("s", "a", "crs_grade:1-5", 6, 20, _cohort([1] * 30 + [0] * 70))
    dist = betabinom(20, 30.5, 70.5)
    assert r.interval95 == (int(dist.ppf(0.025)), int(dist.ppf(0.975))) and r.simulated_mean == pytest.approx(dist.mean())


def test_replicates_under_different_draws_widen_the_interval_to_their_mixture():
    """Two replicate cohorts of 100, one at 10% CRS and one at 90%: the predictive for 20 patients is their mixture.

    Expected: the mixture's mean is 10 (half of 2 and half of 18), its 95% interval spans both
    (about 0-20), wider than either replicate's alone; P(10 of 20) is small (the mixture is bimodal).
    """
    low, high = _cohort([1] * 10 + [0] * 90), _cohort([1] * 90 + [0] * 10)
    mixed = compare("s", "a", "crs_grade:1-5", 10, 20, [low, high])
    alone = [compare("s", "a", "crs_grade:1-5", 10, 20, c) for c in (low, high)]
    assert mixed.simulated_mean == pytest.approx(10.0, abs=1e-9)
    assert mixed.interval95[0] <= alone[0].interval95[0] and mixed.interval95[1] >= alone[1].interval95[1]
    assert mixed.interval95[0] <= 1 and mixed.interval95[1] >= 19 and mixed.p_reported < 0.02
    assert mixed.n_simulated == 200 and mixed.simulated_rate == pytest.approx(0.5)


def test_parameter_draws_follow_the_weights_and_the_seed(tmp_path):
    """Three draws weighted 0, 0.25, 0.75: 4000 draws (seed 5) hit them about 0, 1000 and 3000 times (binomial sd 27)."""
    pd.DataFrame({"hill_n": [1.0, 2.0, 3.0], "weight": [0.0, 0.25, 0.75]}).to_parquet(tmp_path / "posterior.parquet")
    draws = parameter_draws(tmp_path, 4000, seed=5)
    values = np.array([d["hill_n"] for d in draws])
    assert np.sum(values == 1.0) == 0 and abs(np.sum(values == 3.0) - 3000) < 110
    assert draws == parameter_draws(tmp_path / "posterior.parquet", 4000, seed=5)


def test_a_posterior_with_an_unknown_parameter_is_a_clean_error(tmp_path):
    pd.DataFrame({"hil_n": [1.0], "weight": [1.0]}).to_parquet(tmp_path / "posterior.parquet")
    r = subprocess.run(
        [sys.executable, "-m", "sim.cli", "validate", "--posterior", str(tmp_path), "--dry-run", "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "hil_n" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()


def test_shipping_a_fit_keeps_the_identified_parameters_at_equal_weight(tmp_path, monkeypatch):
    """A fit with one identified parameter (hill_n) and one inert one: the shipped draws hold hill_n only.

    Weights 0 and 1 on two draws: every shipped draw is the weighted one (hill_n = 3), weight 1/1000 each.
    """
    import json

    import sim.workflows.posterior as post

    fit = tmp_path / "fit"
    fit.mkdir()
    pd.DataFrame({"hill_n": [1.0, 3.0], "crowding_exponent": [2.0, 5.0], "weight": [0.0, 1.0]}).to_parquet(
        fit / "posterior.parquet"
    )
    record = {
        "name": "t", "method": "m", "spec": "s.yaml", "data": "d", "seed": 1, "date": "2026-12-03",
        "effective_sample_size": 1.0, "coverage": {}, "provenance": {"cart_sim": "0", "commit": None, "command": "c"},
        "posterior": {"hill_n": {"identified": True, "median": 3.0}, "crowding_exponent": {"identified": False}},
    }  # fmt: skip
    (fit / "fit.json").write_text(json.dumps(record))
    shipped = tmp_path / "data"
    shipped.mkdir()
    monkeypatch.setattr(post, "shipped_file", lambda name: shipped / name)
    post.ship(fit)
    draws = post.load_posterior(Path(post.SHIPPED))
    assert list(draws.columns) == ["hill_n", "weight"] and len(draws) == post.SHIPPED_DRAWS
    assert set(draws.hill_n) == {3.0} and np.allclose(draws.weight, 1 / post.SHIPPED_DRAWS)
    assert "hill_n" in (shipped / "posterior.yaml").read_text()


def test_the_shipped_posterior_loads_and_states_its_provenance():
    """sim/data/posterior.parquet: known parameters at equal weight; posterior.yaml: data, method, seed, commit, date."""
    import yaml

    import sim.workflows.posterior as post

    draws = post.load_posterior(Path(post.SHIPPED))
    assert len(draws) == post.SHIPPED_DRAWS and np.allclose(draws.pop("weight").sum(), 1.0)
    record = yaml.safe_load(post.shipped_file("posterior.yaml").read_text())
    assert record["shipped"]["parameters"] == list(draws.columns)
    assert record["data"] and record["method"] and record["date"] and record["fit_provenance"]["commit"]
    assert isinstance(record["seed"], int)


def test_a_posterior_cohort_is_its_replicates_each_under_its_draw():
    """Replicate r equals a plain cohort of root seed + r under draw r (bit-identical), and the predictive spans them."""
    from sim.scenario import load_scenario, with_param_set
    from sim.workflows.cohort import run_cohort, run_posterior_cohort
    from tests.conftest import ROOT

    sc = load_scenario(ROOT / "scenarios" / "cll1_standard.yaml", ["horizon_days=6", "resolution.car_t_agents=100",
                                                                   "resolution.blast_agents=100"])  # fmt: skip
    draws = [{"search_rate_l_per_h": 5e-12}, {"search_rate_l_per_h": 1e-10}]
    result = run_posterior_cohort(sc, draws, 6, workers=2)
    assert len(result.patients) == 6 and result.patients.posterior_draw.tolist() == [0, 0, 0, 1, 1, 1]
    second = run_cohort(with_param_set(sc.model_copy(update={"seed": sc.seed + 1}), draws[1]), 3)
    mine = result.patients[result.patients.posterior_draw == 1].drop(columns="posterior_draw").reset_index(drop=True)
    pd.testing.assert_frame_equal(mine, second.patients)
    crs = result.summary["posterior_predictive"]["rates"]["crs_any"]
    rates = [result.patients[result.patients.posterior_draw == r].crs_grade.gt(0).mean() for r in (0, 1)]
    assert crs["interval95"][0] >= min(rates) - 1e-12 and crs["interval95"][1] <= max(rates) + 1e-12


def test_a_posterior_comparison_keeps_the_arms_paired():
    """Two arms under the same two draws: row k is the same virtual patient in both (same draw, same baseline)."""
    from sim.scenario import load_scenario
    from sim.workflows.compare import run_comparison
    from tests.conftest import ROOT

    sets = ["horizon_days=4", "resolution.car_t_agents=100", "resolution.blast_agents=100"]
    arms = [load_scenario(ROOT / "scenarios" / f"{name}.yaml", sets) for name in ("cll1_standard", "cll1_cd16_icar")]
    comp = run_comparison(arms, 4, 2, draws=[{"hill_n": 1.5}, {"hill_n": 3.0}])
    a, b = (c.patients for c in comp.cohorts)
    assert a.posterior_draw.tolist() == b.posterior_draw.tolist() == [0, 0, 1, 1]
    for col in ("anc_baseline_1e9_per_l", "bm_blast_percent_baseline", "seed"):
        assert a[col].tolist() == b[col].tolist(), col
