"""Kaplan-Meier estimates of overall and leukemia-free survival of a cohort (lifelines).

Times are days from infusion, censored at the horizon; a patient never in remission has
an LFS event on day 0 (treatment failure), as ``sim.readouts.survival`` records it.
"""

from __future__ import annotations

import math

import pandas as pd

#: Endpoint -> (time column, event column) of the patients table.
ENDPOINTS = {"os": ("os_days", "death"), "lfs": ("lfs_days", "lfs_event")}


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def kaplan_meier(patients: pd.DataFrame, endpoint: str):
    """The fitted ``lifelines.KaplanMeierFitter`` of ``endpoint`` (``os`` or ``lfs``)."""
    from lifelines import KaplanMeierFitter

    time, event = ENDPOINTS[endpoint]
    return KaplanMeierFitter(label=endpoint.upper()).fit(patients[time], patients[event].astype(bool))


def median_summary(patients: pd.DataFrame) -> dict:
    """Median OS and LFS (days) with their 95% intervals; ``None`` where the curve does not reach it."""
    from lifelines.utils import median_survival_times

    out = {}
    for endpoint in ENDPOINTS:
        km = kaplan_meier(patients, endpoint)
        ci = median_survival_times(km.confidence_interval_).iloc[0]
        out[endpoint] = {
            "median_days": _finite(km.median_survival_time_),
            "ci95": [_finite(ci.iloc[0]), _finite(ci.iloc[1])],
            "events": int(km.event_observed.sum()),
            "n": int(len(patients)),
        }
    return out
