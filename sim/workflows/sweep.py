"""Parameter sweeps: a spec names a base scenario, the values to vary and the metrics.

A point is the base scenario with some dotted paths set; every point runs the same
virtual patients 0..N-1 of the base scenario's seed (common random numbers), so the
differences between points are the parameters, not the draw of patients. Designs:
``grid`` (every combination), ``lhs`` (Latin hypercube) and ``sobol`` (Saltelli's
sampling, analysed with SALib for first-order and total indices).

Every point is validated before any work starts. Each finished point is written
atomically to ``DIR/points/``; rerunning the same command skips finished points, and a
different spec in the same folder is refused.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sim.errors import SpecKeyError, UserError, did_you_mean, spec_error
from sim.scenario import Scenario, load_base, read_yaml_mapping, related_paths, set_path, validate, yaml_number
from sim.workflows.cohort import CONTINUOUS, OUTCOMES, patients_frame, run_chunk, wilson

MEDIAN_PREFIX = "median_"


def known_metrics() -> list[str]:
    """Metric names a spec may ask for: cohort rates and medians of continuous readouts."""
    return list(OUTCOMES) + [MEDIAN_PREFIX + c for c in CONTINUOUS]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Axis(_Strict):
    """One varied path: a list of ``values``, or a ``range`` with a ``scale`` (and ``n`` for grids)."""

    values: list[float | int | str | bool] | None = Field(None, min_length=1)
    range: tuple[float, float] | None = None
    scale: Literal["linear", "log"] = "linear"
    n: int | None = Field(None, ge=2, le=1000)

    @field_validator("values", mode="before")
    @classmethod
    def _numbers(cls, v):
        # YAML 1.1 reads 1e6 (no dot) as a string: keep numbers numbers
        return [yaml_number(x) for x in v] if isinstance(v, list) else v

    @model_validator(mode="after")
    def _one_kind(self) -> Axis:
        if (self.values is None) == (self.range is None):
            raise ValueError("either values: [..] or range: [low, high]")
        if self.range is not None:
            lo, hi = self.range
            if lo >= hi:
                raise ValueError("a range [low, high] with low < high")
            if self.scale == "log" and lo <= 0:
                raise ValueError("a log-scale range with low > 0")
        return self

    def grid_values(self) -> list:
        """The values of this axis on a grid."""
        if self.values is not None:
            return list(self.values)
        lo, hi = self.range
        if self.scale == "log":
            return [float(v) for v in np.geomspace(lo, hi, self.n)]
        return [float(v) for v in np.linspace(lo, hi, self.n)]

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        """Map samples on [0, 1] onto the range (uniform in log for a log scale)."""
        lo, hi = self.range
        if self.scale == "log":
            return 10 ** (math.log10(lo) + u * (math.log10(hi) - math.log10(lo)))
        return lo + u * (hi - lo)


class Bound(_Strict):
    """A therapeutic-window condition on one metric."""

    min: float | None = None
    max: float | None = None

    def describe(self, metric: str) -> str:
        """The condition in words, e.g. ``cr_cri_mlfs >= 0.6``."""
        parts = [f"{metric} >= {self.min:g}"] if self.min is not None else []
        parts += [f"{metric} <= {self.max:g}"] if self.max is not None else []
        return " and ".join(parts) or f"{metric} (no bound)"

    def holds(self, x: float) -> bool:
        """Whether ``x`` satisfies the condition (NaN never does)."""
        if x is None or not math.isfinite(x):
            return False
        return (self.min is None or x >= self.min) and (self.max is None or x <= self.max)


class SweepSpec(_Strict):
    """A sweep: base scenario, design, varied paths, patients per point and metrics."""

    name: str = Field(min_length=1)
    description: str = ""
    base: str = Field(description="base scenario YAML, relative to the spec file")
    set: dict = Field({}, description="dotted paths set at every point")
    design: Literal["grid", "lhs", "sobol"] = "grid"
    samples: int | None = Field(None, ge=2, le=100_000, description="lhs: points; sobol: base sample N (a power of 2)")
    seed: int = Field(0, ge=0, description="seed of the lhs/sobol design and of the Sobol bootstrap")
    n_patients: int = Field(ge=1, le=100_000)
    parameters: dict[str, Axis] = Field(min_length=1)
    metrics: list[str] = Field(min_length=1)
    window: dict[str, Bound] = {}

    @model_validator(mode="after")
    def _consistent(self) -> SweepSpec:
        for m in self.metrics:
            if m not in known_metrics():
                raise SpecKeyError("metrics", m, "a metric name" + did_you_mean(m, known_metrics()))
        for m in self.window:
            if m not in self.metrics:
                raise SpecKeyError(f"window.{m}", m, f"a metric listed under metrics ({', '.join(self.metrics)})")
        if self.design != "grid" and self.samples is None:
            raise SpecKeyError("samples", None, f"the number of samples of the {self.design} design")
        if self.design == "sobol" and self.samples & (self.samples - 1):
            raise SpecKeyError("samples", self.samples, "a power of 2 (Saltelli/Sobol sequences need it)")
        for path, ax in self.parameters.items():
            if self.design == "grid" and ax.range is not None and ax.n is None:
                raise SpecKeyError(f"parameters.{path}.n", None, "the number of grid values along a range")
            if self.design != "grid" and ax.range is None:
                raise SpecKeyError(f"parameters.{path}", ax.values, f"a numeric range: [low, high] (design {self.design})")
        return self


# --------------------------------------------------------------------------- the design


def design_points(spec: SweepSpec) -> list[dict]:
    """The points of the design, in a fixed order: one ``{path: value}`` per point."""
    paths = list(spec.parameters)
    axes = [spec.parameters[p] for p in paths]
    if spec.design == "grid":
        return [dict(zip(paths, combo, strict=True)) for combo in itertools.product(*(a.grid_values() for a in axes))]
    problem = {"num_vars": len(paths), "names": paths, "bounds": [[0.0, 1.0]] * len(paths)}
    if spec.design == "lhs":
        from SALib.sample import latin

        unit = latin.sample(problem, spec.samples, seed=spec.seed)
    else:
        from SALib.sample import sobol

        unit = sobol.sample(problem, spec.samples, calc_second_order=False, scramble=True, seed=spec.seed)
    cols = [a.from_unit(unit[:, k]) for k, a in enumerate(axes)]
    return [{p: float(cols[k][i]) for k, p in enumerate(paths)} for i in range(unit.shape[0])]


class Sweep:
    """A loaded, fully validated sweep: spec, base data and the scenario of every point."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        raw = read_yaml_mapping(self.path)
        try:
            self.spec = SweepSpec.model_validate(raw)
        except ValidationError as e:
            nested = len(e.errors()[0]["loc"]) > 1
            allowed = [*Axis.model_fields, *Bound.model_fields] if nested else list(SweepSpec.model_fields)
            raise spec_error(e, str(self.path), allowed) from None
        self.base_path, self.base_data = load_base(self.path, self.spec.base, self.spec.set)
        self.base = self._checked(self.base_data, "set", self.spec.set)
        self.points = design_points(self.spec)
        self.scenarios = [self._point_scenario(p) for p in self.points]

    def _point_scenario(self, point: dict) -> Scenario:
        data = copy.deepcopy(self.base_data)
        for path, value in point.items():
            set_path(data, path.split("."), value, source=str(self.path))
        return self._checked(data, "parameters", point)

    def _checked(self, data: dict, section: str, point: dict) -> Scenario:
        try:
            return validate(data, str(self.base_path))
        except UserError as e:
            hit = next((p for p in point if related_paths(p, e.key_path)), None)
            key = f"{section}.{hit}" if hit else e.key_path
            value = point.get(hit, e.value) if hit else e.value
            raise UserError(str(self.path), key, value, f"{e.expected} (at point {point})") from None

    def spec_hash(self) -> str:
        """Identity of the work: every point's resolved scenario, patients and metrics."""
        from sim.io import content_hash

        points = [s.model_dump(mode="json") for s in self.scenarios]
        return content_hash({"points": points, "n": self.spec.n_patients, "metrics": self.spec.metrics})


