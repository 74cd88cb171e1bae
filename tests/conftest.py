from pathlib import Path

import pytest

from sim.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"


def scenario(name: str = "cll1_standard", *overrides: str):
    """A bundled scenario with ``--set`` style overrides."""
    return load_scenario(SCENARIOS / f"{name}.yaml", list(overrides))


@pytest.fixture
def short_cll1():
    return scenario("cll1_standard", "horizon_days=3", "resolution.car_t_agents=200", "resolution.blast_agents=200")
