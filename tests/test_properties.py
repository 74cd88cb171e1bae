"""Property tests: random valid scenarios never crash or produce impossible numbers;
random invalid ones always give a validation error, never a crash."""

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.errors import UserError
from sim.model import Simulation
from sim.scenario import Scenario, apply_overrides, read_yaml_mapping, validate
from tests.conftest import SCENARIOS

BASE = read_yaml_mapping(SCENARIOS / "cll1_standard.yaml")
ANTIGENS = ["CLL1", "CD33", "CD123", "CD19", "IL1RAP", "CD16", "CD15", "CD64", "CD70"]

valid = st.fixed_dictionaries(
    {
        "product.dose_cells_per_kg": st.floats(1.0, 1e9),
        "product.car.antigens": st.sampled_from(ANTIGENS).map(lambda a: [a]),
        "product.costimulation": st.sampled_from(["4-1BB", "CD28", "CD28_SAVVY"]),
        "product.armoring": st.sampled_from(["none", "IL-18"]),
        "patient.bm_blast_fraction": st.floats(0.0, 0.95),
        "dt_hours": st.sampled_from([0.5, 1.0, 2.0, 6.0]),
        "horizon_days": st.floats(0.5, 6.0),
        "patient.emd_probability": st.sampled_from([0.0, 1.0]),
        "lymphodepletion.enabled": st.booleans(),
    }
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid, st.integers(0, 1000))
def test_random_valid_scenarios_give_sane_numbers(values, seed):
    sets = [f"{k}={v}" for k, v in values.items()]
    sets += [f"seed={seed}", "resolution.car_t_agents=40", "resolution.blast_agents=40"]
    sc = validate(apply_overrides(BASE, sets), "hypothesis")
    r = Simulation(sc).run()
    ts = r.timeseries.select_dtypes("number")
    assert np.isfinite(ts.to_numpy()).all()
    assert (ts.drop(columns=["t_days"]).to_numpy() >= 0).all()
    s = r.summary
    assert 0.0 <= s["bm_blast_percent_day28"] <= 100.0
    assert s["anc_nadir_1e9_per_l"] >= 0 and 0 <= s["crs_grade"] <= 5 and 0 <= s["icans_grade"] <= 4
    assert all(not (isinstance(v, float) and math.isnan(v)) for v in s.values() if not isinstance(v, (dict, list)))


bad_values = st.one_of(
    st.just(float("nan")),
    st.just(float("inf")),
    st.just(-1.0),
    st.just("text"),
    st.just([1, 2]),
    st.just({"x": 1}),
    st.just(None),
)
bad_keys = st.sampled_from(
    [
        "product.dose_cells_per_kg",
        "horizon_days",
        "dt_hours",
        "patient.weight_kg",
        "product.car.antigens",
        "product.memory_fraction",
        "resolution.blast_agents",
        "product.costimulation",
        "patient.emd_probability",
        "lymphodepletion.days",
        "seed",
    ]
)


@settings(max_examples=80, deadline=None)
@given(bad_keys, bad_values)
def test_random_invalid_values_give_a_validation_error(key, value):
    data = apply_overrides(BASE, [])
    node = data
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    try:
        validate(data, "hypothesis.yaml")
    except UserError as e:
        assert str(e).startswith("hypothesis.yaml: ")
        return
    # a few values are legitimately valid (e.g. None for an optional key); then it must build
    assert isinstance(validate(data, "hypothesis.yaml"), Scenario)


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=30).filter(lambda s: s not in Scenario.model_fields and "." not in s))
def test_unknown_top_level_keys_are_refused(key):
    data = dict(BASE)
    data[key] = 1
    try:
        validate(data, "f.yaml")
    except UserError as e:
        assert "no such key" in str(e) or "expected" in str(e)
    else:
        raise AssertionError(f"unknown key {key!r} accepted")
