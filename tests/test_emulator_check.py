"""The held-out check of the emulators (sim.workflows.emulator_check)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from sim.workflows import emulator_check
from sim.workflows.emulator_check import check, predictive_pmf


def _design(seed: int):
    """96 points of a 2-D cube, 16 patients each, three counts with logit p = a + b x0 + c x1."""
    rng = np.random.default_rng(seed)
    unit = rng.random((96, 2))
    logits = np.column_stack([-1.0 + 2.0 * unit[:, 0], 0.5 - 1.5 * unit[:, 1], -2.0 + unit[:, 0] + unit[:, 1]])
    return unit, rng.binomial(16, 1.0 / (1.0 + np.exp(-logits))).astype(float)


def test_predictive_is_the_binomial_when_the_emulator_is_sure_and_wider_when_not():
    mean = np.array([-1.0, 0.0, 2.0])
    sure = predictive_pmf(mean, np.zeros(3), 16)
    assert sure == pytest.approx(binom.pmf(np.arange(17)[None, :], 16, 1.0 / (1.0 + np.exp(-mean[:, None]))))
    unsure = predictive_pmf(mean, np.full(3, 1.0), 16)
    assert unsure.sum(axis=1) == pytest.approx(1.0)
    k = np.arange(17)
    var = lambda pmf: pmf @ k**2 - (pmf @ k) ** 2  # noqa: E731
    assert np.all(var(unsure) > var(sure))


def test_held_out_counts_of_a_smooth_rate_fall_inside_their_intervals():
    """32 of 96 points held out, three counts each (96 scored; seed 4).

    Expected: about 95% inside (more when the emulator's own uncertainty widens the intervals);
    at least 88%, 3 binomial sd (2.2 points each) below 95%.
    """
    unit, counts = _design(4)
    result = check(unit, counts, 16, held_out=32, seed=4)
    assert result["counts_scored"] == 96 and result["inside_95"] >= 0.88


def test_an_overconfident_emulator_fails_the_check(monkeypatch):
    """The same design with an emulator 1.5 logit off and sure of itself (sd 0): most counts fall outside.

    Expected: under 60% inside (a binomial of 16 at a rate 1.5 logit off holds the true count in its
    95% interval a quarter to half of the time: 23% here); and a log score worse by more than 20.
    """
    unit, counts = _design(4)
    honest = check(unit, counts, 16, held_out=32, seed=4)

    class Off(emulator_check.Emulators):
        def predict(self, x):
            mean, sd = super().predict(x)
            return mean + 1.5, np.zeros_like(sd)

    monkeypatch.setattr(emulator_check, "Emulators", Off)
    off = check(unit, counts, 16, held_out=32, seed=4)
    assert off["inside_95"] < 0.6 and off["log_score"] < honest["log_score"] - 20
