"""Preallocated struct-of-arrays frames of super-individual agents.

An agent stands for ``w`` real cells (an integer held in a float64, exact below 2**53),
sits in a compartment ``comp`` and a class ``cls`` (phenotype, clone or stage), and
carries ``x[k]``, its continuous properties. Kernels take the arrays and the live count
``n`` and return the new count; Python grows the capacity before a phase that may spawn.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Agents(NamedTuple):
    """The arrays of one agent kind, as kernels take them (a view of a :class:`Frame`)."""

    w: np.ndarray  # cells per agent (float64, whole numbers)
    comp: np.ndarray  # compartment code (int8)
    cls: np.ndarray  # phenotype, clone or stage (int8)
    x: np.ndarray  # continuous properties [property, agent]
    n: np.ndarray  # live agents, ``n[0]`` (the first ``n[0]`` slots)


class Frame:
    """Agents of one kind.

    Args:
        capacity: Initial number of slots.
        props: Names of the continuous properties (rows of ``x``).

    Example:
        >>> f = Frame(4, ("load",))
        >>> f.add(w=10.0, comp=1, cls=0)
        >>> f.n, float(f.w[:f.n].sum())
        (1, 10.0)
    """

    def __init__(self, capacity: int, props: tuple[str, ...]):
        self.props = props
        self.count = np.zeros(1, np.int64)
        self.w = np.zeros(capacity)
        self.comp = np.zeros(capacity, np.int8)
        self.cls = np.zeros(capacity, np.int8)
        self.x = np.zeros((max(len(props), 1), capacity))

    @property
    def n(self) -> int:
        """Live agents (the first ``n`` slots)."""
        return int(self.count[0])

    @n.setter
    def n(self, value: int) -> None:
        self.count[0] = value

    @property
    def capacity(self) -> int:
        """Number of slots."""
        return self.w.shape[0]

    def ensure(self, needed: int) -> None:
        """Grow (never shrink) so that ``needed`` agents fit."""
        if needed <= self.capacity:
            return
        cap = max(needed, 2 * self.capacity)
        for name in ("w", "comp", "cls"):
            old = getattr(self, name)
            new = np.zeros(cap, old.dtype)
            new[: self.n] = old[: self.n]
            setattr(self, name, new)
        x = np.zeros((self.x.shape[0], cap))
        x[:, : self.n] = self.x[:, : self.n]
        self.x = x

    def add(self, w: float, comp: int, cls: int, x: np.ndarray | None = None) -> None:
        """Append one agent (setup only; kernels spawn in place)."""
        self.ensure(self.n + 1)
        i = self.n
        self.w[i], self.comp[i], self.cls[i] = w, comp, cls
        if x is not None:
            self.x[:, i] = x
        self.n += 1

    @property
    def arrays(self) -> Agents:
        """The current arrays (rebind after :meth:`ensure`)."""
        return Agents(self.w, self.comp, self.cls, self.x, self.count)

    def total(self) -> float:
        """Total weight (real cells)."""
        return float(self.w[: self.n].sum())
