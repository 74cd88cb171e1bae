"""Parameter sets drawn from a fitted posterior: one per replicate cohort.

A predictive interval from one parameter set carries patient variation and cohort size only.
Drawing a parameter set per replicate cohort from the posterior of a fit (``posterior.parquet``
of ``cart-sim calibrate`` or ``cart-sim validate --cv``: one column per parameter and a
``weight`` column) adds the uncertainty of the parameters. ``fitted`` names the posterior that
ships with the package (``sim/data/posterior.parquet``, its provenance in ``posterior.yaml``),
written from a fit folder by ``python -m sim.workflows.posterior FIT_DIR``. Its ``posterior_median`` is
not the default set: measured by simulation it predicts the reported counts less well than the
defaults do (``results/VALIDATION.md``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sim.errors import UserError
from sim.params import PARAMETERS

SHIPPED = "fitted"
#: Equal-weight draws kept in the shipped posterior.
SHIPPED_DRAWS = 1000


def shipped_file(name: str) -> Path:
    """A file of the shipped posterior (package data)."""
    from importlib import resources

    return Path(str(resources.files("sim") / "data" / name))


def load_posterior(path: Path):
    """The weighted draws of a fit: ``posterior.parquet``, a fit folder holding it, or ``fitted`` (shipped)."""
    import pandas as pd

    if str(path) == SHIPPED:
        path = shipped_file("posterior.parquet")
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


def resample(weights: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Indices of ``size`` draws by weight, with replacement, reproducibly from ``seed``."""
    return np.random.default_rng(seed).choice(len(weights), size=size, p=weights / weights.sum())


def parameter_draws(path: Path, replicates: int, seed: int) -> list[dict[str, float]]:
    """``replicates`` parameter sets drawn from a fit's posterior by weight."""
    draws = load_posterior(path)
    idx = resample(draws.pop("weight").to_numpy(float), replicates, seed)
    return [{k: float(v) for k, v in draws.iloc[i].items()} for i in idx]


def ship(fit_dir: Path, seed: int = 0) -> None:
    """Write the identified parameters' draws of a fit (resampled to equal weight) and its provenance as package data."""
    import json

    import yaml

    from sim.io import atomic_path, provenance, write_parquet

    fit = json.loads((fit_dir / "fit.json").read_text())
    names = [n for n, s in fit["posterior"].items() if s["identified"]]
    draws = load_posterior(fit_dir)
    idx = resample(draws["weight"].to_numpy(float), SHIPPED_DRAWS, seed)
    kept = draws.iloc[idx][names].reset_index(drop=True).assign(weight=1.0 / SHIPPED_DRAWS)
    write_parquet(shipped_file("posterior.parquet"), kept)
    record = {k: fit[k] for k in ("name", "method", "spec", "data", "seed", "date", "effective_sample_size", "coverage")}
    record["posterior_median"] = {n: float(f"{fit['posterior'][n]['median']:.3g}") for n in names}
    record["held_at_defaults"] = [n for n in fit["posterior"] if n not in names]
    record["constraints"] = {
        c["constraint"]: {"share": c["share"], "posterior_share": round(c["posterior_share"], 3)}
        for c in fit.get("constraints", [])
    }
    record["fit_provenance"] = {k: fit["provenance"].get(k) for k in ("cart_sim", "commit", "command")}
    record["shipped"] = {"draws": SHIPPED_DRAWS, "resampling_seed": seed, "parameters": names, **provenance()}
    with atomic_path(shipped_file("posterior.yaml")) as tmp:
        tmp.write_text(
            f"# The posterior shipped with cart-sim: `--posterior {SHIPPED}`.\n"
            f"# Written by `python -m sim.workflows.posterior {fit_dir}` from a fit of `cart-sim validate --cv`;\n"
            "# the parameters the fit identified, resampled to equal weight.\n"
            + yaml.safe_dump(json.loads(json.dumps(record)), sort_keys=False)
        )


if __name__ == "__main__":
    import sys

    ship(Path(sys.argv[1]))
