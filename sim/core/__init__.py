"""The numba core: one kernel per step phase, on struct-of-arrays agent frames."""
