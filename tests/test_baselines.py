"""Regression: each bundled scenario reproduces its stored summary (see tests/baselines.py)."""

import json
import math

import pytest

from tests.baselines import HERE, SCENARIOS, baseline


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_bundled_scenario_matches_its_baseline(path):
    stored = json.loads((HERE / "baselines" / f"{path.stem}.json").read_text())
    now = baseline(path)
    for k, v in stored.items():
        if isinstance(v, float):
            assert math.isclose(now[k], v, rel_tol=1e-9, abs_tol=1e-12), (k, now[k], v)
        else:
            assert now[k] == v, (k, now[k], v)
