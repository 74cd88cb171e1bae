"""Targeting logic: Hill activation, OR/AND, and the iCAR veto."""

import numpy as np

from sim.antigens import Stage, default_atlas
from sim.core.common import activation, hill
from sim.model import Simulation
from tests.conftest import scenario

K, N = 300.0, 2.0


def act(d1, d2=0.0, logic=0, d_inh=0.0, imax=0.0):
    return activation(d1, d2, logic, d_inh, K, N, imax, 1e4, 2.0)


def test_hill_activation_and_logic():
    assert act(0.0) == 0.0
    assert abs(act(K) - 0.5) < 1e-12
    assert act(1e5) > 0.99
    lo, hi = act(100.0), act(1e4)
    assert act(100.0, 1e4, logic=1) >= max(lo, hi)  # OR: either antigen
    assert act(100.0, 1e4, logic=2) <= min(lo, hi)  # AND: both needed
    assert act(1e4, 0.0, logic=2) == 0.0


def test_icar_vetoes_only_cells_carrying_its_antigen():
    for d in (50.0, 500.0, 5e3, 5e4):
        assert act(d, d_inh=0.0, imax=0.95) == act(d)  # no iCAR antigen: untouched
        assert act(d, d_inh=1e5, imax=0.95) < 0.1 * act(d) + 1e-15
    assert act(5e3, d_inh=1e5, imax=0.0) == act(5e3)  # I_max = 0: no effect
    expected = 1 - 0.95 * hill(1e4, 1e4, 2.0)
    assert abs(act(5e3, d_inh=1e4, imax=0.95) / act(5e3) - expected) < 1e-12


def test_cd16_icar_protects_late_neutrophils_not_precursors():
    std = Simulation(scenario("cll1_standard", "horizon_days=1"))
    icar = Simulation(scenario("cll1_cd16_icar", "horizon_days=1"))
    for s in (Stage.HSPC, Stage.MYELOBLAST, Stage.PROMYELOCYTE, Stage.MYELOCYTE):
        assert icar.my_a_kill[s] == std.my_a_kill[s]
    for s in (Stage.BAND, Stage.RESERVE, Stage.BLOOD_NEUTROPHIL):
        assert icar.my_a_kill[s] < 0.2 * std.my_a_kill[s]
    # blasts: identical for blast agents without CD16
    cd16 = default_atlas().index("CD16")
    assert np.array_equal(std.blasts.x[:, : std.blasts.n], icar.blasts.x[:, : icar.blasts.n])
    assert np.all(std.blasts.x[cd16, : std.blasts.n] == 0)  # this patient is CD16-negative


def test_cd16_icar_patient_loses_fewer_mature_neutrophils():
    mature = ("killed_metamyelocyte", "killed_band", "killed_reserve", "killed_blood_neutrophil")
    killed = {}
    for name in ("cll1_standard", "cll1_cd16_icar"):
        r = Simulation(scenario(name)).run()
        killed[name] = sum(r.summary["myeloid_killed"][k.removeprefix("killed_")] for k in mature)
    assert killed["cll1_cd16_icar"] < 0.8 * killed["cll1_standard"], killed
