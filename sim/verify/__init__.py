"""Verification of the compiled core: the mean-field ODE oracle, the pure-Mesa reference and the Mesa wrapper.

Each calls the core's own rate functions (through numba's ``py_func`` where it must stay plain
Python), so a rule is written once and these check how the core steps it.
"""
