"""Held-out check of a fit's emulators: do simulated counts they never saw fall inside their predictive intervals?

An emulator's uncertainty is only worth weighing a likelihood with if it is honest (Bastos &
O'Hagan 2009, Technometrics 51:425). A seeded share of the fit's design points is left out, the
emulators are refitted on the others, and every left-out simulated count is scored against its
emulated predictive: the binomial of ``n_patients`` mixed over the emulator's logit mean and sd
(Gauss-Hermite, as the likelihood). Reported:

- ``inside_95``: the share of left-out counts inside their central 95% interval (about 0.95 when
  the emulator is neither over- nor under-confident);
- ``log_score``: the summed log predictive probability of the left-out counts (higher is better;
  it compares emulators on the same split);
- ``median_sd``: the median emulated sd of the logit rate at the left-out points, over the counts
  the design moved (a count it never moved is a constant with the sd of one patient in n).

Run: ``python -m sim.workflows.emulator_check results/validation-cv [HELD_OUT] [SEED]`` (about
2 minutes for the 256-point fit).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from sim.workflows.emulate import Emulators, load_emulator_spec, mixed_binomial_pmf, to_unit


def predictive_pmf(mean: np.ndarray, sd: np.ndarray, n: int) -> np.ndarray:
    """P(count = k), k = 0..n, shape (points, n + 1): the binomial mixed over a normal logit rate."""
    return mixed_binomial_pmf(np.arange(n + 1)[None, :], n, mean[:, None], sd[:, None])


def check(unit: np.ndarray, counts: np.ndarray, n_patients: int, held_out: int, seed: int) -> dict:
    """Refit on all but ``held_out`` seeded design points and score those points' counts."""
    rng = np.random.default_rng(seed)
    test = np.zeros(len(unit), bool)
    test[rng.choice(len(unit), held_out, replace=False)] = True
    emulators = Emulators(unit[~test], counts[~test], n_patients, seed)
    mean, sd = emulators.predict(unit[test])
    varied = [not isinstance(m, tuple) for m in emulators.models]  # the others are constants, not GPs
    inside, log_score = [], 0.0
    for j in range(counts.shape[1]):
        pmf = predictive_pmf(mean[:, j], sd[:, j], n_patients)
        k = counts[test, j].astype(int)
        cdf = np.cumsum(pmf, axis=1)
        lo = (cdf < 0.025 - 1e-12).sum(axis=1)  # first k with cdf >= 0.025, as a ppf
        hi = (cdf < 0.975 - 1e-12).sum(axis=1)
        inside.append((lo <= k) & (k <= hi))
        log_score += float(np.log(np.maximum(pmf[np.arange(len(k)), k], 1e-300)).sum())
    return {
        "design_points": len(unit),
        "held_out": held_out,
        "counts_scored": int(test.sum()) * counts.shape[1],
        "inside_95": float(np.mean(inside)),
        "log_score": log_score,
        "median_sd": float(np.median(sd[:, varied])) if any(varied) else None,
    }


def check_fit(fit_dir: Path, held_out: int = 64, seed: int = 0) -> dict:
    """:func:`check` on a fit folder's ``design.parquet``, with the spec its ``fit.json`` names."""
    import json

    import pandas as pd

    spec_path = Path(json.loads((fit_dir / "fit.json").read_text())["spec"])
    spec = load_emulator_spec(spec_path)
    design = pd.read_parquet(fit_dir / "design.parquet")
    names = list(spec.parameters)
    metrics = [c for c in design.columns if c not in names and c != "wave"]
    unit = to_unit(spec, design[names].to_numpy())
    return check(unit, design[metrics].to_numpy(float), spec.n_patients, held_out, seed)


if __name__ == "__main__":
    args = sys.argv[1:]
    result = check_fit(Path(args[0]), *(int(a) for a in args[1:3]))
    for key, value in result.items():
        print(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}")
