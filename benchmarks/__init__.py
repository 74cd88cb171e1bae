"""Benchmarks of the cart-sim core (run ``python -m benchmarks --quick``)."""
