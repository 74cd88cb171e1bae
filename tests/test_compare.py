"""iCAR against standard CAR on the same virtual patients."""

import numpy as np
import pandas as pd
import pytest

from sim.workflows.compare import run_comparison
from tests.conftest import scenario

FAST = ("resolution.car_t_agents=150", "resolution.blast_agents=150")


def outcomes(patients: pd.DataFrame) -> pd.DataFrame:
    return patients.drop(columns=["scenario"])


def test_icar_with_imax_zero_is_the_standard_arm_patient_by_patient():
    std = scenario("cll1_standard", "horizon_days=14", *FAST)
    icar = scenario("cll1_cd16_icar", "horizon_days=14", "product.icar.imax=0", *FAST)
    comp = run_comparison([std, icar], 4, workers=1)
    a, b = (outcomes(c.patients) for c in comp.cohorts)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert np.array_equal(comp.cohorts[0].trajectories, comp.cohorts[1].trajectories, equal_nan=True)


@pytest.mark.slow
def test_cd16_icar_spares_neutrophils_without_losing_blast_kill():
    """No CD16 on blasts, strong CD16 iCAR: fewer days of ANC < 0.5, same blast kill.

    Expected: the mean paired difference in days below 0.5 is negative (its paired bootstrap 95%
    interval excludes 0), while the paired difference in log10 blasts at day 28 stays within
    0.5 decade (blast kill unchanged within sampling error: 16 patients, ~0.2 decade spread).
    """
    pop = ("patient.antigens={CLL1: {aml_positive_fraction: 1.0}, CD16: {aml_positive_fraction: 0.0}}",)
    std = scenario("cll1_standard", "horizon_days=40", *pop, *FAST)
    icar = scenario("cll1_cd16_icar", "horizon_days=40", "product.icar.imax=0.99", *pop, *FAST)
    comp = run_comparison([std, icar], 16, workers=2)
    d = comp.differences["cll1_cd16_icar"]["median_days_anc_below_0_5"]["mean_paired_difference"]
    assert d["ci95"][1] < 0, d
    assert comp.conclusion.startswith("On the same 16") and "cll1_cd16_icar spared neutrophils" in comp.conclusion
    a, b = (c.patients.blasts_total_day28.to_numpy() for c in comp.cohorts)
    assert abs(np.median(np.log10(b + 1) - np.log10(a + 1))) < 0.5


@pytest.mark.slow
def test_cd15_icar_loses_efficacy_when_all_blasts_carry_cd15():
    pop = ("patient.antigens={CLL1: {aml_positive_fraction: 1.0}, CD15: {aml_positive_fraction: 1.0, blast_median: 3e4}}",)
    std = scenario("cll1_standard", *pop, *FAST)
    icar = scenario("cll1_cd15_icar", "product.icar.imax=0.99", *pop, *FAST)
    comp = run_comparison([std, icar], 12, workers=2)
    rem = comp.differences["cll1_cd15_icar"]["cr_cri_mlfs"]
    assert rem["difference"] < 0 and rem["ci95"][1] < 0, rem
    a, b = (c.patients.blasts_total_day28.to_numpy() for c in comp.cohorts)
    assert np.median(np.log10(b + 1) - np.log10(a + 1)) > 1.0  # at least 10x more blasts left


@pytest.fixture(scope="module")
def forty_patients() -> pd.DataFrame:
    """Forty rows resampled from a real 4-patient cohort: every outcome column a rule reads."""
    comp = run_comparison(
        [scenario("cll1_standard", "horizon_days=7", *FAST), scenario("cll1_cd16_icar", "horizon_days=7", *FAST)], 4
    )
    return comp.cohorts[0].patients.sample(40, replace=True, random_state=0).reset_index(drop=True)


def test_median_difference_and_mean_paired_difference_are_reported_apart(forty_patients):
    """30 patients gain 1 day and the 10 with the fewest lose 20: the median rises by 1, the mean paired difference is negative.

    The difference of medians and the mean paired difference must be the plain numpy values
    (they disagree in sign here, which is why both are reported), each inside its own 95%
    bootstrap interval (seed 7, 1000 resamples: a statistic outside its percentile interval
    would mean the interval was computed on something else).
    """
    from sim.workflows.compare import paired_differences

    base = forty_patients.copy()
    base["days_anc_below_0_5"] = np.arange(40, dtype=float)
    other = base.copy()
    other["days_anc_below_0_5"] = base["days_anc_below_0_5"] + np.where(np.arange(40) < 10, -20.0, 1.0)
    d = paired_differences(base, other, seed=7)["median_days_anc_below_0_5"]
    a, b = base.days_anc_below_0_5.to_numpy(), other.days_anc_below_0_5.to_numpy()
    assert d["difference"] == np.median(b) - np.median(a) > 0
    assert d["mean_paired_difference"]["value"] == np.mean(b - a) < 0
    assert d["ci95"][0] <= d["difference"] <= d["ci95"][1]
    lo, hi = d["mean_paired_difference"]["ci95"]
    assert lo <= d["mean_paired_difference"]["value"] <= hi < 0


def test_paired_bootstrap_is_narrower_than_unpaired_for_correlated_arms(forty_patients):
    """Arms that differ by a constant 2 days per patient: the paired interval of the median difference is narrow.

    Expected: difference of medians exactly 2; with pairing the interval is at most a few days
    wide although each arm's own median interval spans about 10 days (values 0..39).
    """
    from sim.workflows.compare import arm_table, paired_differences

    base = forty_patients.copy()
    base["days_anc_below_0_5"] = np.arange(40, dtype=float)
    other = base.copy()
    other["days_anc_below_0_5"] += 2.0
    d = paired_differences(base, other, seed=7)["median_days_anc_below_0_5"]
    assert d["difference"] == 2.0
    lo, hi = d["ci95"]
    arm_lo, arm_hi = arm_table(base, seed=7)["median_days_anc_below_0_5"]["ci95"]
    assert hi - lo < 0.5 * (arm_hi - arm_lo), (d, arm_lo, arm_hi)


def test_small_cohorts_get_a_caveat_and_large_ones_do_not():
    from sim.workflows.compare import small_cohort_caveat

    (caveat,) = small_cohort_caveat("icar", [-0.3, 0.1], 20)  # +/-20 points with 20 patients
    assert "+/-20 points" in caveat and "about 80 patients" in caveat
    assert small_cohort_caveat("icar", [-0.08, 0.05], 400) == []
