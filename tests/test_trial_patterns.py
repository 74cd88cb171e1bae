"""The dose-toxicity patterns of the reported trials, from the mechanisms (issue 4).

Each arm runs as a seeded cohort of ``N`` virtual patients (patients 0..N-1, the same
patients whatever else changes), so the rates are deterministic; the bounds below are set
from the reported counts, not from the model's output, and each says why.
"""

from functools import cache
from pathlib import Path

import pytest

from sim.scenario import with_param_set
from sim.workflows.calibrate import load_param_set
from sim.workflows.cohort import OUTCOMES, run_cohort
from tests.conftest import ROOT, scenario

pytestmark = pytest.mark.slow
N = 40


EARLIER = ROOT / "scenarios" / "params" / "dose_step_off.yaml"  # the set without the dose-step mechanisms


@cache
def cohort(name: str, *overrides: str, params: Path | None = None, n: int = N):
    sc = scenario(name, *overrides)
    return run_cohort(with_param_set(sc, load_param_set(str(params)) if params else None), n, workers=2).patients


def test_cd33_at_its_low_doses_gives_crs_at_most_2_and_no_icans():
    # reported: CRS grades 0-2 only and ICANS grade 0 in 12 of 12. A count of 0 of 12 lies in
    # the model's central 95% predictive interval only if the model's rate is below ~0.26
    # ((1 - r)^12 >= 0.025); 0.2 leaves room for the 40-patient estimate.
    d = cohort("cd33_post_hsct.all_doses")
    assert (d.crs_grade >= 3).mean() < 0.2
    assert (d.icans_grade >= 1).mean() < 0.2


def test_il18_armored_cll1_car_expands_at_low_dose_and_gives_crs_3():
    # reported: robust expansion at 0.03-0.3e6/kg attributed to IL-18; CRS 3-4 in 1 of 3 and 1 of 2
    # (together 2 of 5: a model rate below 0.2 would make that count unlikely, P < 0.06).
    armored = cohort("cll1_savvy_il18.dose_0.03e6")
    plain = cohort("cll1_savvy_il18.dose_0.03e6", "product.armoring=none")
    ratio = armored.car_t_peak_cells_per_ul_blood.median() / plain.car_t_peak_cells_per_ul_blood.median()
    assert ratio > 3.0  # same patients and dose: IL-18 alone must raise the median peak several-fold
    for arm in ("cll1_savvy_il18.dose_0.03e6", "cll1_savvy_il18.dose_0.3e6"):
        assert (cohort(arm).crs_grade >= 3).mean() >= 0.2


def test_cd19_in_t821_responds_in_nearly_all_with_grade_3_4_cytopenias():
    # reported: response in 10 of 10 and grade 3-4 cytopenias in 10 of 10. 10 of 10 lies in the
    # central 95% predictive interval only if the model's rate is above 0.69 (r^10 >= 0.025).
    d = cohort("cd19_t821.all_doses")
    assert OUTCOMES["overall_response"](d).mean() >= 0.69
    assert (d.neutropenia_grade >= 3).mean() >= 0.69


def test_cd123_crs_rises_from_grade_2_at_3e6_to_grade_4_5_with_iec_hs_at_10e6():
    # reported: grade 2 in 3 of 3 at 3e6/kg; grade 4-5 with IEC-HS in 3 of 3 at 10e6/kg. 3 of 3 lies
    # in the central 95% predictive interval only if the model's rate is above ~0.3 (r^3 >= 0.025);
    # issue 4 asks for "mostly grade 2" at 3e6/kg, so grade 2 must be the grade of most patients.
    low, high = cd123_arms(None)
    assert (low.crs_grade == 2).mean() > 0.5
    assert (high.crs_grade >= 4).mean() >= 0.3
    assert high.iec_hs.mean() >= 0.3


def test_the_cd123_dose_step_comes_from_its_mechanisms():
    """Without the expansion limit, endothelial engagement, capillary leak, bystander IFN-gamma and
    steroid-refractory macrophages, the first 20 of the same patients get no grade 4-5 CRS at 10e6/kg (at
    most 1 of 20: below 0.1, where the reported 3 of 3 has P < 0.001) and the CAR T peak barely follows the
    dose (median ratio < 1.5)."""
    low, high = cd123_arms(EARLIER, n=N // 2)
    assert (high.crs_grade >= 4).mean() < 0.1
    assert high.car_t_peak_cells_per_ul_blood.median() < 1.5 * low.car_t_peak_cells_per_ul_blood.median()


def cd123_arms(params: Path | None, n: int = N):
    return cohort("cd123_dasatinib.dose_3e6", params=params, n=n), cohort("cd123_dasatinib.dose_10e6", params=params, n=n)
