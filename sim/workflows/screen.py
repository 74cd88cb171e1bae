"""Screen targets and designs on the same virtual patients and rank them by a therapeutic index.

A screen spec names a base scenario, the designs (each a set of dotted-path values on the
base, e.g. ``product.car.antigens: [CD70]``), the number of virtual patients, an efficacy
outcome and weighted toxicities. For each design::

    TI = mean(efficacy) - sum_k weight_k * mean(toxicity_k) / scale_k

over the same patients 0..N-1 (common random numbers). Intervals come from a paired
bootstrap over patients (the same resampled patients for every design).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sim.errors import UserError, did_you_mean, spec_error
from sim.scenario import Scenario, load_base, read_yaml_mapping, set_path, validate
from sim.workflows.cohort import CONTINUOUS, OUTCOMES


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Toxicity(_Strict):
    """One penalty of the index: ``weight * mean(metric) / scale``."""

    metric: str
    weight: float = Field(1.0, ge=0)
    scale: float = Field(1.0, gt=0)


class ScreenSpec(_Strict):
    """Designs on one base scenario, the patients and the therapeutic index."""

    name: str = Field(min_length=1)
    description: str = ""
    base: str = Field(description="base scenario YAML, relative to the spec file")
    set: dict = Field({}, description="dotted paths set in every design")
    n_patients: int = Field(100, ge=2, le=100_000)
    efficacy: str = "cr_cri_mlfs"
    toxicities: list[Toxicity] = []
    designs: dict[str, dict] = Field(min_length=1, description="design name -> {dotted.path: value}")
    seed: int = Field(0, ge=0, description="seed of the bootstrap")


def metric_names() -> list[str]:
    """Per-patient metrics a screen may use: binary outcomes and continuous readouts."""
    return list(OUTCOMES) + list(CONTINUOUS)


def per_patient(metric: str, patients: pd.DataFrame) -> np.ndarray:
    """One value per patient: 0/1 for an outcome, the readout for a continuous metric."""
    if metric in OUTCOMES:
        return OUTCOMES[metric](patients).to_numpy(float)
    return patients[metric].to_numpy(float)


class Screen:
    """A loaded, validated screen: spec and one scenario per design."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        src = str(self.path)
        try:
            self.spec = ScreenSpec.model_validate(read_yaml_mapping(self.path))
        except ValidationError as e:
            raise spec_error(e, src, list(ScreenSpec.model_fields)) from None
        for key, m in [("efficacy", self.spec.efficacy)] + [
            (f"toxicities.{k}.metric", t.metric) for k, t in enumerate(self.spec.toxicities)
        ]:
            if m not in metric_names():
                raise UserError(src, key, m, "a per-patient metric" + did_you_mean(m, metric_names()))
        base, data = load_base(self.path, self.spec.base, self.spec.set)
        self.scenarios: dict[str, Scenario] = {}
        for name, values in self.spec.designs.items():
            d = copy.deepcopy(data)
            d["name"] = name
            for k, v in (values or {}).items():
                set_path(d, k.split("."), v, source=src)
            try:
                self.scenarios[name] = validate(d, str(base))
            except UserError as e:
                raise UserError(src, f"designs.{name}", e.value, f"{e.key_path}: {e.expected}") from None


def rank(screen: Screen, cohorts: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The screen table: efficacy, toxicities and TI with paired-bootstrap 95% intervals, ranked.

    Every design's intervals resample the same patients (one seed), as ``compare`` does.
    """
    from sim.workflows.compare import ci95

    spec = screen.spec
    weights = [(t.weight / t.scale) for t in spec.toxicities]

    def burden(*tox, axis=-1):
        return sum(w * np.nanmean(x, axis=axis) for w, x in zip(weights, tox, strict=True))

    def index(eff, *tox, axis=-1):
        return np.mean(eff, axis=axis) - burden(*tox, axis=axis)

    rows = []
    for name, patients in cohorts.items():
        eff = per_patient(spec.efficacy, patients)
        tox = tuple(per_patient(t.metric, patients) for t in spec.toxicities)
        row = {"design": name, "efficacy": float(eff.mean())}
        row["efficacy_lo"], row["efficacy_hi"] = ci95((eff,), np.mean, spec.seed)
        for t, x in zip(spec.toxicities, tox, strict=True):
            row[t.metric] = float(np.nanmean(x))
            row[f"{t.metric}_lo"], row[f"{t.metric}_hi"] = ci95((x,), np.nanmean, spec.seed)
        row["toxicity_burden"] = float(burden(*tox)) if tox else 0.0
        row["toxicity_burden_lo"], row["toxicity_burden_hi"] = ci95(tox, burden, spec.seed) if tox else (0.0, 0.0)
        row["therapeutic_index"] = float(index(eff, *tox))
        row["therapeutic_index_lo"], row["therapeutic_index_hi"] = ci95((eff, *tox), index, spec.seed)
        rows.append(row)
    table = pd.DataFrame(rows).sort_values("therapeutic_index", ascending=False, kind="stable").reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table


def screen_figure(table: pd.DataFrame, spec: ScreenSpec):
    """Efficacy against toxicity burden, one point per design with 95% interval bars."""
    import matplotlib

    matplotlib.use("Agg")
    from sim.plots import subplots

    fig, ax = subplots(figsize=(9, 6.5))
    for _, r in table.iterrows():
        xerr = [[r.toxicity_burden - r.toxicity_burden_lo], [r.toxicity_burden_hi - r.toxicity_burden]]
        yerr = [[r.efficacy - r.efficacy_lo], [r.efficacy_hi - r.efficacy]]
        ax.errorbar(r.toxicity_burden, r.efficacy, xerr=xerr, yerr=yerr, fmt="o", capsize=3, alpha=0.8)
        ax.annotate(
            f"{r['rank']}. {r.design}", (r.toxicity_burden, r.efficacy), fontsize=8, xytext=(4, 4), textcoords="offset points"
        )
    terms = " + ".join(f"{t.weight:g} x {t.metric}/{t.scale:g}" for t in spec.toxicities) or "none"
    ax.set_xlabel(f"toxicity burden = {terms}", fontsize=8)
    ax.set_ylabel(f"efficacy: {spec.efficacy} rate")
    ax.set_title(f"{spec.name}: {spec.n_patients} virtual patients per design (95% paired-bootstrap intervals)")
    fig.tight_layout()
    return fig
