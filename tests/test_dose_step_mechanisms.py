"""The mechanisms of the CD123 dose step (on in the shipped parameter set since 2026-11-28).

Each test switches one on or off alone and checks what it does, on the same patient.
"""

import math

import numpy as np
import pytest

from sim.clinical import Clinic
from sim.core.common import BM, EMD, PB, hill
from sim.core.cytokines import IFNG, IL18, MAC, CytokineConst, nb_update_cytokines
from sim.core.engage import add_tissue_engagement
from sim.model import Simulation
from sim.params import CRS_THRESHOLDS
from tests.conftest import scenario
from tests.test_clinical import hold, readings

SHORT = ("resolution.car_t_agents=300", "resolution.blast_agents=300")


def car_t_total(result) -> np.ndarray:
    ts = result.timeseries
    cells = ts.car_t_memory + ts.car_t_effector + ts.car_t_exhausted
    return cells.groupby(ts.t_days).sum().to_numpy()


def test_the_expansion_limit_caps_car_t_cells_at_that_fold_of_the_infused_cells():
    """Limit 20: division stops as the CAR T count reaches 20x the dose (one step may overshoot a
    little: at most r_cap x dt = 6% of the cells divide in an hour). Without it the product grows past it."""
    free = Simulation(scenario("cll1_standard", "horizon_days=14", "params.car_t_expansion_limit_fold=1e12", *SHORT))
    capped = Simulation(scenario("cll1_standard", "horizon_days=14", "params.car_t_expansion_limit_fold=20", *SHORT))
    assert capped.car_t_room == 20 * capped.dose_cells and free.car_t_room == free.p.car_t_capacity_cells
    assert car_t_total(free.run()).max() > 40 * free.dose_cells
    assert car_t_total(capped.run()).max() <= 1.06 * 20 * capped.dose_cells


def test_an_il18_armored_product_is_not_bound_by_the_expansion_limit():
    sim = Simulation(scenario("cll1_savvy_il18.dose_0.3e6", "params.car_t_expansion_limit_fold=20"))
    assert sim.car_t_room == sim.p.car_t_capacity_cells


def test_tissue_engagement_stimulates_a_cd123_product_in_marrow_and_blood_only():
    """CD123 has a tissue density in the atlas (endothelium); CLL1 has none."""
    on = "params.tissue_engagement_per_h=1.0"
    cd123 = Simulation(scenario("cd123_dasatinib.dose_3e6", on))
    assert cd123.tissue_sigma == pytest.approx(cd123.tissue_a_stim) and 0.0 < cd123.tissue_a_stim < 1.0
    sigma = np.zeros(3)
    add_tissue_engagement(cd123.k.engage, sigma)
    assert sigma[BM] == sigma[PB] == cd123.tissue_sigma and sigma[EMD] == 0.0
    assert Simulation(scenario("cll1_standard", on)).tissue_sigma == 0.0


def test_tissue_engagement_keeps_a_cd123_product_expanding_after_the_blasts():
    """Same patient: engaged endothelium is antigen that is never cleared, so more CAR T cells at day 28."""
    arm = ("cd123_dasatinib.dose_3e6", "horizon_days=28", *SHORT)
    off = Simulation(scenario(*arm, "params.tissue_engagement_per_h=0")).run()
    on = Simulation(scenario(*arm, "params.tissue_engagement_per_h=1.0")).run()
    assert car_t_total(on)[-1] > 2.0 * car_t_total(off)[-1]


def single_compartment_cytokines(byst_fg: float, damp: float, mac_damp: float, il18: float) -> np.ndarray:
    """One present compartment, no engagements, 1e9 CAR T cells in 1 L, IL-18 held by a huge half-life."""
    cyt = np.zeros((3, 4))
    cyt[BM, IL18] = il18
    present = np.array([True, False, False])
    zeros = np.zeros(3)
    k = CytokineConst(
        ifng_pg_per_engagement=1e-3,
        k_il6_per_h=math.log(2) / 2.0,
        k_ifng_per_h=math.log(2) / 0.5,
        k_il18_per_h=1e-9,
        il6_baseline_pg_per_ml=3.0,
        il18_baseline_pg_per_ml=370.0,
        il6_max_pg_per_ml=1e4,
        macrophage_activation_per_h=0.2,
        macrophage_ifng_half_sat_pg_per_ml=1500.0,
        macrophage_decay_per_h=0.05,
        il18_macrophage_fold=1.0,
        armor_fg_per_cell_h=0.0,
        il18_half_sat_pg_per_ml=2000.0,
        il18_boost_max=0.0,
        exchange_per_h=1.0,
        bystander_fg_per_cell_h=byst_fg,
        bystander_il18_half_sat_pg_per_ml=3e4,
        # mac_damp = 1 - sensitivity (1 - damp): solve for the sensitivity that gives the asked mac_damp
        macrophage_steroid_sensitivity=0.0 if damp == 1.0 else (1.0 - mac_damp) / (1.0 - damp),
        macrophage_kill_half_sat_per_ml_h=1e6,
    )
    car_t = np.array([1e9, 0.0, 0.0])
    nb_update_cytokines(96.0, k, cyt, zeros, car_t, 0.0, np.array([1.0, 5.0, 1.0]), present, 1.0, damp)
    return cyt[BM]


