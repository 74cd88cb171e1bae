"""cart-sim as a Mesa model: ``step()`` advances the numba core by one dt.

The agents stay in the core's struct-of-arrays frames (no Python object per cell); Mesa
sees one model with model-level reporters that work with ``mesa.DataCollector`` and
``mesa.batch_run``.

Example:
    >>> import mesa
    >>> from sim.mesa_model import CarTModel
    >>> model = CarTModel("scenarios/cll1_standard.yaml", **{"horizon_days": 1})
    >>> for _ in range(24):
    ...     model.step()
    >>> frame = model.datacollector.get_model_vars_dataframe()
    >>> list(frame.columns)
    ['day', 'blasts', 'car_t', 'anc_1e9_per_l', 'il6_pg_per_ml', 'crs_grade']
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mesa

from sim.core.common import PB
from sim.core.cytokines import IL6
from sim.model import Simulation
from sim.scenario import load_scenario

REPORTERS = {
    "day": lambda m: m.sim.t_day,
    "blasts": lambda m: float(m.sim.bl_obs[:, 0].sum()),
    "car_t": lambda m: float(m.sim.car_obs.sum()),
    "anc_1e9_per_l": lambda m: m.sim.anc(),
    "il6_pg_per_ml": lambda m: float(m.sim.cyt[PB, IL6]),
    "crs_grade": lambda m: m.sim.clinic.state.crs_now,
}


class CarTModel(mesa.Model):
    """One virtual patient as a ``mesa.Model``.

    Args:
        scenario: Scenario YAML path.
        patient: Index of the virtual patient.
        rng: Seed for the scenario (replaces the scenario's ``seed``); Mesa's own
            generator is seeded with it too.
        **overrides: Scenario values by dotted path, e.g.
            ``**{"product.dose_cells_per_kg": 3e6}`` (what ``mesa.batch_run`` passes).
    """

    def __init__(
        self, scenario: str | Path = "scenarios/cll1_standard.yaml", patient: int = 0, rng: int | None = None, **overrides: Any
    ):
        super().__init__(rng=rng)
        sets = [f"{k}={v}" for k, v in overrides.items()]
        if rng is not None:
            sets.append(f"seed={int(rng)}")
        self.scenario = load_scenario(scenario, sets)
        self.sim = Simulation(self.scenario, patient_index=patient)
        self.sim.recorder.record(self.sim.t_day)
        self.datacollector = mesa.DataCollector(model_reporters=REPORTERS)
        self.datacollector.collect(self)

    def step(self) -> None:
        """Advance one dt (all eight phases), then collect the reporters."""
        self.sim.step()
        self.datacollector.collect(self)
        if self.sim.step_index >= self.sim.n_steps or self.sim.clinic.state.death_day is not None:
            self.running = False
