"""Super-individuals become single cells at small numbers, so extinction is real."""

from sim.model import Simulation
from tests.conftest import scenario


def tiny_residual(seed: int):
    # 5e-10 blasts in marrow (about a hundred cells), all CD70-positive, treated with a
    # CD70-edited CD70 CAR (absent from the normal lineage, so no competing targets; edited,
    # so the CAR T cells do not kill each other through activation-induced CD70)
    return scenario(
        "cll1_standard",
        f"seed={seed}",
        "horizon_days=28",
        "product.car.antigens=[CD70]",
        "product.knockout=[CD70]",
        "product.dose_cells_per_kg=3e7",
        "patient.bm_blast_fraction=5e-10",
        "patient.antigens={CD70: {aml_positive_fraction: 1.0, negative_fraction: 0.0}}",
        "resolution.car_t_agents=200",
        "resolution.blast_agents=200",
    )


def test_tiny_residual_population_can_go_extinct():
    extinct = 0
    for seed in range(4):
        sim = Simulation(tiny_residual(seed))
        start = sim.blasts.total()
        assert 1 <= start < 5000
        sim.run()
        final = sim.blasts.total()
        assert final == int(final)
        extinct += final == 0
    assert extinct >= 1
