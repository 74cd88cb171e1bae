"""The antigen atlas: antigen densities on AML blasts and on each myeloid stage.

The atlas is package data (``sim/data/antigens.yaml``); patient sampling, the myeloid
lineage and fratricide read their antigens from it, so a new target is a new entry
there. ``CART_SIM_ATLAS=/path/to/atlas.yaml`` makes every command use another atlas file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import yaml

from sim.errors import UserError


class Stage(IntEnum):
    """Myeloid lineage classes: maturation stage and, for neutrophils, compartment."""

    HSPC = 0
    MYELOBLAST = 1
    PROMYELOCYTE = 2
    MYELOCYTE = 3
    METAMYELOCYTE = 4
    BAND = 5
    RESERVE = 6  # segmented neutrophils stored in marrow
    BLOOD_NEUTROPHIL = 7
    MONOCYTE = 8


#: Atlas stage key for each lineage class (reserve and blood neutrophils are segmented).
STAGE_ATLAS_KEY = (
    "hspc",
    "myeloblast",
    "promyelocyte",
    "myelocyte",
    "metamyelocyte",
    "band",
    "segmented",
    "segmented",
    "monocyte",
)


@dataclass(frozen=True)
class AntigenInfo:
    """One atlas entry (see the header of ``antigens.yaml`` for the fields)."""

    name: str
    aml_positive_fraction: float
    blast_median: float
    between_patient_log_sd: float
    within_patient_log_sd: float
    negative_fraction: float
    lsc_median: float
    t_cell: float
    stages: dict[str, float]
    source: str
    confidence: dict[str, str]
    priors: dict[str, tuple[float, float]]
    negative_fraction_log_sd: float = 0.0
    tissue: float = 0.0


@dataclass(frozen=True)
class Atlas:
    """All antigens, in a fixed order that defines the blast density columns."""

    antigens: tuple[AntigenInfo, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """Antigen names in column order."""
        return tuple(a.name for a in self.antigens)

    def index(self, name: str) -> int:
        """Column of antigen ``name``."""
        return self.names.index(name)

    def t_cell_densities(self) -> np.ndarray:
        """Density of every antigen on T cells (fratricide)."""
        return np.array([a.t_cell for a in self.antigens])

    def tissue_densities(self) -> np.ndarray:
        """Density of every antigen on the non-depleted normal tissue met in blood and marrow."""
        return np.array([a.tissue for a in self.antigens])

    def stage_density_matrix(self) -> np.ndarray:
        """Density of every antigen on every lineage class, shape (antigens, classes)."""
        out = np.zeros((len(self.antigens), len(Stage)))
        for i, a in enumerate(self.antigens):
            for s in Stage:
                out[i, s] = a.stages[STAGE_ATLAS_KEY[s]]
        return out


#: Fields every atlas entry must give.
REQUIRED = (
    "aml_positive_fraction",
    "blast_median",
    "between_patient_log_sd",
    "within_patient_log_sd",
    "negative_fraction",
    "lsc_median",
    "t_cell",
    "stages",
    "source",
)

#: Environment variable naming an atlas file to use instead of the bundled one.
ATLAS_ENV = "CART_SIM_ATLAS"


def _default_path() -> Path:
    return Path(os.environ.get(ATLAS_ENV) or str(resources.files("sim") / "data" / "antigens.yaml"))


def load_atlas(path: str | Path | None = None) -> Atlas:
    """Read an antigen atlas file.

    Args:
        path: Atlas YAML; the bundled one when ``None``.

    Returns:
        The parsed atlas.
    """
    path = Path(path or _default_path())
    raw = yaml.safe_load(path.read_text())
    stage_keys = set(raw["stage_order"])
    entries = []
    for name, e in raw["antigens"].items():
        missing = [k for k in REQUIRED if k not in e] or sorted(stage_keys - set(e.get("stages") or {}))
        if missing:
            raise UserError(str(path), f"antigens.{name}", None, f"the atlas fields {missing} (see the file header)")
        entries.append(
            AntigenInfo(
                name=name,
                aml_positive_fraction=float(e["aml_positive_fraction"]),
                blast_median=float(e["blast_median"]),
                between_patient_log_sd=float(e["between_patient_log_sd"]),
                within_patient_log_sd=float(e["within_patient_log_sd"]),
                negative_fraction=float(e["negative_fraction"]),
                lsc_median=float(e["lsc_median"]),
                t_cell=float(e["t_cell"]),
                stages={k: float(v) for k, v in e["stages"].items()},
                source=str(e["source"]).strip(),
                confidence=dict(e.get("confidence") or {}),
                priors={k: (float(v[0]), float(v[1])) for k, v in (e.get("priors") or {}).items()},
                negative_fraction_log_sd=float(e.get("negative_fraction_log_sd", 0.0)),
                tissue=float(e.get("tissue", 0.0)),
            )
        )
    return Atlas(tuple(entries))


def default_atlas() -> Atlas:
    """The atlas in use: ``$CART_SIM_ATLAS`` if set, else the bundled one (read once per file)."""
    return _cached_atlas(str(_default_path()))


@lru_cache(maxsize=4)
def _cached_atlas(path: str) -> Atlas:
    return load_atlas(path)
