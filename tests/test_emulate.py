"""The emulator fit (issue 25): emulators, likelihood, posterior, leave-one-study-out, resume, bad specs."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from sim.workflows.emulate import (
    INERT_TOTAL_INDEX,
    MIN_CONTRACTION,
    Emulators,
    EmulatorSpec,
    Metric,
    better,
    contraction,
    default_unit,
    effective_sample_size,
    history_matching_weights,
    implausibility,
    load_emulator_spec,
    log_likelihood,
    logit_sampling_variance,
    posterior_draws,
    predictions,
    reported_counts,
    run_fit,
    screen,
    sensitivity,
    weights_from,
)
from sim.workflows.emulator_check import check_fit
from tests.conftest import ROOT

QUICK = ROOT / "scenarios" / "calibration" / "emulator_quick.yaml"


def _expit(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_gp_emulator_recovers_a_smooth_rate_between_design_points():
    """Counts of 200 patients at 32 points of a 2-D cube from logit p = -1 + 3 x0 (x1 has no effect).

    Expected: at 50 new points the emulated logit is within 0.35 of the truth (the binomial noise
    of 200 patients is about 0.15-0.3 on the logit scale), and the emulator's sd is below 0.5.
    Seed 3.
    """
    rng = np.random.default_rng(3)
    unit = rng.random((32, 2))
    counts = rng.binomial(200, _expit(-1.0 + 3.0 * unit[:, 0]))[:, None].astype(float)
    emulators = Emulators(unit, counts, 200, seed=3)
    test = rng.random((50, 2))
    mean, sd = emulators.predict(test)
    assert np.max(np.abs(mean[:, 0] - (-1.0 + 3.0 * test[:, 0]))) < 0.35
    assert np.max(sd) < 0.5


def test_emulator_sd_is_about_the_expected_rate_not_the_design_s_binomial_noise():
    """64 points of a 2-D cube, 16 patients each, one true rate 0.4 everywhere (seed 5).

    The binomial scatter of 16 patients, about 1/sqrt(16 x 0.24) = 0.51 on the logit scale, is
    given to the GP as each point's noise; it needs little white noise beyond it (variance under
    0.05). The expected rate is known far better, from 64 points: the predicted sd must stay below
    half that scatter (0.26) at new points. Counting the noise in the sd, as before, gives 0.49-0.50.
    """
    rng = np.random.default_rng(5)
    unit = rng.random((64, 2))
    counts = rng.binomial(16, 0.4, size=64)[:, None].astype(float)
    emulators = Emulators(unit, counts, 16, seed=5)
    mean, sd = emulators.predict(rng.random((50, 2)))
    assert emulators.white_var[0] < 0.05
    assert np.max(sd) < 0.26
    assert np.max(np.abs(mean - math.log(0.4 / 0.6))) < 0.3


def test_logit_sampling_variance_matches_simulated_binomial_counts():
    """The exact variance of the smoothed logit of 16 patients against 200,000 simulated cohorts (seed 9).

    Expected: at rates 0.03, 0.36 and 0.9 the two agree within 2% (the Monte Carlo error of a
    variance from 200,000 draws is about 0.3%); the delta method 1 / (n p (1 - p)) is 5 times the
    exact value at 0.03, so the closed form matters.
    """
    rng = np.random.default_rng(9)
    n = 16
    for p in (0.03, 0.36, 0.9):
        k = p * (n + 1.0) - 0.5  # the count whose smoothed rate is p
        exact = logit_sampling_variance(np.array([k]), n)[0]
        drawn = rng.binomial(n, p, 200_000)
        simulated = np.var(np.log((drawn + 0.5) / (n + 0.5 - drawn)))
        assert abs(exact / simulated - 1.0) < 0.02, (p, exact, simulated)


def test_importance_weights_recover_the_rate_that_made_the_counts():
    """Exact emulator (sd 0) of p(theta) = theta on [0.05, 0.95]; 60 of 200 reported: the posterior median is near 0.3.

    Expected 0.30 with a binomial posterior sd of about 0.032; tolerance 0.03 on the weighted median
    of 4000 evenly spaced draws (no sampling noise).
    """
    theta = np.linspace(0.05, 0.95, 4000)
    mean = np.log(theta / (1 - theta))[:, None]
    metric = Metric("s", "a", "s", "training", "overall_response", 60, 200)
    w = weights_from(log_likelihood(mean, np.zeros_like(mean), [metric]), np.ones(1, bool))
    median = theta[np.searchsorted(np.cumsum(w), 0.5)]
    assert abs(median - 0.30) < 0.03 and abs(w.sum() - 1) < 1e-12
    assert 100 < effective_sample_size(w) < 1000  # concentrated, but on many draws


def test_leave_one_study_out_ignores_the_left_out_counts():
    """Two studies disagree (rate 0.8 vs 0.2): left out, each is predicted from the other alone and missed."""
    theta = np.linspace(0.02, 0.98, 2000)
    mean = np.repeat(np.log(theta / (1 - theta))[:, None], 2, axis=1)
    sd = np.zeros_like(mean)
    metrics = [Metric("a", "x", "a", "training", "cr_cri", 80, 100), Metric("b", "x", "b", "training", "cr_cri", 20, 100)]
    loglik = log_likelihood(mean, sd, metrics)
    preds = predictions(mean, sd, lambda keep: weights_from(loglik, keep), metrics, seed=1, method="importance_sampling")
    loso = {p.study: p for p in preds if p.mode == "leave_one_study_out"}
    assert loso["a"].predicted_mean < 30 and not loso["a"].inside  # predicted from b's 20 of 100
    assert loso["b"].predicted_mean > 70 and not loso["b"].inside
    in_sample = [p for p in preds if p.mode == "in_sample"]
    assert all(40 < p.predicted_mean < 60 for p in in_sample)  # the pooled posterior sits between


def test_history_matching_rules_out_what_the_counts_cannot_have_come_from():
    """Exact emulator of p(theta) = theta; 60 of 200 reported, twice (two counts, as history matching cuts the second largest).

    Expected: the kept draws are those within 3 sd of the reported logit rate (sd of a binomial
    rate of 200 on the logit scale: about 0.15), so theta in about [0.22, 0.40]; every kept draw
    is inside [0.2, 0.42] and every draw in [0.25, 0.35] is kept. No noise (a grid of 4000).
    """
    theta = np.linspace(0.05, 0.95, 4000)
    mean = np.repeat(np.log(theta / (1 - theta))[:, None], 2, axis=1)
    metrics = [Metric("s", "a", "s", "training", "cr_cri", 60, 200)] * 2
    imp = implausibility(mean, np.zeros_like(mean), metrics)
    w = history_matching_weights(imp, np.ones(2, bool), np.zeros(len(theta)))
    kept = theta[w > 0]
    assert kept.min() > 0.2 and kept.max() < 0.42
    assert np.all(w[(theta > 0.25) & (theta < 0.35)] > 0) and abs(w.sum() - 1) < 1e-12
    assert np.ptp(w[w > 0]) < 1e-15  # equal weight on every draw not ruled out


def test_sobol_screen_on_the_emulator_finds_the_parameter_that_moves_the_rate():
    """Counts from logit p = -1 + 3 x0 (x1 has no effect), 200 patients at 64 points (seed 3).

    Expected total Sobol indices: x0 about 1 and x1 0 (SALib's estimate on the emulator mean,
    N = 1024); x0 above 0.9, x1 below the screen's threshold, so only x0 is identified.
    """
    rng = np.random.default_rng(3)
    unit = rng.random((64, 2))
    counts = rng.binomial(200, _expit(-1.0 + 3.0 * unit[:, 0]))[:, None].astype(float)
    spec = EmulatorSpec(name="t", parameters={"hill_n": {}, "crowding_exponent": {}}, seed=3)
    metric = Metric("s", "a", "s", "training", "cr_cri", 60, 200)
    rows = sensitivity(Emulators(unit, counts, 200, seed=3), spec, [metric])
    st = {r["parameter"]: r["ST"] for r in rows}
    assert st["hill_n"] > 0.9 and st["crowding_exponent"] < INERT_TOTAL_INDEX
    identified = screen(rows, list(spec.parameters))
    assert identified["hill_n"]["identified"] and not identified["crowding_exponent"]["identified"]
    # a parameter that moves the count but that the counts do not pin down is not identified either
    loose = screen(rows, list(spec.parameters), {"hill_n": MIN_CONTRACTION - 0.01, "crowding_exponent": 0.9})
    assert not loose["hill_n"]["identified"] and not loose["crowding_exponent"]["identified"]


def test_posterior_contraction_is_one_minus_the_variance_ratio_on_the_unit_cube():
    """Equal weights on draws uniform in [0.25, 0.75] x [0, 1]: variance 1/48 and 1/12, contraction 0.75 and 0."""
    spec = EmulatorSpec(name="t", parameters={"hill_n": {}, "crowding_exponent": {}})
    draws = np.column_stack([np.linspace(0.25, 0.75, 10001), np.linspace(0.0, 1.0, 10001)])
    c = contraction(spec, draws, np.full(10001, 1 / 10001))
    assert c["hill_n"] == pytest.approx(0.75, abs=1e-3) and c["crowding_exponent"] == pytest.approx(0.0, abs=1e-3)


def test_contraction_is_measured_against_the_prior_the_behaviours_leave():
    """A behaviour prior that allows only x0 < 0.5 leaves x0 a variance of 1/48 (Halton draws: within 2%).

    A posterior uniform on [0, 0.5) then contracts x0 by 0, not by the 0.75 the uniform box would say.
    """
    from sim.workflows.emulate import prior_variance

    spec = EmulatorSpec(name="t", parameters={"hill_n": {}, "crowding_exponent": {}}, posterior_draws=20000, seed=5)
    prior_var = prior_variance(spec, lambda u: np.where(u[:, 0] < 0.5, 0.0, -60.0))
    assert prior_var == pytest.approx([1 / 48, 1 / 12], rel=0.02)
    assert prior_variance(spec) == pytest.approx([1 / 12, 1 / 12])
    draws = np.column_stack([np.linspace(0.0, 0.5, 10001), np.linspace(0.0, 1.0, 10001)])
    c = contraction(spec, draws, np.full(10001, 1 / 10001), prior_var)
    assert c["hill_n"] == pytest.approx(0.0, abs=0.03) and c["crowding_exponent"] == pytest.approx(0.0, abs=0.03)


class _Exact:
    """An exact emulator: the rate of count j is unit coordinate j."""

    def predict(self, unit):
        p = np.clip(unit, 1e-9, 1 - 1e-9)
        return np.log(p / (1 - p)), np.zeros_like(unit)


class _Ridges(_Exact):
    """The rate of count j is the product of coordinates 2j and 2j + 1: its posterior is a curved ridge."""

    def predict(self, unit):
        return super().predict(unit[:, 0::2] * unit[:, 1::2])


_EIGHT = ["hill_n", "kill_per_activation", "search_rate_l_per_h", "car_t_max_division_per_h", "stim_half_sat_per_h",
          "il6_max_pg_per_ml", "crs_fever_index", "allo_rejection_per_h"]  # fmt: skip


def _weighted(emulators, n_counts: int) -> tuple:
    spec = EmulatorSpec(name="t", parameters={n: {} for n in _EIGHT}, posterior_draws=20_000, seed=1)
    metrics = [Metric("s", "a", "s", "training", "m", 300, 1000) for _ in range(n_counts)]
    draws, _, _, loglik, log_q, _ = posterior_draws(emulators, metrics, spec, lambda line: None)
    w = weights_from(loglik, np.ones(n_counts, bool), log_q)
    mean = w @ draws
    return effective_sample_size(w), mean, np.sqrt(w @ (draws - mean) ** 2)


def test_the_sampler_finds_a_posterior_far_sharper_than_the_prior():
    """8 parameters, each with its own count of 300 in 1000 (an exact emulator, p = theta): seed 1, 20,000 draws.

    The posterior's sd is sqrt(0.3 x 0.7 / 1000) = 0.0145 per coordinate, about 1/20 of the prior's,
    so prior draws give about one effective draw. Expected: at least 2,000 effective draws (10,308
    here), the weighted mean within 0.005 of 0.3 and the sd within 20% of 0.0145.
    """
    ess, mean, sd = _weighted(_Exact(), 8)
    assert ess >= 2000
    assert np.all(np.abs(mean - 0.3) < 0.005) and np.all(np.abs(sd / 0.0145 - 1) < 0.2)


def test_the_sampler_follows_a_curved_posterior():
    """Four independent curved ridges in 8 parameters: count j (300 of 1000) has the rate theta_2j x theta_2j+1.

    Each pair's posterior lies along the hyperbola theta_a theta_b = 0.3: its mean and sd per
    coordinate, by quadrature on a 2,000 x 2,000 grid, are about 0.581 and 0.200. Seed 1, 20,000 draws.
    Expected: at least 1,000 effective draws (1,089 here; the single-normal adaptive proposal this
    sampler replaced kept 114 and missed the means by up to 0.04), every mean within 0.02 of the grid's
    (4 Monte Carlo sd at 1,000 effective draws) and every sd within 10%.
    """
    from scipy.stats import binom

    g = (np.arange(2000) + 0.5) / 2000
    a, b = np.meshgrid(g, g, indexing="ij")
    lik = binom.pmf(300, 1000, a * b)
    lik /= lik.sum()
    ref_mean = float((lik * a).sum())
    ref_sd = math.sqrt(float((lik * (a - ref_mean) ** 2).sum()))
    ess, mean, sd = _weighted(_Ridges(), 4)
    assert ess >= 1000
    assert np.all(np.abs(mean - ref_mean) < 0.02) and np.all(np.abs(sd / ref_sd - 1) < 0.1)


def test_stage_two_holds_the_unidentified_parameters_at_their_defaults():
    """A flat emulator: stage-2 draws keep the held coordinate at the default's place in its prior box."""

    class Flat:
        def predict(self, unit):
            return np.zeros((len(unit), 1)), np.full((len(unit), 1), 0.1)

    spec = EmulatorSpec(name="t", parameters={"hill_n": {}, "kill_per_activation": {}}, posterior_draws=500)
    held = default_unit(spec, "kill_per_activation")  # 0.7 in the prior 0.3-1.0, log scale (the default)
    assert held == pytest.approx(math.log(0.7 / 0.3) / math.log(1.0 / 0.3))
    draws = posterior_draws(Flat(), [Metric("s", "a", "s", "training", "m", 0, 0)], spec, lambda line: None,
                            fixed=[np.nan, held])[0]  # fmt: skip
    assert np.all(draws[:, 1] == held) and np.ptp(draws[:, 0]) > 0.9


