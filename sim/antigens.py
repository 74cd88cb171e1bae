"""The antigen atlas: antigen densities on AML blasts and on each myeloid stage.

The atlas is package data (``sim/data/antigens.yaml``); patient sampling and the
myeloid lineage read their antigens from it, so a new target is a new entry there.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import yaml


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
    stages: dict[str, float]
    source: str


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

    def stage_density_matrix(self) -> np.ndarray:
        """Density of every antigen on every lineage class, shape (antigens, classes)."""
        out = np.zeros((len(self.antigens), len(Stage)))
        for i, a in enumerate(self.antigens):
            for s in Stage:
                out[i, s] = a.stages[STAGE_ATLAS_KEY[s]]
        return out


def _default_path() -> Path:
    return Path(str(resources.files("sim") / "data" / "antigens.yaml"))


def load_atlas(path: str | Path | None = None) -> Atlas:
    """Read an antigen atlas file.

    Args:
        path: Atlas YAML; the bundled one when ``None``.

    Returns:
        The parsed atlas.
    """
    raw = yaml.safe_load(Path(path or _default_path()).read_text())
    stage_keys = set(raw["stage_order"])
    entries = []
    for name, e in raw["antigens"].items():
        missing = stage_keys - set(e["stages"])
        if missing:
            raise ValueError(f"antigen atlas: {name}.stages lacks {sorted(missing)}")
        entries.append(
            AntigenInfo(
                name=name,
                aml_positive_fraction=float(e["aml_positive_fraction"]),
                blast_median=float(e["blast_median"]),
                between_patient_log_sd=float(e["between_patient_log_sd"]),
                within_patient_log_sd=float(e["within_patient_log_sd"]),
                negative_fraction=float(e["negative_fraction"]),
                stages={k: float(v) for k, v in e["stages"].items()},
                source=str(e["source"]).strip(),
            )
        )
    return Atlas(tuple(entries))


@lru_cache(maxsize=1)
def default_atlas() -> Atlas:
    """The bundled atlas (read once)."""
    return load_atlas()
