"""Workflows built on the model: cohorts, sweeps and screens, comparisons, validation and calibration.

Each runs many patients of :mod:`sim.model` and summarizes them; none changes a rule of the biology.
"""
