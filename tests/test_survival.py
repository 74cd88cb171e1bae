"""Kaplan-Meier medians (issue 26): a hand-worked product-limit example, and the cohort's against lifelines."""

from __future__ import annotations

import pandas as pd
from lifelines import KaplanMeierFitter

from sim.workflows.cohort import run_cohort
from sim.workflows.survival import median_summary
from tests.conftest import scenario


def test_median_of_a_hand_worked_product_limit_curve():
    """Deaths on days 10, 20, 40, 50 and one censored on day 30 (5 patients).

    S = 4/5 after day 10, 3/5 after day 20, then 3/5 x 1/2 = 0.3 after day 40: the median
    is day 40, the first time S falls to 0.5 or below.
    """
    patients = pd.DataFrame({"os_days": [10.0, 20, 30, 40, 50], "death": [1, 1, 0, 1, 1], "lfs_days": 0.0, "lfs_event": 1})
    summary = median_summary(patients)
    assert summary["os"]["median_days"] == 40.0 and summary["os"]["events"] == 4 and summary["os"]["n"] == 5
    assert summary["lfs"]["median_days"] == 0.0  # every patient failed treatment on day 0


def test_cohort_summary_median_equals_lifelines_on_its_own_patients_table():
    result = run_cohort(scenario("cll1_standard", "horizon_days=240", "resolution.car_t_agents=150",
                                 "resolution.blast_agents=150"), 30)  # fmt: skip
    p = result.patients
    for endpoint, (time, event) in {"os": ("os_days", "death"), "lfs": ("lfs_days", "lfs_event")}.items():
        km = KaplanMeierFitter().fit(p[time], p[event].astype(bool))
        expected = km.median_survival_time_
        got = result.summary["survival"][endpoint]["median_days"]
        assert got == expected < 240, (endpoint, got, expected)  # 240 days: both medians are reached
        assert result.summary["survival"][endpoint]["events"] == int(p[event].sum())
