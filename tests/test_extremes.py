"""Extremes finish with bounded agents and sensible outputs; results converge as dt shrinks."""

import numpy as np
import pytest

from sim.model import Simulation
from tests.conftest import scenario

RES = ("resolution.car_t_agents=200", "resolution.blast_agents=200")


@pytest.mark.parametrize(
    "overrides",
    [
        ("product.dose_cells_per_kg=1",),
        ("product.dose_cells_per_kg=1e9",),
        ("patient.bm_blast_fraction=0",),
        ("patient.bm_blast_fraction=0.95",),
        ("dt_hours=0.1", "horizon_days=3"),
        ("dt_hours=6",),
    ],
    ids=["dose-1-per-kg", "dose-1e9-per-kg", "no-leukemia", "marrow-full", "dt-0.1h", "dt-6h"],
)
def test_extremes_finish_with_bounded_agents(overrides):
    sim = Simulation(scenario("cll1_standard", *RES, *overrides))
    r = sim.run()
    # bounded by the resolution (200), not by dose or burden: merge threshold + one step of spawns
    assert sim.car_t.n <= 200 + 200 // 8 + 18 and sim.blasts.n <= 200 + 200 // 8 + 3 * sim.n_blast_classes + 200 // 10 + 1
    ts = r.timeseries.select_dtypes("number")
    assert np.isfinite(ts.to_numpy()).all() and (ts.drop(columns="t_days").to_numpy() >= 0).all()
    assert 0 <= r.summary["bm_blast_percent_day28"] <= 100


def test_no_leukemia_means_no_blasts_ever():
    r = Simulation(scenario("cll1_standard", *RES, "patient.bm_blast_fraction=0", "horizon_days=5")).run()
    assert r.timeseries.blasts.max() == 0


def test_one_year_at_coarse_step_finishes():
    sim = Simulation(scenario("cll1_standard", *RES, "horizon_days=365", "dt_hours=6"))
    r = sim.run()
    assert r.summary["os_days"] <= 365


@pytest.mark.slow
def test_outputs_converge_as_dt_shrinks():
    """Key outputs at dt = 1 h and 0.5 h are closer to dt = 0.25 h than dt = 2 h is.

    Measured on the mean of 2 replicates at resolution 300 with interventions off (the
    grade switches are discontinuous): log10 CAR T peak, log10 blasts on day 14 and
    the ANC nadir time. The step error is first order, so the distance must shrink.
    """

    def outputs(dt):
        vals = []
        for rep in range(2):
            sc = scenario(
                "cll1_standard",
                f"dt_hours={dt}",
                "resolution.car_t_agents=300",
                "resolution.blast_agents=300",
                "interventions.tocilizumab_at_crs_grade=null",
                "interventions.steroids_at_crs_grade=null",
                "interventions.steroids_at_icans_grade=null",
            )
            s = Simulation(sc, replicate=rep).run()
            ts, summ = s.timeseries, s.summary
            b14 = ts[np.isclose(ts.t_days, 14)].blasts.sum()
            vals.append([np.log10(summ["car_t_peak_cells_per_ul_blood"]), np.log10(b14 + 1), summ["anc_nadir_day"] / 10])
        return np.mean(vals, axis=0)

    ref = outputs(0.25)
    err = {dt: np.abs(outputs(dt) - ref).max() for dt in (2.0, 1.0)}
    assert err[1.0] < err[2.0], err
    assert err[1.0] < 0.15, err