# --------------------------------------------------------------------------- running


def point_metrics(patients: pd.DataFrame, metrics: list[str]) -> dict:
    """Each metric of one point with its 95% interval (``_lo``/``_hi``).

    Rates carry Wilson intervals; medians carry the distribution-free interval of the
    median from order statistics (``scipy.stats.quantile_test``).
    """
    from scipy.stats import quantile_test

    n = len(patients)
    out: dict[str, float] = {}
    for m in metrics:
        if m in OUTCOMES:
            r = wilson(int(OUTCOMES[m](patients).sum()), n)
            out[m], (out[f"{m}_lo"], out[f"{m}_hi"]) = r["rate"], r["ci95"]
            continue
        x = patients[m.removeprefix(MEDIAN_PREFIX)].dropna().to_numpy(float)
        if len(x) == 0:
            out[m] = out[f"{m}_lo"] = out[f"{m}_hi"] = math.nan
            continue
        ci = quantile_test(x, q=float(np.median(x)), p=0.5).confidence_interval(0.95)
        out[m], out[f"{m}_lo"], out[f"{m}_hi"] = float(np.median(x)), float(ci.low), float(ci.high)
    return out


def run_points(scenario_jsons: list[str], n_patients: int, metrics: list[str]) -> list[dict]:
    """Simulate patients 0..n-1 at each point (a worker's unit of work)."""
    out = []
    for payload in scenario_jsons:
        rows, _ = run_chunk(payload, list(range(n_patients)))
        out.append(point_metrics(patients_frame(rows), metrics))
    return out


