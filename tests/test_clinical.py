"""Clinical readouts from hand-built states: CRS and ICANS grading, infections, survival."""

import math

import numpy as np
from numba import njit

from sim.clinical import CRS5_HOURS, Clinic, ClinicalState, Infection
from sim.core import clinic as cc
from sim.core.clinic import Readings
from sim.core.random import new_state
from sim.model import Simulation
from sim.params import CRS_THRESHOLDS, ICANS_THRESHOLDS
from sim.readouts import infection_summary, survival
from tests.conftest import scenario


def readings(il6: float = 0.0, ifng: float = 0.0, anc: float = 3.0, engaged_car_t_per_ul: float = 0.0) -> Readings:
    """What the clinic reads: blood cytokines, ANC, engaged CAR T cells; a marrow of 50% blasts (no remission)."""
    return Readings(il6, ifng, engaged_car_t_per_ul, anc, 50.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 150.0, 0.0)


def clinic(*sets: str, **overrides):
    """A fresh clinic for the first patient of a scenario (cll1_standard unless ``sets`` names another)."""
    name = sets[0] if sets else "cll1_standard"
    sim = Simulation(scenario(name, "horizon_days=1", *sets[1:], *[f"{k}={v}" for k, v in overrides.items()]))
    return Clinic(sim), sim


def hold(c, r: Readings, hours: int, t0: float = 1.0) -> None:
    for h in range(hours):
        c.update(t0 + h / 24, t0 + (h + 1) / 24, r)


def test_fever_index_sets_grade1():
    """An index twice the fever threshold (and far below hypotension) is grade 1; a higher fever threshold, grade 0."""
    for fever, grade in ((1.0, 1), (3.0, 0)):
        c, _ = clinic(**{"params.crs_fever_index": fever})
        hold(c, readings(il6=2.0 * c.p.il6_ref_pg_per_ml), 48)  # index -> 2
        assert c.state.crs_now == grade


def test_cytokines_above_grade3_threshold_give_crs3():
    c, _ = clinic(**{"interventions.tocilizumab_at_crs_grade": "null"})
    il6 = 1.2 * CRS_THRESHOLDS[1] * c.p.il6_ref_pg_per_ml  # drive 1.2x the grade-3 (one vasopressor) threshold
    hold(c, readings(il6=il6), 48)
    assert c.state.crs_now == 3
    assert c.state.steroids_given  # rule: steroids at CRS >= 3


def test_tocilizumab_given_at_grade2_lowers_the_index():
    c, _ = clinic()
    il6 = 1.2 * CRS_THRESHOLDS[1] * c.p.il6_ref_pg_per_ml
    hold(c, readings(il6=il6), 48)
    assert c.state.toci_given and c.state.crs_now < 3  # IL-6 signalling blocked


def test_crs_grade5_needs_a_sustained_extreme_index():
    c, _ = clinic(**{"interventions.tocilizumab_at_crs_grade": "null"})
    extreme = readings(il6=1.5 * CRS_THRESHOLDS[3] * c.p.il6_ref_pg_per_ml)
    hold(c, extreme, 8)  # the index crosses the grade-5 level after ~7 h: not yet sustained
    assert c.state.crs_now == 4 and c.state.death_day is None
    hold(c, extreme, int(CRS5_HOURS) + 24, t0=2.0)
    assert c.state.crs_now == 5 and c.state.death_cause == "CRS"


def test_icans_grade_from_neurotoxicity_index():
    c, _ = clinic()
    ref = c.p.icans_ref_pg_per_ml
    level = 1.5 * ICANS_THRESHOLDS[1] * ref  # sqrt(IL6 * IFN) / ref = 1.5 x grade-2 threshold
    hold(c, readings(il6=level, ifng=level), 96)
    assert c.state.icans_now == 2
    assert c.state.steroids_given  # steroids at ICANS >= 2


