"""Compare CAR designs on the same virtual patients (common random numbers).

Every arm is run on patients 0..N-1 drawn with the first arm's seed, so patient ``i`` has
the same disease, antigen densities and product fitness in every arm whose population
matches. Rates carry Wilson 95% intervals, medians a bootstrap interval, and each arm's
difference from the first arm a paired bootstrap interval (the same resampled patients in
both arms).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sim import outcomes
from sim.antigens import Stage
from sim.cohort import CohortResult, run_cohort, wilson
from sim.scenario import Scenario

BOOTSTRAP = 1000

#: Binary outcomes compared (rules from the registry, ``sim.outcomes``).
RATES = outcomes.rules(
    (
        "cr_cri_mlfs",
        "cr_cri",
        "mrd_negative_cr",
        "crs_grade_ge3",
        "icans_grade_ge3",
        "neutropenia_grade4",
        "infection_bacterial_day28",
        "infection_fungal_day28",
        "infection_viral_day28",
        "relapse",
        "relapse_target_negative",
        "relapse_icar_protected",
    )
)
#: Continuous outcomes compared by their median.
MEDIANS = ("anc_nadir_1e9_per_l", "days_anc_below_0_5", "days_anc_below_0_1", "blasts_total_day28")
STAGES = [s.name.lower() for s in Stage]


def paired_scenarios(scenarios: list[Scenario]) -> list[Scenario]:
    """Give every arm the first arm's seed and name clash guard, so patients are paired."""
    seed = scenarios[0].seed
    names = [s.name for s in scenarios]
    if len(set(names)) != len(names):
        raise ValueError(f"arms need distinct names, got {names}")
    return [s.model_copy(update={"seed": seed}) for s in scenarios]


def bootstrap_indices(n: int, seed: int) -> np.ndarray:
    """Resampled patient indices, shape (BOOTSTRAP, n), the same for every arm (paired)."""
    return np.random.default_rng(seed).integers(0, n, size=(BOOTSTRAP, n))


def ci95(values: np.ndarray) -> list[float]:
    """Central 95% interval of bootstrap replicates."""
    return [float(np.nanpercentile(values, 2.5)), float(np.nanpercentile(values, 97.5))]


def arm_table(patients: pd.DataFrame, idx: np.ndarray) -> dict:
    """Rates (Wilson) and medians (bootstrap) of one arm."""
    out = {}
    for name, rule in RATES.items():
        out[name] = wilson(int(rule(patients).sum()), len(patients))
    for col in MEDIANS:
        x = patients[col].to_numpy(float)
        out[f"median_{col}"] = {"median": float(np.median(x)), "ci95": ci95(np.median(x[idx], axis=1))}
    return out


def paired_differences(base: pd.DataFrame, other: pd.DataFrame, idx: np.ndarray) -> dict:
    """Arm minus base, patient by patient: mean paired difference with a paired bootstrap 95% interval."""
    out = {}
    for name, rule in RATES.items():
        a, b = rule(base).to_numpy(float), rule(other).to_numpy(float)
        out[name] = {"difference": float(b.mean() - a.mean()), "ci95": ci95(b[idx].mean(axis=1) - a[idx].mean(axis=1))}
    for col in MEDIANS:
        diff = other[col].to_numpy(float) - base[col].to_numpy(float)  # per patient: paired
        out[f"median_{col}"] = {
            "difference": float(diff.mean()),
            "median_paired_difference": float(np.median(diff)),
            "ci95": ci95(diff[idx].mean(axis=1)),
        }
    return out


@dataclass
class Comparison:
    """Arms on the same patients, their tables and the paired differences."""

    names: list[str]
    cohorts: list[CohortResult]
    tables: dict
    differences: dict
    conclusion: str

    def to_json(self) -> dict:
        """What ``compare.json`` holds."""
        return {
            "arms": self.names,
            "n_patients": len(self.cohorts[0].patients),
            "tables": self.tables,
            "paired_differences_vs_first": self.differences,
            "myeloid_killed_median": {
                n: {s: float(c.patients[f"killed_{s}"].median()) for s in STAGES}
                for n, c in zip(self.names, self.cohorts, strict=True)
            },
            "conclusion": self.conclusion,
        }


