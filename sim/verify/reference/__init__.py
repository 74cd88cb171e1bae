"""A pure-Mesa reference of the core's rules: one ``mesa.Agent`` per cell (weight 1).

The second oracle besides the ODEs, and the baseline of the speed benchmarks. Usable at
small sizes (up to ~1e4-1e5 cells); see :class:`sim.verify.reference.model.ReferenceModel`.
"""

from sim.verify.reference.model import ReferenceModel

__all__ = ["ReferenceModel"]