def test_infection_hazard_rises_as_anc_falls_and_with_duration():
    c, _ = clinic()
    h = {anc: c.hazards_per_day(5.0, anc)["bacterial"] for anc in (2.0, 0.8, 0.3, 0.05)}
    assert h[2.0] < h[0.8] < h[0.3] < h[0.05]
    c.cs[cc.NEUTROPENIC_DAYS] = 20.0
    assert c.hazards_per_day(5.0, 0.05)["bacterial"] > h[0.05]
    assert c.hazards_per_day(5.0, 0.05)["fungal"] > c.hazards_per_day(5.0, 2.0)["fungal"] * 0 + c.p.infection_fungal_per_day
    c.cs[cc.NEUTROPENIC_DAYS] = 0.0
    assert math.isclose(c.hazards_per_day(5.0, 0.05)["fungal"], c.p.infection_fungal_per_day)  # fungal comes late
    assert c.hazards_per_day(1.0, 2.0)["viral"] < c.hazards_per_day(20.0, 2.0)["viral"]  # viral later


def test_steroids_raise_infection_hazard():
    c, _ = clinic()
    base = c.hazards_per_day(5.0, 0.3)
    c.cs[cc.STEROID_UNTIL] = 10.0
    assert all(c.hazards_per_day(5.0, 0.3)[k] > base[k] for k in base)


def test_infection_and_survival_summaries():
    inf = [Infection(3.0, "bacterial", False), Infection(25.0, "fungal", True), Infection(40.0, "viral", False)]
    s = infection_summary(inf, 60.0)
    assert s["infection_bacterial_day28"] == 1 and s["infection_fungal_day28"] == 1 and s["infection_viral_day28"] == 0
    assert s["infection_viral_total"] == 1 and s["infection_first_day"] == 3.0
    state = ClinicalState(remission_day=10.0, relapse_day=100.0, death_day=200.0, death_cause="progression")
    v = survival(state, 365.0)
    assert v["lfs_days"] == 100.0 and v["os_days"] == 200.0 and v["lfs_event"] and v["death"]
    censored = survival(ClinicalState(remission_day=10.0), 365.0)
    assert censored["os_days"] == 365.0 and not censored["lfs_event"]


def test_one_year_horizon_gives_relapse_and_survival():
    sc = scenario("cll1_standard", "horizon_days=365", "dt_hours=2", "resolution.car_t_agents=200", "resolution.blast_agents=200")
    s = Simulation(sc, 0).run().summary
    assert 0 < s["os_days"] <= 365 and 0 <= s["lfs_days"] <= s["os_days"]
    assert s["death"] == (s["death_day"] is not None)
    if s["relapse"]:
        assert s["remission_day"] < s["relapse_day"] <= s["os_days"]


@njit
def _infected_by_day(k, r, days, replicates, rs):
    """Share of replicate courses with at least one infection of each type by ``days`` (constant readings)."""
    hits = np.zeros(3)
    for _ in range(replicates):
        cs, inf = cc.fresh_state()
        for step in range(days * 24):
            cc.nb_clinic_update(k, cs, inf, r, step / 24.0, (step + 1) / 24.0, rs)
        got = np.zeros(3)
        for i in range(int(cs[cc.N_INFECTIONS])):
            got[int(inf[i, 1])] = 1.0
        hits += got
    return hits / replicates


def test_infection_draws_follow_the_hazard():
    """At a constant ANC of 3.0 (no neutropenia, no steroids, no HSCT), P(infection of a type by day
    28) = 1 - exp(-sum of hourly hazards). 20,000 seeded courses (stream seed 3): binomial standard
    error <= 0.0027; tolerance 4 standard errors."""
    c, _ = clinic()
    replicates = 20_000
    observed = _infected_by_day(c.k, readings(anc=3.0), 28, replicates, new_state(3, 0))
    for kind in range(3):
        h = sum(cc.infection_hazards_per_day(c.k, c.cs, step / 24.0, 3.0, 0.0)[kind] for step in range(28 * 24)) / 24.0
        expected = -math.expm1(-h)
        se = math.sqrt(expected * (1 - expected) / replicates)
        assert abs(observed[kind] - expected) < 4 * se, (kind, observed[kind], expected)
