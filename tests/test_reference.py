"""The pure-Mesa reference (one agent per cell) against the core at weight 1.

Both run the same small virtual patient (0.3 g of body: ~3e3 marrow cells, 30 CAR T
cells, the concentrations of a patient) to day 10, with independent streams per
replicate. The core's super-individuals, binomial draws, split/merge and spawning must
not change the outcome distribution of the per-cell rules.

Statistic: for each of six outcomes, Welch's t-test and the two-sample KS test on 24
replicates per model; each must give p > 0.001 (6 outcomes x 2 tests: a false alarm in
about 1% of seeds; the seeds are fixed, so the test is deterministic). Power: with the
replicate spread measured while building (sd 0.05 decade for the CAR T peak, 0.07 for the
IL-6 peak, ~15% for myeloid kills), shifts of ~0.06 decade in the peaks and ~20% in kills
are detected.
"""

import mesa
import numpy as np
import pytest
from scipy.stats import ks_2samp, ttest_ind

from sim.model import Simulation
from sim.verify.reference import ReferenceModel
from tests.conftest import scenario

N_REPLICATES = 24
SMALL = (
    "horizon_days=10",
    "patient.weight_kg=3e-7",
    "product.dose_cells_per_kg=1e8",
    "resolution.car_t_agents=100000",  # above every cell count: core agents are single cells
    "resolution.blast_agents=100000",
)


def outcomes(result) -> dict:
    s, ts = result.summary, result.timeseries
    day2 = ts[np.isclose(ts.t_days, 2.0)]
    return {
        "log10_car_t_peak": np.log10(s["car_t_peak_cells_per_ul_blood"]),
        "car_t_tmax_days": s["car_t_tmax_days"],
        "log10_il6_peak": np.log10(s["il6_peak_pg_per_ml"]),
        "log10_blasts_day2": np.log10(1.0 + day2.blasts.sum()),
        "days_anc_below_0_5": s["days_anc_below_0_5"],
        "myeloid_killed": sum(s["myeloid_killed"].values()),
    }


@pytest.mark.slow
def test_reference_and_core_at_weight_one_agree_in_distribution():
    sc = scenario("cll1_standard", *SMALL)
    ref = [outcomes(ReferenceModel(sc, rng=1000 + k).run()) for k in range(N_REPLICATES)]
    core = [outcomes(Simulation(sc, replicate=1 + k).run()) for k in range(N_REPLICATES)]
    for key in ref[0]:
        a, b = np.array([r[key] for r in ref]), np.array([c[key] for c in core])
        assert a.std() + b.std() > 0, key  # a constant outcome would test nothing
        p_t = ttest_ind(a, b, equal_var=False).pvalue
        p_ks = ks_2samp(a, b).pvalue
        assert p_t > 1e-3 and p_ks > 1e-3, f"{key}: reference {a.mean():.4g}±{a.std():.2g}, core {b.mean():.4g}±{b.std():.2g}"


def test_reference_is_one_mesa_agent_per_cell():
    sc = scenario("cll1_standard", *SMALL[1:], "horizon_days=1")
    model = ReferenceModel(sc, rng=3)
    host = model.host
    cells = host.myeloid.w[:9].sum() + host.blasts.total()
    assert isinstance(model, mesa.Model) and len(model.agents) == cells
    model.run()  # infusion on day 0 adds one agent per CAR T cell
    car_t = sum(1 for a in model.agents if type(a).__name__ == "CarTCell")
    assert car_t == host.car_obs.sum() > 0
