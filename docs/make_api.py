"""Write docs/api.md from the docstrings of cart-sim's public Python API.

Run ``python docs/make_api.py``; ``tests/test_docs.py`` fails when the page is stale, so
the page and the code cannot drift apart. (A few lines of ``inspect`` rather than an API
doc generator: pdoc and mkdocstrings write HTML sites, and a Markdown page reads on GitHub
and in the terminal.)
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

PAGE = Path(__file__).with_name("api.md")

#: Module -> the names a user calls, in reading order.
API = {
    "sim.scenario": ("load_scenario", "Scenario", "json_schema", "with_param_set"),
    "sim.model": ("Simulation", "Result"),
    "sim.workflows.cohort": ("run_cohort", "CohortResult", "summarize_cohort", "trajectories_long"),
    "sim.workflows.compare": ("run_comparison", "Comparison", "paired_differences", "arm_table"),
    "sim.workflows.validate": ("run_validation", "reported_metrics", "summary_counts"),
    "sim.workflows.vpc": ("read_observed", "bands", "coverage"),
    "sim.export": ("nonmem_dataset",),
    "sim.workflows.survival": ("kaplan_meier", "median_summary"),
    "sim.workflows.sweep": ("Sweep", "run_sweep", "sobol_indices"),
    "sim.workflows.screen": ("Screen", "rank"),
    "sim.workflows.calibrate": ("run_calibration", "load_param_set"),
    "sim.workflows.emulate": ("run_fit", "EmulatorSpec"),
    "sim.workflows.emulator_check": ("check", "check_fit"),
    "sim.workflows.constraints": ("Constraint", "outcome_rule"),
    "sim.workflows.posterior": ("parameter_draws", "ship"),
    "sim.outcomes": ("Outcome", "rules"),
    "sim.params": ("Param", "defaults", "resolve"),
    "sim.verify.mesa_model": ("CarTModel", "CellGroup"),
}


def _signature(obj) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"


def _entry(module: str, name: str, obj) -> list[str]:
    fields = getattr(obj, "model_fields", None)  # a pydantic model: its fields say more than its signature
    if fields is not None:
        head = f"class {name}(pydantic.BaseModel)"
    else:
        head = f"{'class' if inspect.isclass(obj) else 'def'} {name}{_signature(obj)}"
    lines = [f"### `{module}.{name}`", "", "```python", head, "```", ""]
    lines += [inspect.getdoc(obj) or "(no docstring)", ""]
    if fields is not None:
        for field, info in fields.items():
            kind = getattr(info.annotation, "__name__", None) or str(info.annotation).replace("typing.", "")
            lines.append(f"- `{field}` ({kind})" + (f": {info.description}" if info.description else ""))
        lines.append("")
    if inspect.isclass(obj):
        for meth, member in vars(obj).items():
            if meth.startswith("_") or not callable(member) or not inspect.getdoc(member):
                continue
            first = inspect.getdoc(member).splitlines()[0]
            lines.append(f"- `{meth}{_signature(member)}`: {first}")
        lines.append("")
    return lines


def render() -> str:
    """The whole page."""
    lines = [
        "# cart-sim Python API",
        "",
        "Generated from the docstrings by `python docs/make_api.py`; do not edit by hand. The user guide",
        "(`docs/user-guide.md`) shows these in use, and `docs/example.py` is a notebook that runs them.",
        "",
    ]
    for module, names in API.items():
        mod = importlib.import_module(module)
        summary = (inspect.getdoc(mod) or "").split("\n\n")[0].replace("\n", " ")
        lines += [f"## `{module}`", "", summary, ""]
        for name in names:
            lines += _entry(module, name, getattr(mod, name))
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    PAGE.write_text(render())
    print(f"wrote {PAGE}")
