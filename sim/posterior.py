"""Parameter sets drawn from a fitted posterior: one per replicate cohort.

A predictive interval from one parameter set carries patient variation and cohort size only.
Drawing a parameter set per replicate cohort from the posterior of a fit (``posterior.parquet``
of ``cart-sim calibrate`` or ``cart-sim validate --cv``: one column per parameter and a
``weight`` column) adds the uncertainty of the parameters.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sim.errors import UserError
from sim.params import PARAMETERS


def load_posterior(path: Path):
    """The weighted draws of a fit: ``posterior.parquet``, or a fit folder holding it."""
    import pandas as pd

    file = path / "posterior.parquet" if path.is_dir() else path
    try:
        draws = pd.read_parquet(file)
    except (OSError, ValueError) as e:
        raise UserError(str(file), "", None, f"a posterior.parquet written by a fit ({type(e).__name__})") from None
    if "weight" not in draws.columns or len(draws) == 0:
        raise UserError(str(file), "weight", None, "a column 'weight' beside one column per parameter")
    unknown = [c for c in draws.columns if c != "weight" and c not in PARAMETERS]
    if unknown:
        raise UserError(str(file), unknown[0], None, "a parameter name of sim.params (`cart-sim params`)")
    w = draws["weight"].to_numpy(float)
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise UserError(str(file), "weight", None, "finite, non-negative weights with a positive sum")
    return draws


def parameter_draws(path: Path, replicates: int, seed: int) -> list[dict[str, float]]:
    """``replicates`` parameter sets drawn by weight (with replacement), reproducibly from ``seed``."""
    draws = load_posterior(path)
    w = draws.pop("weight").to_numpy(float)
    idx = np.random.default_rng(seed).choice(len(draws), size=replicates, p=w / w.sum())
    return [{k: float(v) for k, v in draws.iloc[i].items()} for i in idx]
