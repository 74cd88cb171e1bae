"""Whole-patient behaviour: the step order, the checking mode, and the CLL1 shape."""

import numpy as np
import pytest

from sim.model import STEP_PHASES, InvariantError, Simulation
from tests.conftest import scenario


def test_step_runs_the_phases_in_the_documented_order(short_cll1):
    sim = Simulation(short_cll1)
    called = []
    for name in STEP_PHASES:
        original = getattr(sim, f"_phase_{name}")

        def wrapped(original=original, name=name):
            called.append(name)
            original()

        setattr(sim, f"_phase_{name}", wrapped)
    sim.step()
    assert tuple(called) == STEP_PHASES


def test_run_equals_manual_steps(short_cll1):
    a = Simulation(short_cll1)
    ra = a.run()
    b = Simulation(short_cll1)
    b.recorder.record(b.t_day)
    for _ in range(b.n_steps):
        b.step()
    assert np.array_equal(ra.timeseries.blasts.to_numpy(), b.recorder.frame().blasts.to_numpy())


def test_checking_mode_passes_on_bundled_scenarios():
    for name in ("cll1_standard", "cll1_cd16_icar", "cll1_cd15_icar"):
        Simulation(
            scenario(name, "horizon_days=6", "resolution.car_t_agents=100", "resolution.blast_agents=100"), check=True
        ).run()


def test_checking_mode_names_phase_and_step(short_cll1, monkeypatch):
    sim = Simulation(short_cll1, check=True)
    original = sim._phase_blasts

    def broken():
        original()
        if sim.step_index == 3:
            sim.blasts.w[0] = -1.0

    sim._phase_blasts = broken
    with pytest.raises(InvariantError, match=r"blasts weights negative.*phase 'blasts' at step 3"):
        sim.run()


@pytest.mark.slow
def test_cll1_patient_has_the_reported_shape():
    """CAR T peak on days 7-14, blasts fall >= 2 logs, grade-4 ANC, IL-6 peak during expansion."""
    r = Simulation(scenario("cll1_standard", "horizon_days=60")).run()
    s, ts = r.summary, r.timeseries
    assert 7 <= s["car_t_tmax_days"] <= 14
    assert s["blasts_total_day28"] < 1e-2 * s["blasts_total_baseline"]
    assert s["neutropenia_grade"] == 4
    assert s["anc_recovery_day"] is not None and s["anc_recovery_day"] <= 60
    pb = ts[ts.compartment == "pb"]
    t_il6 = pb.t_days.to_numpy()[np.argmax(pb.il6_pg_per_ml.to_numpy())]
    assert 0 < t_il6 <= s["car_t_tmax_days"] + 2
    assert s["il6_peak_pg_per_ml"] > 30 * 3.0  # well above the 3 pg/mL baseline


def _peak(name: str, *overrides: str) -> dict:
    return Simulation(scenario(name, "horizon_days=21", *overrides)).run().summary


def test_macrophage_il18_feeds_back_on_an_unarmored_product_that_responds_to_it():
    """The HLH loop: with ``il18_response_unarmored`` 1, macrophage IL-18 raises IFN-gamma; with 0 it cannot."""
    off = _peak("cll1_standard", "params.il18_response_unarmored=0")
    on = _peak("cll1_standard", "params.il18_response_unarmored=1")
    assert on["ifng_peak_pg_per_ml"] > 1.2 * off["ifng_peak_pg_per_ml"]


def test_dasatinib_expansion_fold_acts_on_a_dasatinib_product_only():
    """Same patient: the fold raises expansion of a dasatinib product and leaves a standard one unchanged."""
    das = "product.manufacturing=dasatinib"
    assert (
        _peak("cll1_standard", "params.dasatinib_expansion_fold=2")["car_t_peak_cells_per_ul_blood"]
        == _peak("cll1_standard")["car_t_peak_cells_per_ul_blood"]
    )
    assert (
        _peak("cll1_standard", das, "params.dasatinib_expansion_fold=2")["car_t_peak_cells_per_ul_blood"]
        > 1.1 * _peak("cll1_standard", das)["car_t_peak_cells_per_ul_blood"]
    )
