"""Readout rules on hand-built numbers."""

import numpy as np

from sim.readouts import ctcae_neutropenia_grade, days_below, longest_run_hours, response


def test_ctcae_grades():
    assert [ctcae_neutropenia_grade(x) for x in (3.0, 1.9, 1.2, 0.7, 0.3, 0.0)] == [0, 1, 2, 3, 4, 4]


def test_days_below_counts_the_hourly_grid():
    t = np.arange(0, 28 * 24 + 1) / 24.0
    anc = np.where((t >= 5) & (t < 15), 0.05, 2.0)  # 10 days below 0.1
    assert abs(days_below(t, anc, 0.1) - 10.0) < 1e-9
    assert abs(days_below(t, anc, 0.5) - 10.0) < 1e-9
    assert days_below(t, anc, 0.01) == 0.0


def test_eln_response_categories():
    assert response(2.0, 40.0, 0.0, 0.0, 1.5, 150.0) == "CR"
    assert response(2.0, 40.0, 0.0, 0.0, 0.7, 60.0) == "CRh"
    assert response(2.0, 40.0, 0.0, 0.0, 0.3, 150.0) == "CRi"
    assert response(2.0, 40.0, 0.0, 0.0, 0.05, 20.0) == "MLFS"
    assert response(2.0, 40.0, 50.0, 0.0, 1.5, 150.0) == "NR"  # circulating blasts
    assert response(2.0, 40.0, 0.0, 1e10, 1.5, 150.0, baseline_emd_cells=1e10) == "NR"  # extramedullary disease
    assert response(15.0, 40.0, 0.0, 0.0, 1.5, 150.0) == "PR"
    assert response(15.0, 20.0, 0.0, 0.0, 1.5, 150.0) == "NR"  # fell by less than half


def test_longest_run():
    t = np.arange(10) / 24.0
    mask = np.array([0, 1, 1, 1, 0, 1, 1, 0, 0, 0], bool)
    assert longest_run_hours(t, mask) == 2.0
