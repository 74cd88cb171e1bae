"""Virtual patients: the antigen-negative blast share as a between-patient distribution."""

import dataclasses

import numpy as np
import pytest

from sim.errors import UserError
from sim.patient import sample_patient
from tests.conftest import scenario

CLL1 = "patient.antigens={CLL1: {aml_positive_fraction: 1.0, negative_fraction: 0.01%s}}"


def negative_fractions(sc, n: int) -> np.ndarray:
    return np.array([sample_patient(sc, i).antigens["CLL1"].negative_fraction for i in range(n)])


def test_without_a_spread_every_positive_patient_has_the_population_share():
    assert set(negative_fractions(scenario("cll1_standard", CLL1 % ""), 50)) == {0.01}


def test_the_share_is_log_normal_around_the_population_value():
    """2000 seeded patients, sd_log 0.8: log-shares have mean log(0.01) and sd 0.8.

    Clipping at 1 needs z > 5.8 (never drawn here). The standard errors are
    0.8 / sqrt(2000) = 0.018 for the mean and 0.8 / sqrt(4000) = 0.013 for the sd;
    the tolerances are 4 of them.
    """
    logs = np.log(negative_fractions(scenario("cll1_standard", CLL1 % ", negative_fraction_log_sd: 0.8"), 2000))
    assert logs.mean() == pytest.approx(np.log(0.01), abs=4 * 0.018)
    assert logs.std(ddof=1) == pytest.approx(0.8, abs=4 * 0.013)


def test_the_spread_moves_no_other_draw_of_the_patient():
    """Common random numbers: the share has its own stream."""
    fixed, spread = (scenario("cll1_standard", CLL1 % s) for s in ("", ", negative_fraction_log_sd: 1.0"))
    for i in range(20):
        a, b = sample_patient(fixed, i), sample_patient(spread, i)
        assert b.antigens["CLL1"].negative_fraction != a.antigens["CLL1"].negative_fraction
        b.antigens["CLL1"] = dataclasses.replace(b.antigens["CLL1"], negative_fraction=0.01)
        assert a == b


def test_the_share_is_at_most_one_and_reaches_the_patient_table():
    sc = scenario("cll1_standard", CLL1.replace("0.01", "0.5") % ", negative_fraction_log_sd: 3.0")
    shares = negative_fractions(sc, 200)
    assert shares.max() == 1.0 and shares.min() < 0.5
    assert sample_patient(sc, 0).flat()["CLL1_negative_fraction"] == shares[0]


def test_a_negative_spread_is_refused_with_its_key_path():
    with pytest.raises(UserError, match="negative_fraction_log_sd"):
        scenario("cll1_standard", CLL1 % ", negative_fraction_log_sd: -1")


def test_setting_one_key_of_a_distribution_the_file_leaves_out_keeps_its_other_defaults():
    """``--set patient.inflammatory_reactivity.sd_log=1`` changes the spread of the default."""
    from sim.scenario import Patient

    sc = scenario("cll1_standard", "patient.inflammatory_reactivity.sd_log=1.0")
    assert sc.patient.inflammatory_reactivity == Patient().inflammatory_reactivity.model_copy(update={"sd_log": 1.0})
