"""cart-sim: an agent-based simulator of CAR T-cell therapy in acute myeloid leukemia."""

__version__ = "0.1.0"