def test_with_every_parameter_held_the_posterior_is_that_point():
    """No parameter identified: stage 2 has nothing to sample, and its draws are the defaults' point."""

    class Flat:
        def predict(self, unit):
            return np.zeros((len(unit), 1)), np.full((len(unit), 1), 0.1)

    spec = EmulatorSpec(name="t", parameters={"hill_n": {}, "kill_per_activation": {}}, posterior_draws=500)
    held = [default_unit(spec, "hill_n"), default_unit(spec, "kill_per_activation")]
    draws, _, _, loglik, log_q, particles = posterior_draws(Flat(), [Metric("s", "a", "s", "training", "m", 0, 0)],
                                                            spec, lambda line: None, fixed=held)  # fmt: skip
    assert draws.shape == (500, 2) and np.all(draws == held) and np.all(particles == held)
    assert effective_sample_size(weights_from(loglik, np.ones(1, bool), log_q)) == pytest.approx(500)


@pytest.mark.slow
def test_quick_fit_writes_its_outputs_and_resumes_to_the_same_posterior(tmp_path):
    out = tmp_path / "fit"
    first = run_fit(QUICK, out, workers=2, log=lambda line: None)
    names = {"calibrated.yaml", "calibration.png", "cross_validation.md", "design.parquet", "fit.json", "points",
             "posterior.parquet", "sensitivity.parquet"}  # fmt: skip
    assert names <= {p.name for p in out.iterdir()}
    post = pd.read_parquet(out / "posterior.parquet")
    assert abs(post.weight.sum() - 1) < 1e-9 and len(post) == 2000
    fit = json.loads((out / "fit.json").read_text())
    n_metrics = fit["coverage"]["in_sample"]["metrics"]
    expected = len(reported_counts(load_emulator_spec(QUICK), ROOT / "scenarios")[1])  # every modelled training count
    assert n_metrics == expected > 20 and len(fit["predictions"]) == 2 * 2 * n_metrics  # two methods, in and out of sample
    assert set(fit["comparison"]) == {"importance_sampling", "history_matching"}
    assert fit["coverage"] == fit["comparison"][fit["chosen_method"]]
    report = (out / "cross_validation.md").read_text()
    rows = [line for line in report.splitlines() if line.startswith("| training |")]
    assert len(rows) == n_metrics and "| importance sampling |" in report and "| history matching |" in report
    for name, s in fit["posterior"].items():
        assert s["prior"][0] <= s["ci95"][0] <= s["median"] <= s["ci95"][1] <= s["prior"][1] * (1 + 1e-12), name
    assert fit["stage_1"]["chosen_method"] in fit["comparison"]  # stage 1 screened, stage 2 is what the fit reports
    for s in fit["posterior"].values():
        assert s["identified"] or s["ci95"] == pytest.approx([s["default"]] * 2, rel=1e-12)  # held at its default
    held_out = check_fit(out, held_out=2)  # the held-out check reads the fit folder
    assert held_out["counts_scored"] == 2 * n_metrics and 0.0 <= held_out["inside_95"] <= 1.0
    (behaviour,) = fit["constraints"]  # the spec's one constraint, with its prior and posterior share
    assert behaviour["constraint"] == "contraction" and 0.0 <= behaviour["posterior_inside"] <= 1.0
    assert "Behaviours the fit must keep" in report and "| contraction | cll1_standard.yaml |" in report
    (out / "posterior.parquet").unlink()
    lines = []
    second = run_fit(QUICK, out, workers=1, log=lines.append)  # every point read back, none simulated
    assert lines[1].startswith("8 of 8 design points already simulated")
    assert second["posterior"] == first["posterior"] and second["coverage"] == first["coverage"]
    other = tmp_path / "other_draws.yaml"  # posterior settings are not the design: the same runs serve
    text = QUICK.read_text().replace("posterior_draws: 2000", "posterior_draws: 500")
    other.write_text(text + f"scenarios: {ROOT / 'scenarios'}\n")
    lines.clear()
    run_fit(other, out, workers=1, log=lines.append)
    assert lines[1].startswith("8 of 8 design points already simulated")
    assert any(line.startswith("8 of 8 design points already simulated") and "constraints" in line for line in lines)


