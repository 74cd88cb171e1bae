"""The hybrid draws and the default resolution change nothing that matters.

* **Hybrid vs exact**: each patient of a seeded cohort runs twice, with the hybrid rule of
  :mod:`sim.core.random` and with every count drawn exactly. Outcomes are compared pair by
  pair (same patient, same initial state): a Wilcoxon signed-rank test on the paired
  differences of log outcomes and a sign test on response and CRS grade, each at
  alpha = 0.001. With 30 pairs the signed-rank test detects a systematic shift of 0.75
  standard deviations of the paired difference with 80% power (normal approximation,
  efficiency 0.95 of the t test); within-patient noise of these outcomes is a few percent,
  so a bias of that size would fail the test.
* **Default resolution vs 1000 agents per kind**: the same design.
* **Extinction**: a small blast population under the blasts kernel against the closed
  form of the branching process it implements (the iterated generating function).

Seeds: root seed of the bundled scenario; patients 0-29.
"""

import math

import numpy as np
import pytest
from numba import njit
from scipy import stats

from sim.core.blasts import PROPERTIES, BlastConst, nb_grow_blasts
from sim.core.common import BM, growth_prob, prob
from sim.core.frames import Frame
from sim.core.random import new_state
from sim.model import Simulation
from tests.conftest import scenario

N_PAIRS = 30
ALPHA = 0.001
LOG_OUTCOMES = (
    "car_t_peak_cells_per_ul_blood",
    "anc_nadir_1e9_per_l",
    "bm_blast_percent_day28",
    "il6_peak_pg_per_ml",
    "blasts_total_day28",
)


def outcomes(sc, **kw) -> list[dict]:
    return [Simulation(sc, patient_index=i, **kw).run().summary for i in range(N_PAIRS)]


def assert_same_distribution(a: list[dict], b: list[dict]) -> None:
    for key in LOG_OUTCOMES:
        d = np.log10(np.array([x[key] for x in a]) + 1e-6) - np.log10(np.array([x[key] for x in b]) + 1e-6)
        if np.all(d == 0):
            continue
        p = stats.wilcoxon(d, zero_method="zsplit").pvalue
        assert p > ALPHA, (key, p, np.median(d))
    for key, value in (("responder", lambda s: s["response_day28"] in ("CR", "CRi", "MLFS")), ("crs", lambda s: s["crs_grade"])):
        va, vb = np.array([value(x) for x in a], float), np.array([value(x) for x in b], float)
        up, down = int(np.sum(va > vb)), int(np.sum(va < vb))
        if up + down:
            assert stats.binomtest(up, up + down).pvalue > ALPHA, (key, up, down)


@pytest.fixture(scope="module")
def hybrid():
    return outcomes(scenario("cll1_standard", "horizon_days=28"))


def test_hybrid_draws_match_exact_draws(hybrid):
    assert_same_distribution(hybrid, outcomes(scenario("cll1_standard", "horizon_days=28"), exact=True))


def test_default_resolution_matches_1000_agents_per_kind(hybrid):
    fine = scenario("cll1_standard", "horizon_days=28", "resolution.car_t_agents=1000", "resolution.blast_agents=1000")
    assert_same_distribution(hybrid, outcomes(fine))


@njit
def _extinct(k, f, n0, steps, replicates, rs):
    out = 0
    for _ in range(replicates):
        f.w[0] = n0
        f.n[0] = 1
        for _ in range(steps):
            nb_grow_blasts(1.0, k, f, 1, 0.0, 0.0, rs)
        out += f.w[0] == 0.0
    return out


def extinction_closed_form(p_birth: float, p_death: float, n0: int, steps: int) -> float:
    """P(extinct after ``steps``) of the kernel's process: each cell divides w.p. ``p_birth``,
    then every cell dies w.p. ``p_death``; offspring pgf f(s) = (1 - b + b g(s)) g(s), g(s) = d + (1 - d) s."""
    q = 0.0
    for _ in range(steps):
        g = p_death + (1.0 - p_death) * q
        q = (1.0 - p_birth + p_birth * g) * g
    return q**n0


@pytest.mark.parametrize("n0", [3, 25])
def test_extinction_matches_the_branching_process(n0):
    """A near-critical population (division 0.10/h, death 0.11/h, 48 h). Expected extinction from
    the closed form; 4000 seeded replicates (stream seed 7) give a binomial standard error of at
    most 0.008, and the tolerance is 4 standard errors."""
    r_b, d_b, steps, replicates = 0.10, 0.11, 48, 4000
    k = BlastConst(r_b, d_b, 0.0, 0.0, 1e30, 1e30, 1.0, 1, 0.0, -1, -1)
    f = Frame(4, ("density", *PROPERTIES))
    f.add(float(n0), BM, 0, np.array([1.0, 0.0, 0.0, 0.0, 0.0]))
    expected = extinction_closed_form(growth_prob(r_b, 1.0), prob(d_b, 1.0), n0, steps)
    observed = _extinct(k, f.arrays, float(n0), steps, replicates, new_state(7, 0)) / replicates
    se = math.sqrt(max(expected * (1 - expected), 1e-4) / replicates)
    assert abs(observed - expected) < 4 * se, (observed, expected)
