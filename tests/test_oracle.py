"""The agent model's mean against the mean-field ODE oracle (same patient, same setup).

Statistic: at days 1, 3, 5, 7, 10, 14, 21 and 28, |log10(mean of agent replicates /
oracle)| for total CAR T, total blasts, ANC (where the oracle ANC >= 0.05e9/L) and blood
IL-6. Tolerance: median <= 0.03 and max <= 0.12 decades. Why: the agent model advances
the same rates in fixed 1-hour steps with operator splitting, a first-order error of
order rate x dt that compounds in geometric growth; pre-infusion and plateau phases agree
to ~3%, while steep transitions (blasts falling 10-fold a day at the peak) shift by a
few hours, which is up to ~0.1 decade at a fixed time. Stochastic error is small at this
resolution (replicate spread < 0.02 decade). Halving dt must shrink the disagreement.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.model import Simulation
from sim.params import PARAMETERS
from sim.verify.oracle import MeanField
from tests.conftest import scenario

CHECK_DAYS = (1, 3, 5, 7, 10, 14, 21, 28)


def oracle_setup(dt_hours: float, *sets: str, resolution: int = 500):
    return scenario(
        "cll1_standard",
        f"dt_hours={dt_hours}",
        "outputs.record_every_hours=6",
        "params.antigen_noise_sd=0",
        "params.antigen_loss_per_division=0",
        "interventions.tocilizumab_at_crs_grade=null",
        "interventions.steroids_at_crs_grade=null",
        "interventions.steroids_at_icans_grade=null",
        f"resolution.car_t_agents={resolution}",
        f"resolution.blast_agents={resolution}",
        # the oracle has no clinic: keep the CRS index far below grade 5, which would end the agent run
        "params.il6_ref_pg_per_ml=1e9",
        "params.ifng_ref_pg_per_ml=1e9",
        *sets,
    )


def agent_mean(sc, replicates: int):
    rows = []
    for r in range(replicates):
        ts = Simulation(sc, 0, replicate=r).run().timeseries
        g = ts.groupby("t_days")
        car = g.car_t_memory.sum() + g.car_t_effector.sum() + g.car_t_exhausted.sum()
        pb = ts[ts.compartment == "pb"].set_index("t_days")
        rows.append(
            np.c_[
                car.to_numpy(),
                g.blasts.sum().to_numpy(),
                pb.anc_1e9_per_l.to_numpy(),
                pb.il6_pg_per_ml.to_numpy(),
                pb.platelets_1e9_per_l.to_numpy(),
            ]
        )
    return np.array(sorted(ts.t_days.unique())), np.mean(rows, axis=0)


def log_errors(sc, replicates=4):
    t, agents = agent_mean(sc, replicates)
    ode = MeanField(Simulation(sc, 0)).solve()
    errs = []
    for d in CHECK_DAYS:
        a = agents[np.argmin(abs(t - d))]
        o = ode.iloc[int(np.argmin(abs(ode.t_days.to_numpy() - d)))]
        pairs = [(a[0], o.car_t_total), (a[1], o.blasts_total), (a[3], o.il6_pb_pg_per_ml), (a[4], o.platelets_1e9_per_l)]
        if o.anc_1e9_per_l >= 0.05:
            pairs.append((a[2], o.anc_1e9_per_l))
        errs += [abs(np.log10(x / y)) for x, y in pairs]
    return np.array(errs)


@pytest.mark.slow
def test_agent_mean_matches_ode_oracle_and_converges_in_dt():
    e1 = log_errors(oracle_setup(1.0))
    assert np.median(e1) <= 0.03, e1
    assert e1.max() <= 0.12, e1
    e_half = log_errors(oracle_setup(0.5), replicates=2)
    assert np.mean(e_half) < np.mean(e1), (np.mean(e_half), np.mean(e1))


DRAWN = (
    "car_t_max_division_per_h",
    "kill_per_activation",
    "aicd_per_engagement",
    "stim_half_sat_per_h",
    "il6_max_pg_per_ml",
    "bystander_per_kill",
)


@pytest.mark.slow
@settings(max_examples=3, deadline=None, derandomize=True)
@given(st.tuples(*(st.floats(0.0, 1.0) for _ in DRAWN)))
def test_agent_mean_matches_ode_oracle_at_drawn_parameters(u):
    """The same agreement at parameters drawn log-uniformly within their priors (uniformly for a
    prior that starts at 0). Tolerance: median <= 0.05 and max <= 0.2 decades, wider than at the
    defaults because a drawn set can make the expansion and the blast fall twice as steep, and the
    splitting error grows with rate x dt (see the module docstring). Derandomized: the same three
    sets on every run."""
    sets = []
    for name, x in zip(DRAWN, u, strict=True):
        lo, hi = PARAMETERS[name].prior
        value = lo + x * (hi - lo) if lo <= 0 else lo * (hi / lo) ** x
        sets.append(f"params.{name}={value}")
    e = log_errors(oracle_setup(1.0, *sets))
    assert np.median(e) <= 0.05, (sets, e)
    assert e.max() <= 0.2, (sets, e)
