"""Products and schedules as trials give them (issue 24): dose levels, split dosing with
holds, and CAR T elimination by a suicide switch or a depleting antibody.

Cohorts use the bundled CLL1 arm at its own seed (20241207), so each test is deterministic;
the sizes stated are measured at the default parameters on 2026-12-02.
"""

from __future__ import annotations

import collections

import numpy as np
import pandas as pd
import pytest

from sim.cohort import run_cohort
from sim.errors import UserError
from sim.model import Simulation
from sim.patient import sample_patient
from sim.scenario import load_scenario

CLL1 = "scenarios/cll1_standard.yaml"
SPLIT = "product.infusions=[{day: 0, fraction: 0.1}, {day: 1, fraction: 0.3}, {day: 2, fraction: 0.6}]"
ICASP9_DAY14 = "interventions.car_t_elimination={agent: icasp9_dimerizer, on_day: 14}"


def test_dose_levels_spread_patients_by_their_weights():
    # weights 3:3:6 over 600 patients: expected 150/150/300, binomial sd about 11 and 12;
    # 4 sd is asked (seed 20241207)
    sc = load_scenario(CLL1, ["product.dose_cells_per_kg={dist: choice, values: [1e5, 1e6, 3e6], weights: [3, 3, 6]}"])
    counts = collections.Counter(sample_patient(sc, i).dose_cells_per_kg for i in range(600))
    assert set(counts) == {1e5, 1e6, 3e6}
    assert abs(counts[3e6] - 300) < 4 * 12.2 and abs(counts[1e5] - 150) < 4 * 10.6


def test_split_dose_adds_up_and_enters_on_its_days():
    once = Simulation(load_scenario(CLL1, ["horizon_days=3"]), patient_index=2)
    split = Simulation(load_scenario(CLL1, ["horizon_days=3", SPLIT]), patient_index=2)
    r_once, r_split = once.run(), split.run()
    assert r_split.summary["infusions_given"] == 3
    assert r_split.summary["dose_given_cells_per_kg"] == pytest.approx(r_once.summary["dose_given_cells_per_kg"])

    def car_t(r, day):
        ts = r.timeseries
        row = ts[(ts.t_days - day).abs() < 1e-9]
        return float(row[["car_t_memory", "car_t_effector", "car_t_exhausted"]].sum().sum())

    # two hours after day 0, only the first 10% is in (little division or death yet)
    assert 0.07 < car_t(r_split, 2 / 24) / car_t(r_once, 2 / 24) < 0.13


def test_split_dose_without_holds_moves_crs_later_not_lower():
    # measured at 3e6/kg: CRS onset median 1.8 d at once, 3.0 d split (30 patients); peak IL-6
    # median 2389 against 2420 pg/mL and grade >= 3 in 6 against 7 (60 patients): expansion is set by antigen and
    # room, not by the first cells. What lowers CRS in trials is holding later doses (next test).
    sets = ["product.dose_cells_per_kg=3e6"]
    once = run_cohort(load_scenario(CLL1, sets), 30, workers=2).patients
    split = run_cohort(load_scenario(CLL1, [*sets, SPLIT]), 30, workers=2).patients
    assert split.crs_onset_day.median() > once.crs_onset_day.median()
    assert (split.dose_given_cells_per_kg == 3e6).all()


def test_later_infusions_are_held_at_the_crs_grade():
    # half the dose on day 0, half on day 5, held once CRS reaches grade 1 (Frey 2020 J Clin
    # Oncol 38:415: later fractions held for early CRS). CRS starts before day 5 in most
    # patients: measured 23 of 30 held; asked at least 15, and the held get half the dose.
    halves = "product.infusions=[{day: 0, fraction: 0.5}, {day: 5, fraction: 0.5}]"
    sets = ["horizon_days=10", halves, "product.hold_infusions_at_crs_grade=1"]
    p = run_cohort(load_scenario(CLL1, sets), 30, workers=2).patients
    held = p.infusions_given == 1
    assert held.sum() >= 15
    assert np.allclose(p.dose_given_cells_per_kg[held], 0.5 * p.dose_cells_per_kg[held])
    assert (p.crs_onset_day[held] <= 5.0).all()


def _car_t_total(r) -> pd.Series:
    ts = r.timeseries
    return ts.groupby("t_days")[["car_t_memory", "car_t_effector", "car_t_exhausted"]].sum().sum(axis=1)


def test_icasp9_switch_removes_ninety_percent_within_a_day():
    # iCasp9 + dimerizer: >90% within 30 min (Di Stasi 2011), the default 0.9 in 0.5 h. Against
    # the same patient without it, one day later the CAR T count is 10% (measured 0.102); the
    # survivors' day of their own dynamics is the tolerance (0.12 asked).
    without = Simulation(load_scenario(CLL1, ["horizon_days=16"]), patient_index=0).run()
    with_switch = Simulation(load_scenario(CLL1, ["horizon_days=16", ICASP9_DAY14]), patient_index=0).run()
    day = with_switch.summary["car_t_eliminated_day"]
    assert day == pytest.approx(14.0 + 1 / 24)
    a, b = _car_t_total(without), _car_t_total(with_switch)
    assert b[b.index <= day].iloc[-1] == pytest.approx(a[a.index <= day].iloc[-1])  # nothing before
    assert b[b.index <= day + 1].iloc[-1] / a[a.index <= day + 1].iloc[-1] < 0.12
    assert without.summary["car_t_eliminated_day"] is None


def test_neutrophils_recover_after_the_switch():
    # CLL1 CAR T cells keep killing neutrophil precursors; removing them on day 14 lets ANC
    # recover: measured on 30 patients to day 42, 16 recovered (ANC >= 0.5) without and 20 with,
    # median days with ANC < 0.5 from 21 to 13
    sets = ["horizon_days=42"]
    without = run_cohort(load_scenario(CLL1, sets), 30, workers=2).patients
    with_switch = run_cohort(load_scenario(CLL1, [*sets, ICASP9_DAY14]), 30, workers=2).patients
    assert with_switch.days_anc_below_0_5.median() < without.days_anc_below_0_5.median() - 3.0
    assert with_switch.anc_recovery_day.notna().sum() > without.anc_recovery_day.notna().sum()


@pytest.mark.parametrize(
    "override, words",
    [
        ("product.infusions=[{day: 0, fraction: 0.5}, {day: 1, fraction: 0.4}]", "add up to 1"),
        ("product.infusions=[{day: 1, fraction: 1.0}]", "starting on day 0"),
        ("product.infusions=[{day: 0, fraction: 0.5}, {day: 0, fraction: 0.5}]", "increasing days"),
        ("product.infusions=[{day: 0, dose_cells_per_kg: 1e5}, {day: 1, dose_cells_per_kg: 1e5}]", "add up to"),
        ("lymphodepletion={enabled: true, start_day: -2, days: 3}", "over by day 0"),
        ("interventions.car_t_elimination={agent: icasp9_dimerizer}", "a trigger"),
        ("product.dose_cells_per_kg={dist: choice, values: [1e5, 1e6], weights: [1]}", "one non-negative weight per value"),
    ],
)
def test_bad_schedules_are_clear_errors(override, words):
    with pytest.raises(UserError) as e:
        load_scenario(CLL1, [override])
    assert words in str(e.value)