def task_groups(n_points: int, n_patients: int, workers: int) -> list[list[int]]:
    """Group points into tasks of at least ~24 patient runs, yet about 4 tasks per worker."""
    per_task = max(1, math.ceil(24 / n_patients))
    per_task = min(per_task, max(1, n_points // max(4 * workers, 1)))
    return [list(range(a, min(a + per_task, n_points))) for a in range(0, n_points, per_task)]


def run_sweep(
    sweep: Sweep,
    points_dir: Path,
    workers: int = 1,
    scheduler: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Run every unfinished point of ``sweep``; return the table of all points.

    Args:
        sweep: The loaded sweep.
        points_dir: Where each finished point is kept (``point_00012.json``).
        workers: Local worker processes (ignored with ``scheduler``).
        scheduler: A Dask scheduler address.
        progress: Called with the number of finished points.

    Returns:
        One row per point, in design order: the point's values and every metric.
    """
    from sim.io import refuse_other_work, write_json
    from sim.parallel import run_tasks

    key = sweep.spec_hash()
    spec_file = points_dir / "spec.json"
    refuse_other_work(
        points_dir.parent, f"{points_dir.name}/{spec_file.name}", key, "the same sweep spec as the one started there"
    )
    done = {i: json.loads(f.read_text()) for i in range(len(sweep.points)) if (f := _point_file(points_dir, i)).exists()}
    if progress:
        progress(len(done))

    def keep(group: tuple[int, ...], results: list[dict]) -> None:
        if not spec_file.exists():  # created with the first finished point: a failed start leaves nothing
            points_dir.mkdir(parents=True, exist_ok=True)
            write_json(spec_file, {"hash": key, "spec": str(sweep.path), "points": len(sweep.points)})
        for i, metrics in zip(group, results, strict=True):
            done[i] = metrics
            write_json(_point_file(points_dir, i), metrics)
        if progress:
            progress(len(done))

    payloads = [s.model_dump_json() for s in sweep.scenarios]
    groups = task_groups(len(sweep.points), sweep.spec.n_patients, workers)
    todo = {}
    for g in groups:
        left = tuple(i for i in g if i not in done)
        if left:
            todo[left] = ([payloads[i] for i in left], sweep.spec.n_patients, sweep.spec.metrics)
    run_tasks(run_points, todo, workers, scheduler, keep)
    return points_table(sweep, done)


def _point_file(points_dir: Path, i: int) -> Path:
    return points_dir / f"point_{i:05d}.json"


def points_table(sweep: Sweep, done: dict[int, dict]) -> pd.DataFrame:
    """One row per point: index, varied values, metrics and intervals, and the window flag."""
    rows = []
    for i, point in enumerate(sweep.points):
        row = {"point": i, **point, "n_patients": sweep.spec.n_patients, **done[i]}
        if sweep.spec.window:
            row["in_window"] = all(b.holds(done[i][m]) for m, b in sweep.spec.window.items())
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- analysis


def sobol_indices(sweep: Sweep, table: pd.DataFrame) -> pd.DataFrame:
    """First-order and total Sobol indices with 95% intervals, per metric (SALib)."""
    from SALib.analyze import sobol

    paths = list(sweep.spec.parameters)
    problem = {"num_vars": len(paths), "names": paths, "bounds": [[0.0, 1.0]] * len(paths)}
    rows = []
    for m in sweep.spec.metrics:
        y = table[m].to_numpy(float)
        if not np.all(np.isfinite(y)) or np.ptp(y) == 0:
            continue  # undefined indices: a constant or undefined metric has no variance to split
        si = sobol.analyze(problem, y, calc_second_order=False, conf_level=0.95, num_resamples=1000, seed=sweep.spec.seed)
        for k, p in enumerate(paths):
            s1, s1c, st, stc = (float(si[f][k]) for f in ("S1", "S1_conf", "ST", "ST_conf"))
            rows.append(
                {
                    "metric": m,
                    "parameter": p,
                    "S1": s1,
                    "S1_lo": s1 - s1c,
                    "S1_hi": s1 + s1c,
                    "ST": st,
                    "ST_lo": st - stc,
                    "ST_hi": st + stc,
                }
            )
    return pd.DataFrame(rows)


def grid_axes(sweep: Sweep) -> tuple[str, str] | None:
    """The two varied paths of a 2-D grid (heatmaps), else ``None``."""
    if sweep.spec.design == "grid" and len(sweep.spec.parameters) == 2:
        a, b = sweep.spec.parameters
        return a, b
    return None