def test_bystander_ifng_needs_no_antigen_and_follows_il18():
    """IFN-gamma steady state = production / clearance: 1 fg x 1e9 cells x hill(3e4, 3e4, 4) = 0.5 ug/h
    in 1000 mL, cleared at ln2/0.5 h: 0.5e6 / 1000 / 1.386 = 361 pg/mL (within 1%: 96 h is 192 half-lives)."""
    expected = 1e-3 * 1e9 * hill(3e4, 3e4, 4.0) / 1000.0 / (math.log(2) / 0.5)
    assert single_compartment_cytokines(1.0, 1.0, 1.0, 370.0 + 3e4)[IFNG] == pytest.approx(expected, rel=0.01)
    assert single_compartment_cytokines(0.0, 1.0, 1.0, 370.0 + 3e4)[IFNG] == 0.0
    assert single_compartment_cytokines(1.0, 1.0, 1.0, 370.0)[IFNG] == 0.0  # IL-18 at baseline


def test_steroid_refractory_macrophages_are_not_damped():
    """Steroids (damp 0.5) halve CAR T IFN-gamma; with mac_damp 1 macrophage activation reaches the
    steady state of an undamped drive on that IFN-gamma, drive / (drive + k_dec) (96 h: 10 relaxation times)."""
    il18 = 370.0 + 1e5  # saturating bystander activation
    no_steroids = single_compartment_cytokines(3.0, 1.0, 1.0, il18)
    damped = single_compartment_cytokines(3.0, 0.5, 0.5, il18)
    refractory = single_compartment_cytokines(3.0, 0.5, 1.0, il18)
    assert damped[MAC] < refractory[MAC]
    drive = lambda ifng: 0.2 * hill(ifng, 1500.0, 3.0)  # noqa: E731
    assert refractory[MAC] == pytest.approx(drive(refractory[IFNG]) / (drive(refractory[IFNG]) + 0.05), rel=0.01)
    assert refractory[IFNG] == pytest.approx(0.5 * no_steroids[IFNG], rel=0.01)


@pytest.mark.parametrize("toci", ["null", 1])
def test_vascular_leak_adds_to_the_crs_index_without_cytokines_and_is_not_blocked_by_tocilizumab(toci):
    """No cytokines; tissue-engaged CAR T cells at the half-leak level give index leak_max / 2."""
    half_leak_index = 1.25 * CRS_THRESHOLDS[1]  # inside the grade-3 band (one vasopressor)
    assert half_leak_index < CRS_THRESHOLDS[2]
    sim = Simulation(
        scenario(
            "cd123_dasatinib.dose_3e6",
            f"params.vascular_leak_index_max={2 * half_leak_index}",
            f"interventions.tocilizumab_at_crs_grade={toci}",
        )
    )
    c = Clinic(sim)
    hold(c, readings(engaged_car_t_per_ul=sim.p.vascular_leak_half_car_t_per_ul), 96)
    assert c.state.inflammation == pytest.approx(half_leak_index, rel=1e-3)
    assert c.state.crs_now == 3


def test_vascular_leak_needs_the_target_on_endothelium():
    sim = Simulation(scenario("cll1_standard", "params.vascular_leak_index_max=100"))
    assert sim.tissue_a_stim == 0.0  # so CAR T cells in blood engage no endothelium
    c = Clinic(sim)
    hold(c, readings(engaged_car_t_per_ul=1e4 * sim.tissue_a_stim), 48)
    assert c.state.inflammation == 0.0
