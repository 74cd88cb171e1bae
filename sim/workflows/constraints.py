"""Behaviours a fitted parameter set must keep: the soft constraints of the emulator fit.

The reported counts are abstract-level responses and CRS grades. They say little about how
long CAR T cells last or whether counts recover, so a fit to them alone moves persistence
wherever responses like it. A constraint names a scenario, a per-patient outcome and the
range its share of patients must lie in, with the source of that range:

1. At every design point each constraint's scenario is simulated with the fitted values and
   ``constraint_patients`` virtual patients (the same ones at every point); the finished
   points are kept in ``OUT/constraints/`` (their own folder: the reported counts' design is
   not rerun when a constraint changes).
2. Each share is emulated as a reported count is (:class:`sim.workflows.emulate.Emulators`).
3. The prior is multiplied by the probability, under the emulator, that every share lies in
   its range: a behaviour prior. Both fitting methods and every left-out fit use it;
   constraints belong to no study, so leaving a study out never drops them.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_COMPARISON = re.compile(r"\s*(\w+)(?:\s*/\s*(\w+))?\s*(<=|>=|<|>)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*")


class Constraint(BaseModel):
    """A behaviour: the share of a scenario's patients with an outcome lies in a range."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    scenario: str = Field(min_length=1, description="scenario file, relative to the spec's scenarios folder")
    set: list[str] = Field([], description="dotted-path overrides of that scenario (`key=value`)")
    outcome: str = Field(
        min_length=1,
        description="a binary outcome of `sim.outcomes` (as named in a cohort's summary.json), or a comparison of a "
        "patients.parquet column or of a ratio of two: `car_t_day28_cells_per_ul_blood < 1`, `anc_recovery_day <= 60` "
        "(a missing value is false)",
    )
    share: tuple[float, float] = Field(description="[lowest, highest] share of patients with the outcome")
    source: str = Field(min_length=1, description="where the range comes from")

    @field_validator("share")
    @classmethod
    def _ordered(cls, share: tuple[float, float]) -> tuple[float, float]:
        if not 0.0 <= share[0] < share[1] <= 1.0:
            raise ValueError(f"{list(share)}: expected 0 <= lowest < highest <= 1")
        return share

    @field_validator("outcome")
    @classmethod
    def _known(cls, outcome: str) -> str:
        outcome_rule(outcome)  # raises ValueError on a bad outcome
        return outcome


def outcome_rule(expr: str) -> Callable[[pd.DataFrame], pd.Series]:
    """The per-patient rule of a constraint outcome (patients table -> bool Series).

    Raises:
        ValueError: Neither a binary outcome nor a comparison.
    """
    from sim.outcomes import BINARY

    if expr in BINARY:
        rule = BINARY[expr].rule
        return lambda d: rule(d).astype(bool)
    m = _COMPARISON.fullmatch(expr)
    if m is None:
        raise ValueError(
            f"outcome {expr!r}: expected a binary outcome name or `column <op> number` (op one of <, <=, >, >=), "
            "where column may be `a / b`"
        )
    (a, b), op, value = _columns(m), _OPS[m.group(3)], float(m.group(4))

    def rule(d: pd.DataFrame) -> pd.Series:
        x = d[a] if b is None else d[a] / d[b]
        return op(x.astype(float), value).fillna(False).astype(bool)

    return rule


def _columns(m: re.Match) -> tuple[str, str | None]:
    """The column (and the divisor's, or None) of a parsed comparison."""
    return m.group(1), m.group(2)


def payload(constraints: dict[str, Constraint], scenario_root: Path, overrides: list[str]) -> list[tuple[str, str]]:
    """Per constraint: the scenario (JSON, with the spec's and the constraint's overrides) and its outcome."""
    from sim.scenario import load_scenario

    return [
        (load_scenario(scenario_root / c.scenario, [*overrides, *c.set]).model_dump_json(), c.outcome)
        for c in constraints.values()
    ]


def check_columns(arms: list[tuple[str, str]], names: list[str], spec_path: str) -> None:
    """Every column a comparison reads is a patients.parquet column (checked on one patient of each scenario).

    Raises:
        UserError: Naming the spec, ``constraints.<name>.outcome``, the column and what was expected.
    """
    from sim.errors import UserError
    from sim.workflows.calibrate import cohort_at

    for name, (js, expr) in zip(names, arms, strict=True):
        m = _COMPARISON.fullmatch(expr)
        if m is None:
            continue
        columns = set(cohort_at(js, {}, 1).columns)
        for column in _columns(m):
            if column is not None and column not in columns:
                raise UserError(spec_path, f"constraints.{name}.outcome", column, "a column of patients.parquet")


def run_point(arms: list[tuple[str, str]], names: list[str], values: list[float], n_patients: int) -> list[int]:
    """Patients with each constraint's outcome (of ``n_patients``) at one design point."""
    from sim.workflows.calibrate import cohort_at

    params = dict(zip(names, values, strict=True))
    return [int(outcome_rule(expr)(cohort_at(js, params, n_patients)).sum()) for js, expr in arms]


def log_prior(mean: np.ndarray, sd: np.ndarray, constraints: dict[str, Constraint]) -> np.ndarray:
    """Per draw: log probability, under the emulated logit share (mean, sd), that every share lies in its range."""
    from scipy.special import logit
    from scipy.stats import norm

    lo, hi = logit(np.array([c.share for c in constraints.values()])).T  # a share of 0 or 1 is -inf or inf
    inside = norm.cdf((hi - mean) / sd) - norm.cdf((lo - mean) / sd)
    return np.log(np.maximum(inside, 1e-300)).sum(axis=1)


def summary(design_shares: np.ndarray, post: tuple, w: np.ndarray, constraints: dict[str, Constraint]) -> list[dict]:
    """Per constraint: its range, the prior's share and the posterior's.

    The prior's: the simulated shares over the design (a Sobol sample of the prior box). The
    posterior's: the emulated share and the probability it lies in range (``post``: the emulated
    logit mean and sd at the weighted draws ``w``).
    """
    from scipy.special import expit

    mean, sd = post
    rows = []
    for j, (name, c) in enumerate(constraints.items()):
        lo, hi = c.share
        inside = np.exp(log_prior(mean[:, [j]], sd[:, [j]], {name: c}))
        share = expit(mean[:, j])
        rows.append({
            "constraint": name, "scenario": c.scenario, "set": c.set, "outcome": c.outcome, "share": [lo, hi],
            "source": c.source,
            "prior_share": float(design_shares[:, j].mean()),
            "prior_inside": float(((design_shares[:, j] >= lo) & (design_shares[:, j] <= hi)).mean()),
            "posterior_share": float(w @ share), "posterior_inside": float(w @ inside),
        })  # fmt: skip
    return rows
