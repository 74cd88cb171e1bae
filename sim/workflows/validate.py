"""Hold the model against the reported trials in ``clinical_targets.yaml``.

For every reported arm (a scenario with ``trial.study``/``trial.arm``) and every reported
count, the arm is simulated as a cohort of ``n_sim`` virtual patients, giving the
per-patient probability ``p`` of the outcome. The count in a cohort of the reported size
``n`` then follows a beta-binomial (binomial in ``n`` with ``p ~ Beta(k + 1/2, n_sim - k +
1/2)``, which carries the simulation's own uncertainty). Each record gives the simulated
mean count, the central 95% predictive interval, the probability of the reported count
and a verdict: ``agrees`` when the reported count lies inside the interval.

Metric rules (reported field -> per-patient outcome):

* ``complete_remission``: marrow remission at day 28 (CR, CRh, CRi or MLFS: BM blasts < 5%, no
  circulating blasts, no EMD). The abstracts report "CR" without the count recovery that
  ELN separates into CR / CRi / MLFS, and after CLL1 or CD33 CAR T most remissions are still
  aplastic at day 28; the stricter CR + CRi rate is in every cohort summary;
* ``complete_remission:cr_cri``: CR or CRi, used instead when the arm also reports an overall
  response or an MRD-negative CR. The abstract then counts responders who are not in CR apart,
  so its "CR" cannot take in every marrow remission, and the MRD-negative CR (CR/CRi, below)
  must be a part of it;
* ``mrd_negative_complete_remission``: CR/CRh/CRi with flow MRD below the scenario's sensitivity;
* ``overall_response``: CR, CRh, CRi, MLFS or PR;
* ``cr_cri_mlfs``, ``cr_cri``, ``best_overall_response`` (the training set): the cohort outcomes
  of those names, for abstracts that separate the categories or report a best response over
  repeated infusions;
* ``crs_grade`` / ``icans_grade`` keys ``"g"`` or ``"a-b"``: highest grade within the range;
* ``other.iec_hs``: IEC-HS;
* ``other.neutropenia_or_thrombocytopenia_grade_3`` / ``_4``: the worse of the CTCAE
  neutropenia and thrombocytopenia grades is exactly that grade;
* ``other.sepsis``: a bacterial infection by day 28.

Reported fields with no model counterpart (liver damage, dose-limiting toxicity) are
listed as ``not modelled``.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy.stats import betabinom

from sim.scenario import read_yaml_mapping
from sim.workflows.cohort import OUTCOMES

NOT_MODELLED = ("liver_function_damage", "dose_limiting_toxicity")


#: Reported arm sets: the calibration set the defaults were set on, and the training set they never saw.
TARGET_SETS = {"calibration": "clinical_targets.yaml", "training": "training_arms.yaml"}
#: Where each set's scenarios are (relative to the working folder), one per arm with a ``trial`` section.
SCENARIO_DIRS = {"calibration": Path("scenarios"), "training": Path("scenarios") / "training"}


def target_set(name: str = "calibration") -> dict:
    """A packaged set of reported arms (``TARGET_SETS``)."""
    return yaml.safe_load((resources.files("sim") / "data" / TARGET_SETS[name]).read_text())


def clinical_targets() -> dict:
    """The packaged calibration set (a verbatim copy of ``../shared/data/clinical_targets.yaml``)."""
    return target_set("calibration")


def grade_range(key: str) -> tuple[int, int]:
    """``"2"`` -> (2, 2); ``"3-4"`` -> (3, 4)."""
    lo, _, hi = key.partition("-")
    return int(lo), int(hi or lo)


#: Reported metrics that are one cohort outcome (``sim.workflows.cohort.OUTCOMES``); the rules are in the module docstring.
REPORTED_AS_OUTCOME = {
    "cr_cri_mlfs": "cr_cri_mlfs",
    "cr_cri": "cr_cri",
    "best_overall_response": "best_overall_response",
    "complete_remission": "cr_cri_mlfs",
    "complete_remission:cr_cri": "cr_cri",
    "mrd_negative_complete_remission": "mrd_negative_cr",
    "overall_response": "overall_response",
    "other:iec_hs": "iec_hs",
    "other:sepsis": "infection_bacterial_day28",
}


def outcome_rule(metric: str):
    """The per-patient rule (patients table -> bool Series) of a reported metric, or ``None`` if the model has none."""
    if metric in REPORTED_AS_OUTCOME:
        rule = OUTCOMES[REPORTED_AS_OUTCOME[metric]]
        return lambda patients: rule(patients).astype(bool)
    family, _, key = metric.partition(":")
    if family in ("crs_grade", "icans_grade"):
        lo, hi = grade_range(key)
        return lambda patients: patients[family].between(lo, hi)
    if family == "other" and key.startswith("neutropenia_or_thrombocytopenia_grade_"):
        grade = int(key.rsplit("_", 1)[1])
        return lambda patients: patients[["neutropenia_grade", "thrombocytopenia_grade"]].max(axis=1) == grade
    return None


def outcome(metric: str, patients: pd.DataFrame) -> pd.Series | None:
    """Per-patient indicator of a reported metric, or ``None`` if the model has none."""
    rule = outcome_rule(metric)
    return None if rule is None else rule(patients)


#: Fields that name their outcome exactly (the training set uses them where an abstract separates categories).
EXACT_FIELDS = ("cr_cri_mlfs", "cr_cri", "best_overall_response")


def reported_metrics(arm: dict) -> list[tuple[str, int]]:
    """(metric, reported count) pairs of one arm, skipping ``null`` (not reported)."""
    out = []
    separates = any(arm.get(f) is not None for f in ("mrd_negative_complete_remission", "overall_response"))
    for field in ("complete_remission", "mrd_negative_complete_remission", "overall_response", *EXACT_FIELDS):
        if arm.get(field) is not None:
            name = "complete_remission:cr_cri" if field == "complete_remission" and separates else field
            out.append((name, int(arm[field])))
    for family in ("crs_grade", "icans_grade"):
        for key, count in (arm.get(family) or {}).items():
            out.append((f"{family}:{key}", int(count)))
    for key, count in (arm.get("other") or {}).items():
        out.append((f"other:{key}", int(count)))
    return out


@dataclass
class Record:
    """One study/arm/metric comparison."""

    study: str
    arm: str
    metric: str
    n_reported: int
    reported: int
    n_simulated: int
    simulated_rate: float | None
    simulated_mean: float | None
    interval95: tuple[int, int] | None
    p_reported: float | None
    verdict: str


def compare(study: str, arm: str, metric: str, reported: int, n: int, patients) -> Record:
    """Compare one reported count with the model's predictive distribution.

    ``patients``: one simulated cohort, or replicate cohorts each simulated under its own
    posterior draw; the predictive is then the mixture of theirs, so it carries parameter
    uncertainty too.
    """
    cohorts = patients if isinstance(patients, list) else [patients]
    hits = [outcome(metric, p) if p is not None else None for p in cohorts]
    if hits[0] is None:
        return Record(study, arm, metric, n, reported, 0, None, None, None, None, "not modelled")
    ks, ms = [int(h.sum()) for h in hits], [len(h) for h in hits]
    dists = [betabinom(n, k + 0.5, m - k + 0.5) for k, m in zip(ks, ms, strict=True)]
    if len(dists) == 1:
        (dist,) = dists
        lo, hi = int(dist.ppf(0.025)), int(dist.ppf(0.975))
        mean, p_reported = float(dist.mean()), float(dist.pmf(reported))
    else:
        pmf = np.mean([d.pmf(np.arange(n + 1)) for d in dists], axis=0)
        cdf = np.cumsum(pmf)
        lo, hi = (int(np.searchsorted(cdf, q - 1e-12)) for q in (0.025, 0.975))  # as ppf: first x with cdf >= q
        mean, p_reported = float(pmf @ np.arange(n + 1)), float(pmf[reported])
    verdict = "agrees" if lo <= reported <= hi else "disagrees"
    return Record(study, arm, metric, n, reported, sum(ms), sum(ks) / sum(ms), mean, (lo, hi), p_reported, verdict)


def reported_arms(targets: str = "calibration") -> list[tuple[str, str]]:
    """(study, arm) of every arm of a target set with a reported patient count."""
    studies = target_set(targets)["studies"]
    return [(s["id"], str(a["id"])) for s in studies for a in s["arms"] if a.get("patients") is not None]


def arm_scenarios(scenario_dir: Path) -> dict[tuple[str, str], Path]:
    """Scenario files by (study, arm) from their ``trial`` sections."""
    out = {}
    for f in sorted(scenario_dir.glob("*.yaml")):
        trial = read_yaml_mapping(f).get("trial")  # a file that is not YAML is a clean error
        if isinstance(trial, dict) and "study" in trial:
            out[(trial["study"], str(trial["arm"]))] = f
    return out


def run_validation(
    scenario_dir: Path,
    n_sim: int,
    workers: int,
    progress=None,
    params: dict | None = None,
    overrides: list[str] | None = None,
    scheduler: str | None = None,
    targets: str = "calibration",
    draws: list[dict[str, float]] | None = None,
) -> list[Record]:
    """Simulate every reported arm of a target set and compare each reported count.

    Args:
        scenario_dir: Folder with one scenario per arm (``trial`` sections).
        n_sim: Virtual patients per arm.
        workers: Worker threads.
        progress: Called with the number of patients simulated so far (all arms).
        params: A parameter set (``--params``) under every arm's own ``params``.
        overrides: ``--set`` values applied to every arm.
        scheduler: A Dask scheduler address.
        targets: The set of reported arms (``TARGET_SETS``).
        draws: Posterior parameter sets (``sim.workflows.posterior.parameter_draws``): then ``n_sim`` patients
            are split into one replicate cohort per draw, each on its own patients (root seed + r)
            with the same draw in every arm.

    Raises:
        KeyError: (study, arm) of a reported arm that has no scenario.
    """
    from sim.workflows.cohort import run_cohort, run_posterior_cohort

    scenarios = arm_cohorts(scenario_dir, params, overrides, targets)
    records = []
    for k, (key, (sc, n_reported, metrics)) in enumerate(scenarios.items()):
        cb = (lambda done, base=k * n_sim: progress(base + done)) if progress else None
        if draws:
            patients = run_posterior_cohort(sc, draws, n_sim, workers, None, cb, scheduler).patients
            patients = [p for _, p in patients.groupby("posterior_draw")]  # the predictive: their mixture
        else:
            patients = run_cohort(sc, n_sim, workers, progress=cb, scheduler=scheduler).patients
        records += [compare(*key, m, c, n_reported, patients) for m, c in metrics]
    return records


def arm_cohorts(
    scenario_dir: Path, params: dict | None = None, overrides: list[str] | None = None, targets: str = "calibration"
) -> dict:
    """(study, arm) -> (scenario, reported cohort size, reported metrics) of every arm with a reported size."""
    from sim.scenario import load_scenario, with_param_set

    arms = arm_scenarios(scenario_dir)
    out = {}
    for study in target_set(targets)["studies"]:
        for arm in study["arms"]:
            if arm.get("patients") is None:
                continue
            key = (study["id"], str(arm["id"]))
            sc = with_param_set(load_scenario(arms[key], overrides), params)
            out[key] = (sc, arm["patients"], reported_metrics(arm))
    return out


def summary_counts(records: list[Record]) -> dict:
    """How many comparable metrics agree."""
    judged = [r for r in records if r.verdict in ("agrees", "disagrees")]
    agree = sum(r.verdict == "agrees" for r in judged)
    return {"metrics": len(judged), "agree": agree, "fraction": agree / len(judged) if judged else None}


def validation_figure(records: list[Record]):
    """Reported vs simulated counts with 95% predictive intervals, one panel per metric family."""
    import matplotlib

    matplotlib.use("Agg")
    from sim.plots import subplots

    judged = [r for r in records if r.interval95 is not None]
    families = {}
    for r in judged:
        fam = r.metric.split(":")[0]
        fam = fam if fam in ("crs_grade", "icans_grade", "other") else "response"
        families.setdefault(fam, []).append(r)
    fig, axes = subplots(1, len(families), figsize=(5 * len(families), 0.45 * max(len(v) for v in families.values()) + 2))
    axes = np.atleast_1d(axes)
    for ax, (fam, recs) in zip(axes, families.items(), strict=True):
        y = np.arange(len(recs))
        for i, r in enumerate(recs):
            lo, hi = r.interval95
            color = "tab:green" if r.verdict == "agrees" else "tab:red"
            ax.plot([lo / r.n_reported, hi / r.n_reported], [i, i], color=color, lw=4, alpha=0.5)
            ax.plot(r.simulated_mean / r.n_reported, i, "|", color=color, ms=12)
            ax.plot(r.reported / r.n_reported, i, "kD", ms=5)
        ax.set_yticks(y, [f"{r.study}/{r.arm} {r.metric.split(':')[-1]}" for r in recs], fontsize=7)
        ax.set_xlim(-0.05, 1.05)
        ax.set_xlabel("fraction of the arm (reported: diamond; simulated 95% interval: bar)")
        ax.set_title(fam)
    fig.tight_layout()
    return fig
