"""Compare CAR designs on the same virtual patients (common random numbers).

Every arm is run on patients 0..N-1 drawn with the first arm's seed, so patient ``i`` has
the same disease, antigen densities and product fitness in every arm whose population
matches. Rates carry Wilson 95% intervals, medians a bootstrap interval, and each arm's
difference from the first arm a paired bootstrap interval (``scipy.stats.bootstrap`` with
``paired=True``: the same resampled patients in both arms). For a continuous outcome the
difference is the difference of medians; the mean of the per-patient differences is kept
beside it under its own name, since the two can differ even in sign.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from sim import outcomes
from sim.antigens import Stage
from sim.scenario import Scenario
from sim.workflows.cohort import CohortResult, run_cohort, wilson

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


def ci95(data: tuple[np.ndarray, ...], statistic, seed: int) -> list[float]:
    """Percentile 95% bootstrap interval of ``statistic(*data, axis)``, resampling patients jointly (paired).

    Percentile rather than BCa: BCa's jackknife is degenerate for medians of counts with many
    ties (days below an ANC limit). A fresh generator from ``seed`` for every call gives every
    arm and outcome the same resampled patients.
    """
    res = stats.bootstrap(
        data,
        statistic,
        n_resamples=BOOTSTRAP,
        paired=True,
        vectorized=True,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return [float(res.confidence_interval.low), float(res.confidence_interval.high)]


def _median(x, axis=-1):
    return np.median(x, axis=axis)


def _mean(x, axis=-1):
    return np.mean(x, axis=axis)


def _median_difference(a, b, axis=-1):
    return np.median(b, axis=axis) - np.median(a, axis=axis)


def arm_table(patients: pd.DataFrame, seed: int) -> dict:
    """Rates (Wilson) and medians (bootstrap) of one arm."""
    out = {}
    for name, rule in RATES.items():
        out[name] = wilson(int(rule(patients).sum()), len(patients))
    for col in MEDIANS:
        x = patients[col].to_numpy(float)
        out[f"median_{col}"] = {"median": float(np.median(x)), "ci95": ci95((x,), _median, seed)}
    return out


def paired_differences(base: pd.DataFrame, other: pd.DataFrame, seed: int) -> dict:
    """Arm minus base on the same patients, with paired bootstrap 95% intervals.

    Rates: the difference of rates. Continuous outcomes: the difference of medians
    (``difference``), plus the mean and the median of the per-patient differences.
    """
    out = {}
    for name, rule in RATES.items():
        diff = rule(other).to_numpy(float) - rule(base).to_numpy(float)
        out[name] = {"difference": float(diff.mean()), "ci95": ci95((diff,), _mean, seed)}
    for col in MEDIANS:
        a, b = base[col].to_numpy(float), other[col].to_numpy(float)
        diff = b - a  # per patient: paired
        out[f"median_{col}"] = {
            "difference": float(np.median(b) - np.median(a)),
            "ci95": ci95((a, b), _median_difference, seed),
            "mean_paired_difference": {"value": float(diff.mean()), "ci95": ci95((diff,), _mean, seed)},
            "median_paired_difference": float(np.median(diff)),
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


def run_comparison(
    scenarios: list[Scenario], n: int, workers: int = 1, progress=None, scheduler: str | None = None, draws=None
) -> Comparison:
    """Run every arm on the same ``n`` virtual patients and compare them with the first.

    ``draws``: posterior parameter sets; every arm then runs the same replicate cohorts under
    the same draws (``sim.workflows.cohort.run_posterior_cohort``), so patients stay paired.
    """
    from sim.workflows.cohort import run_posterior_cohort

    arms = paired_scenarios(scenarios)
    cohorts = []
    for k, sc in enumerate(arms):
        cb = (lambda done, k=k: progress(k * n + done)) if progress else None
        if draws:
            cohorts.append(run_posterior_cohort(sc, draws, n, workers, None, cb, scheduler))
        else:
            cohorts.append(run_cohort(sc, n, workers, progress=cb, scheduler=scheduler))
    seed = arms[0].seed
    names = [s.name for s in arms]
    tables = {name: arm_table(c.patients, seed) for name, c in zip(names, cohorts, strict=True)}
    diffs = {
        name: paired_differences(cohorts[0].patients, c.patients, seed) for name, c in zip(names[1:], cohorts[1:], strict=True)
    }
    return Comparison(names, cohorts, tables, diffs, conclusion(names, tables, diffs, n))


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


#: Half-width (rate) of the remission difference's 95% interval beyond which a verdict gets a caveat.
PRECISE_HALF_WIDTH = 0.10


def conclusion(names: list[str], tables: dict, diffs: dict, n: int) -> str:
    """One plain-language paragraph generated from the numbers."""
    base = names[0]
    t0 = tables[base]
    parts = [
        f"On the same {n} virtual patients, {base} gave marrow remission (CR/CRh/CRi/MLFS) in "
        f"{_pct(t0['cr_cri_mlfs']['rate'])}, a median of {t0['median_days_anc_below_0_5']['median']:.1f} days with ANC "
        f"below 0.5e9/L and grade-4 neutropenia in {_pct(t0['neutropenia_grade4']['rate'])}."
    ]
    for name in names[1:]:
        d = diffs[name]
        # the verdict on neutrophils is per patient (common random numbers): the mean paired difference
        days, rem = d["median_days_anc_below_0_5"]["mean_paired_difference"], d["cr_cri_mlfs"]
        spared = days["ci95"][1] < 0
        lost = rem["ci95"][1] < 0
        verdict = "spared neutrophils" if spared else "did not clearly spare neutrophils"
        rem_txt = f"{rem['difference'] * 100:+.0f} points, 95% CI {rem['ci95'][0] * 100:+.0f} to {rem['ci95'][1] * 100:+.0f}"
        cost = f"but lost remissions ({rem_txt})" if lost else f"without a clear loss of remissions ({rem_txt})"
        days_txt = f"{days['value']:+.1f} days below 0.5 per patient, 95% CI {days['ci95'][0]:+.1f} to {days['ci95'][1]:+.1f}"
        protected = _pct(tables[name]["relapse_icar_protected"]["rate"])
        parts.append(f"{name} {verdict} ({days_txt}) {cost}; relapses with iCAR-protected blasts: {protected}.")
        parts += small_cohort_caveat(name, rem["ci95"], n)
    parts.append(
        "These are model predictions: iCAR inhibition strength and thresholds are assumed (I_max prior "
        "0.5-0.99, threshold 1e3-1e5 molecules), so the size of the benefit rests on them."
    )
    return " ".join(parts)


def small_cohort_caveat(name: str, rem_ci95: list[float], n: int) -> list[str]:
    """A sentence when the remission difference is too imprecise for its verdict (none otherwise).

    The half-width of a paired difference in rates shrinks as 1/sqrt(n), which gives the
    cohort size that would bring it to ``PRECISE_HALF_WIDTH``.
    """
    half = (rem_ci95[1] - rem_ci95[0]) / 2
    if half <= PRECISE_HALF_WIDTH:
        return []
    needed = int(np.ceil(n * (half / PRECISE_HALF_WIDTH) ** 2))
    return [
        f"Caveat: with {n} patients per arm the remission difference for {name} is known only to within "
        f"+/-{100 * half:.0f} points, so a smaller loss cannot be excluded; about {needed} patients per arm "
        f"would narrow it to +/-{100 * PRECISE_HALF_WIDTH:.0f}."
    ]


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