def run_comparison(scenarios: list[Scenario], n: int, workers: int = 1, progress=None) -> Comparison:
    """Run every arm on the same ``n`` virtual patients and compare them with the first."""
    arms = paired_scenarios(scenarios)
    cohorts = []
    for k, sc in enumerate(arms):
        cb = (lambda done, k=k: progress(k * n + done)) if progress else None
        cohorts.append(run_cohort(sc, n, workers, progress=cb))
    idx = bootstrap_indices(n, arms[0].seed)
    names = [s.name for s in arms]
    tables = {name: arm_table(c.patients, idx) for name, c in zip(names, cohorts, strict=True)}
    diffs = {
        name: paired_differences(cohorts[0].patients, c.patients, idx) for name, c in zip(names[1:], cohorts[1:], strict=True)
    }
    return Comparison(names, cohorts, tables, diffs, conclusion(names, tables, diffs))


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def conclusion(names: list[str], tables: dict, diffs: dict) -> str:
    """One plain-language paragraph generated from the numbers."""
    base = names[0]
    t0 = tables[base]
    parts = [
        f"On the same virtual patients, {base} gave marrow remission (CR/CRh/CRi/MLFS) in {_pct(t0['cr_cri_mlfs']['rate'])}, "
        f"a median of {t0['median_days_anc_below_0_5']['median']:.1f} days with ANC below 0.5e9/L and grade-4 neutropenia "
        f"in {_pct(t0['neutropenia_grade4']['rate'])}."
    ]
    for name in names[1:]:
        d = diffs[name]
        days, rem = d["median_days_anc_below_0_5"], d["cr_cri_mlfs"]
        spared = days["ci95"][1] < 0
        lost = rem["ci95"][1] < 0
        verdict = "spared neutrophils" if spared else "did not clearly spare neutrophils"
        rem_txt = f"{rem['difference'] * 100:+.0f} points, 95% CI {rem['ci95'][0] * 100:+.0f} to {rem['ci95'][1] * 100:+.0f}"
        cost = f"but lost remissions ({rem_txt})" if lost else f"without a clear loss of remissions ({rem_txt})"
        days_txt = f"{days['difference']:+.1f} days below 0.5, 95% CI {days['ci95'][0]:+.1f} to {days['ci95'][1]:+.1f}"
        protected = _pct(tables[name]["relapse_icar_protected"]["rate"])
        parts.append(f"{name} {verdict} ({days_txt}) {cost}; relapses with iCAR-protected blasts: {protected}.")
    parts.append(
        "These are model predictions: iCAR inhibition strength and thresholds are assumed (PARAMETERS.md: I_max prior "
        "0.5-0.99, threshold 1e3-1e5 molecules), so the size of the benefit rests on them."
    )
    return " ".join(parts)


def figures(comp: Comparison) -> dict:
    """``anc.png``, ``kinetics.png`` and ``lineage.png`` figures."""
    import matplotlib

    matplotlib.use("Agg")
    from sim.plots import subplots

    out = {}
    fig, ax = subplots(figsize=(9, 5))
    for name, c in zip(comp.names, comp.cohorts, strict=True):
        y = np.clip(c.trajectories[:, 2, :], 1e-3, None)
        days = np.arange(y.shape[1])
        lo, med, hi = np.nanpercentile(y, [10, 50, 90], axis=0)
        ax.fill_between(days, lo, hi, alpha=0.2)
        ax.semilogy(days, med, label=name)
    for lim, ls in ((0.5, "--"), (0.1, ":")):
        ax.axhline(lim, color="grey", ls=ls, lw=0.8)
    ax.set(xlabel="days after infusion", ylabel="ANC (1e9/L)", title="ANC: median and 10-90% band")
    ax.legend()
    out["anc.png"] = fig
    fig, axes = subplots(1, 2, figsize=(13, 5))
    for name, c in zip(comp.names, comp.cohorts, strict=True):
        for ax, k, label in ((axes[0], 0, "CAR T in blood (cells/uL)"), (axes[1], 1, "leukemic blasts (cells)")):
            y = np.clip(c.trajectories[:, k, :], 1e-3, None)
            ax.semilogy(np.arange(y.shape[1]), np.nanmedian(y, axis=0), label=name)
            ax.set(title=f"{label}, median", xlabel="days after infusion")
    axes[0].legend()
    out["kinetics.png"] = fig
    fig, ax = subplots(figsize=(11, 5))
    width = 0.8 / len(comp.names)
    for k, (name, c) in enumerate(zip(comp.names, comp.cohorts, strict=True)):
        killed = [max(float(c.patients[f"killed_{s}"].median()), 1.0) for s in STAGES]
        ax.bar(np.arange(len(STAGES)) + k * width, killed, width, label=name, log=True)
    ax.set_xticks(np.arange(len(STAGES)) + 0.4 - width / 2, STAGES, rotation=30)
    ax.set(ylabel="cells killed per patient (median)", title="On-target, off-tumor killing by maturation stage")
    ax.legend()
    out["lineage.png"] = fig
    for f in out.values():
        f.tight_layout()
    return out