def test_refinement_simulates_posterior_draws_once_and_refits_on_both_waves(tmp_path):
    """``refine_points: 4`` on the quick spec: 4 more points, drawn from the stage-1 posterior, simulated once.

    Expected: design.parquet holds 8 + 4 rows (wave 2 marked), the 4 are distinct points inside the
    cube and are kept in ``points-refine-4/design.json``; the constraint is simulated there too; a
    rerun simulates nothing and gives the same posterior.
    """
    spec = tmp_path / "refine.yaml"
    spec.write_text(QUICK.read_text() + f"scenarios: {ROOT / 'scenarios'}\nrefine_points: 4\n")
    out = tmp_path / "fit"
    first = run_fit(spec, out, workers=2, log=lambda line: None)
    design = pd.read_parquet(out / "design.parquet")
    assert len(design) == 12 and (design.wave == 2).sum() == 4 and first["design"]["refine_points"] == 4
    unit = np.array(json.loads((out / "points-refine-4" / "design.json").read_text())["unit"])
    assert unit.shape == (4, 2) and len({tuple(u) for u in unit}) == 4 and ((unit >= 0) & (unit <= 1)).all()
    assert len(list((out / "points-refine-4").glob("[0-9]*.json"))) == 4
    lines = []
    second = run_fit(spec, out, workers=1, log=lines.append)
    assert sum("4 of 4 design points already simulated" in line for line in lines) == 2  # the counts and the constraint
    assert second["posterior"] == first["posterior"]


def test_a_design_that_is_not_a_power_of_two_is_a_clean_error(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text(QUICK.read_text().replace("design_points: 8", "design_points: 10").replace("scenarios: ..", ""))
    spec.write_text(spec.read_text() + f"scenarios: {ROOT / 'scenarios'}\n")
    r = subprocess.run([sys.executable, "-m", "sim.cli", "calibrate", str(spec), "--dry-run"], capture_output=True, text=True)
    assert r.returncode == 2 and "design_points = 10: expected a power of 2" in r.stderr and "Traceback" not in r.stderr


def test_a_method_with_few_effective_draws_is_kept_only_when_none_has_more():
    def method(inside: int, ess: float) -> dict:
        return {"effective_sample_size": ess, "leave_one_study_out": {"inside": inside, "mean_width": 3.0}}

    assert better({"a": method(47, 38.0), "b": method(46, 7000.0)}) == "b"  # 38 effective draws: noise
    assert better({"a": method(47, 300.0), "b": method(46, 7000.0)}) == "a"
    assert better({"a": method(47, 38.0), "b": method(46, 50.0)}) == "a"  # neither has enough: the usual rule
