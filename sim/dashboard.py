"""The ``cart-sim dashboard`` page: one virtual patient in Mesa's SolaraViz.

Run it with ``cart-sim dashboard`` (or ``solara run sim/dashboard.py``). The sidebar picks
a scenario from the scenario folder (``$CART_SIM_SCENARIOS``, default ``./scenarios``),
the dose, the CAR's target antigen, the iCAR strength and the seed; *Reset* builds the
model from them, *Step* advances one day (a Mesa step of this page is a day of core steps)
and the play button runs the patient through. The curves are the model reporters of
:class:`sim.verify.mesa_model.CarTModel`'s DataCollector, drawn over days.

Choices: "as in scenario" keeps the scenario's own dose or CAR; another antigen makes the
CAR a single-target CAR on it. I_max applies only to scenarios that carry an iCAR (none
is added to the others); an iCAR on the new CAR antigen itself is dropped (the schema
forbids it: it would veto every kill).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import solara
from matplotlib import ticker
from matplotlib.figure import Figure
from mesa.visualization import SolaraViz
from mesa.visualization.utils import update_counter

from sim.antigens import default_atlas
from sim.errors import UserError
from sim.params import PARAMETERS
from sim.scenario import load_scenario
from sim.verify.mesa_model import CarTModel

AS_SCENARIO = "as in scenario"
DOSES = ["1e5", "3e5", "1e6", "3e6", "1e7"]

#: Reporter -> (axis label, log scale, colour).
CURVES = {
    "car_t": ("CAR T cells", True, "tab:blue"),
    "blasts": ("blasts (cells)", True, "tab:red"),
    "anc_1e9_per_l": ("ANC (10^9/L)", False, "tab:green"),
    "il6_pg_per_ml": ("IL-6 (pg/mL)", True, "tab:purple"),
}


def scenario_dir() -> Path:
    """The folder whose scenarios the page offers: ``$CART_SIM_SCENARIOS`` or ``./scenarios``."""
    return Path(os.environ.get("CART_SIM_SCENARIOS", "scenarios"))


@lru_cache
def scenario_names() -> list[str]:
    """Scenario files under :func:`scenario_dir`, relative and without ``.yaml`` (sweeps and other specs fail validation)."""
    folder = scenario_dir()
    names = []
    for path in sorted(folder.rglob("*.yaml")):
        try:
            load_scenario(path)
        except UserError:
            continue
        names.append(path.relative_to(folder).with_suffix("").as_posix())
    return names


def default_scenario() -> str:
    """``cll1_standard`` where the folder has it, else its first scenario."""
    names = scenario_names()
    return "cll1_standard" if "cll1_standard" in names or not names else names[0]


def scenario_overrides(path: Path, dose: str, antigen: str, imax: float) -> dict[str, object]:
    """The dashboard's inputs as ``CarTModel`` overrides of the scenario at ``path`` (see the module's docstring)."""
    icar = load_scenario(path).product.icar
    overrides: dict[str, object] = {}
    if dose != AS_SCENARIO:
        overrides["product.dose_cells_per_kg"] = float(dose)
    if antigen != AS_SCENARIO:
        overrides["product.car"] = f"{{antigens: [{antigen}], logic: single}}"
    if icar is not None and antigen == icar.antigen:
        overrides["product.icar"] = "null"
    elif icar is not None:
        overrides["product.icar.imax"] = float(imax)
    return overrides


class DashboardModel(CarTModel):
    """:class:`CarTModel` built from the dashboard's inputs (patient 0 of the scenario); a step is one day.

    Args:
        scenario: Scenario name under :func:`scenario_dir`, e.g. ``cll1_standard``.
        dose: CAR+ cells/kg (``"1e6"``), or ``"as in scenario"``.
        antigen: Target of a single-target CAR, or ``"as in scenario"``.
        imax: The iCAR's maximal inhibition, for scenarios with an iCAR.
        seed: Seed of the patient draw and of the simulation.
    """

    def __init__(
        self,
        scenario: str = "cll1_standard",
        dose: str = AS_SCENARIO,
        antigen: str = AS_SCENARIO,
        imax: float = PARAMETERS["icar_imax"].value,
        seed: int = 0,
    ):
        path = scenario_dir() / f"{scenario}.yaml"
        super().__init__(path, patient=0, rng=int(seed), **scenario_overrides(path, dose, antigen, imax))
        self.steps_per_day = max(1, round(24 / self.scenario.dt_hours))

    def step(self) -> None:
        """Advance one day: ``24 / dt_hours`` steps of :class:`CarTModel`, each collected."""
        for _ in range(self.steps_per_day):
            super().step()
            if not self.running:
                break


def model_params() -> dict[str, dict]:
    """The sidebar inputs, in SolaraViz's ``model_params`` form."""
    return {
        "scenario": {"type": "Select", "label": "Scenario", "value": default_scenario(), "values": scenario_names()},
        "dose": {"type": "Select", "label": "Dose (CAR+ cells/kg)", "value": AS_SCENARIO, "values": [AS_SCENARIO, *DOSES]},
        "antigen": {
            "type": "Select",
            "label": "CAR target antigen",
            "value": AS_SCENARIO,
            "values": [AS_SCENARIO, *default_atlas().names],
        },
        "imax": {
            "type": "SliderFloat",
            "label": "iCAR I_max (scenarios with an iCAR)",
            "value": PARAMETERS["icar_imax"].value,
            "min": 0.0,
            "max": 1.0,
            "step": 0.05,
        },
        "seed": {"type": "SliderInt", "label": "Seed", "value": 0, "min": 0, "max": 999, "step": 1},
    }


@solara.component
def Curve(model: CarTModel, measure: str):
    """One reporter of the model's DataCollector over days (positive values only on a log axis)."""
    update_counter.get()  # redraw after every step or reset
    label, log, colour = CURVES[measure]
    frame = model.datacollector.get_model_vars_dataframe()
    y = frame[measure].to_numpy(float)
    fig = Figure(figsize=(5, 3), layout="constrained")
    ax = fig.subplots()
    if log:
        y = np.where(y > 0, y, np.nan)
        log_axis(ax, y)
    days = frame["day"].to_numpy(float)
    ax.plot(days, y, color=colour, linewidth=2)
    ax.set(xlabel="day", ylabel=label, title=f"{label}, day {model.sim.t_day:.1f}", xlim=(days[0], max(days[-1], days[0] + 1)))
    solara.FigureMatplotlib(fig, format="png")


def log_axis(ax, y: np.ndarray) -> None:
    """A log y axis labelled in plain numbers, its minor ticks too where the curve spans less than a decade."""
    ax.set_yscale("log")
    plain = ticker.FuncFormatter(lambda v, _: f"{v:.3g}")
    ax.yaxis.set_major_formatter(plain)
    shown = y[np.isfinite(y)]
    ax.yaxis.set_minor_formatter(plain if shown.size and shown.max() < 10 * shown.min() else ticker.NullFormatter())


def curve(measure: str):
    """A SolaraViz component drawing ``measure``."""
    return lambda model: Curve(model, measure)


@solara.component
def Page():
    """The dashboard: a model per browser session, four curves, the inputs of :func:`model_params`."""
    model = solara.use_memo(lambda: DashboardModel(default_scenario()), dependencies=[])
    return SolaraViz(
        model,
        components=[curve(m) for m in CURVES],
        model_params=model_params(),
        name="cart-sim: one virtual patient",
    )
