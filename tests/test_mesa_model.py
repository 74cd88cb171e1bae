"""The Mesa wrapper: DataCollector and batch_run work on it (the README example)."""

import mesa

from sim.verify.mesa_model import CarTModel
from tests.conftest import SCENARIOS

SCN = str(SCENARIOS / "cll1_standard.yaml")


def test_datacollector_records_one_row_per_step():
    model = CarTModel(SCN, **{"horizon_days": 2, "resolution.car_t_agents": 100, "resolution.blast_agents": 100})
    while model.running:
        model.step()
    df = model.datacollector.get_model_vars_dataframe()
    assert len(df) == model.sim.n_steps + 1
    assert df.day.iloc[0] == -5 and abs(df.day.iloc[-1] - 2.0) < 1e-9
    assert (df.car_t.iloc[:100] == 0).all() and df.car_t.iloc[-1] > 0  # infused on day 0


def test_batch_run_over_dose():
    params = {
        "scenario": SCN,
        "horizon_days": 1,
        "resolution.car_t_agents": 50,
        "resolution.blast_agents": 50,
        "product.dose_cells_per_kg": [1e5, 1e7],
    }
    rows = mesa.batch_run(CarTModel, params, iterations=1, max_steps=200, display_progress=False)
    last = {}
    for r in rows:
        last[r["product.dose_cells_per_kg"]] = r
    assert set(last) == {1e5, 1e7}
    assert last[1e7]["car_t"] > 10 * last[1e5]["car_t"]


def test_the_core_agents_are_mesa_agents():
    model = CarTModel("scenarios/cll1_standard.yaml", **{"horizon_days": 1})
    for _ in range(24 * 5 + 12):  # past the infusion on day 0
        model.step()
    kinds = {a.kind for a in model.agents}
    assert kinds == {"car_t", "blast", "myeloid"}
    blasts = sum(a.cells for a in model.agents if a.kind == "blast")
    assert blasts == float(model.sim.blasts.w[: model.sim.blasts.n].sum())  # the same cells, none lost
    assert {a.cls for a in model.agents if a.kind == "car_t"} <= {"memory", "effector", "exhausted"}
    agents = model.datacollector.get_agent_vars_dataframe()
    assert {"kind", "compartment", "cls", "cells"} <= set(agents.columns) and len(agents) > 0
