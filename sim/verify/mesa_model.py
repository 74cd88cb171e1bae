"""cart-sim as a Mesa model: ``step()`` advances the numba core by one dt.

The agents live in the core's struct-of-arrays frames (no Python object per cell). After
each step Mesa sees them as ``CellGroup`` agents, one per super-individual (a CAR T or blast
agent, or a myeloid lineage class), with the compartment, class and cells it stands for, so
``mesa.DataCollector`` agent reporters and Solara views work; model-level reporters work
with ``mesa.batch_run``.

Example:
    >>> import mesa
    >>> from sim.verify.mesa_model import CarTModel
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

from sim.antigens import Stage
from sim.core.car_t import EFFECTOR, EXHAUSTED, MEMORY
from sim.core.common import COMP_NAMES, PB
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


#: The class names of each kind of super-individual.
CLASS_NAMES = {
    "car_t": {MEMORY: "memory", EFFECTOR: "effector", EXHAUSTED: "exhausted"},
    "myeloid": {s.value: s.name.lower() for s in Stage},
}
AGENT_REPORTERS = {"kind": "kind", "compartment": "compartment", "cls": "cls", "cells": "cells"}


class CellGroup(mesa.Agent):
    """A super-individual of the core as Mesa sees it (rebuilt every step: the core splits and merges them).

    Attributes:
        kind: ``car_t``, ``blast`` or ``myeloid``.
        compartment: ``bm``, ``pb`` or ``emd``.
        cls: CAR T phenotype, blast clone (``main`` or ``<antigen>-negative``) or myeloid stage.
        cells: The real cells it stands for.
    """

    def __init__(self, model: mesa.Model, kind: str, compartment: str, cls: str, cells: float):
        super().__init__(model)
        self.kind, self.compartment, self.cls, self.cells = kind, compartment, cls, cells


def blast_class_name(sim: Simulation, cls: int) -> str:
    """``main`` or ``<antigen>-negative`` (class 1 + k lacks antigen k)."""
    return "main" if cls == 0 else f"{sim.atlas.names[cls - 1]}-negative"


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
        self.sync_agents()
        self.datacollector = mesa.DataCollector(model_reporters=REPORTERS, agent_reporters=AGENT_REPORTERS)
        self.datacollector.collect(self)

    def sync_agents(self) -> None:
        """Replace the Mesa agents by the core's current super-individuals (live ones only)."""
        for agent in list(self.agents):
            agent.remove()
        sim = self.sim
        for kind, frame in (("car_t", sim.car_t), ("blast", sim.blasts), ("myeloid", sim.myeloid)):
            for i in range(frame.n):
                if frame.w[i] <= 0.0:
                    continue
                c = int(frame.cls[i])
                cls = blast_class_name(sim, c) if kind == "blast" else CLASS_NAMES[kind][c]
                CellGroup(self, kind, COMP_NAMES[int(frame.comp[i])], cls, float(frame.w[i]))

    def step(self) -> None:
        """Advance one dt (all eight phases), show the core's agents to Mesa, then collect the reporters."""
        self.sim.step()
        self.sync_agents()
        self.datacollector.collect(self)
        if self.sim.step_index >= self.sim.n_steps or self.sim.clinic.state.death_day is not None:
            self.running = False
