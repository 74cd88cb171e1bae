"""The outcome registry: every cohort outcome once, with its rule, unit and meaning.

Cohort summaries, ``compare``, sweeps, screens, ``validate`` and the reports read their
outcomes from here; a new outcome is one entry. Binary outcomes are rules on the
patients table (one row per patient, the columns of ``patients.parquet``); continuous
outcomes are columns of that table, summarized by median and 10-90% range.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Outcome:
    """One binary outcome: a rule on the patients table."""

    name: str
    description: str
    rule: Callable[[pd.DataFrame], pd.Series]


@dataclass(frozen=True)
class Measure:
    """One continuous outcome: a column of the patients table."""

    name: str
    unit: str
    description: str


def _response_in(*categories: str) -> Callable[[pd.DataFrame], pd.Series]:
    return lambda d: d.response_day28.isin(categories)


def _flag(column: str) -> Callable[[pd.DataFrame], pd.Series]:
    return lambda d: d[column].astype(bool)


def _at_least(column: str, level: float) -> Callable[[pd.DataFrame], pd.Series]:
    return lambda d: d[column] >= level


BINARY: dict[str, Outcome] = {
    o.name: o
    for o in (
        Outcome("cr", "ELN 2022 CR at day 28 (counts recovered)", lambda d: d.response_day28 == "CR"),
        Outcome("cr_crh", "ELN 2022 CR or CRh at day 28", _response_in("CR", "CRh")),
        Outcome("cr_cri", "CR, CRh or CRi at day 28 (ELN 2022 composite)", _response_in("CR", "CRh", "CRi")),
        Outcome("cr_cri_mlfs", "marrow remission at day 28: CR, CRh, CRi or MLFS", _response_in("CR", "CRh", "CRi", "MLFS")),
        Outcome("overall_response", "CR, CRh, CRi, MLFS or PR at day 28", _response_in("CR", "CRh", "CRi", "MLFS", "PR")),
        Outcome(
            "best_cr_cri", "CR, CRh or CRi at any assessment to the horizon", lambda d: d.best_response.isin(("CR", "CRh", "CRi"))
        ),
        Outcome(
            "best_overall_response",
            "CR, CRh, CRi, MLFS or PR at any assessment to the horizon",
            lambda d: d.best_response.isin(("CR", "CRh", "CRi", "MLFS", "PR")),
        ),
        Outcome("progressive_disease", "ELN 2022 progressive disease at day 28", _response_in("PD")),
        Outcome(
            "mrd_negative_cr", "CR, CRh or CRi without flow MRD (below outputs.mrd_sensitivity) at day 28", _flag("mrd_negative")
        ),
        Outcome("crs_any", "CRS of any grade", _at_least("crs_grade", 1)),
        Outcome("crs_grade_ge2", "CRS grade 2 or higher", _at_least("crs_grade", 2)),
        Outcome("crs_grade_ge3", "CRS grade 3 or higher", _at_least("crs_grade", 3)),
        Outcome("icans_any", "ICANS of any grade", _at_least("icans_grade", 1)),
        Outcome("icans_grade_ge3", "ICANS grade 3 or higher", _at_least("icans_grade", 3)),
        Outcome("iec_hs", "IEC-associated HLH-like syndrome", _flag("iec_hs")),
        Outcome(
            "neutropenia_grade4", "CTCAE grade-4 neutropenia (ANC < 0.5e9/L) after infusion", _at_least("neutropenia_grade", 4)
        ),
        Outcome("neutropenia_grade_ge3", "CTCAE grade 3-4 neutropenia after infusion", _at_least("neutropenia_grade", 3)),
        Outcome("infection_any_day28", "any infection by day 28", _flag("infection_any_day28")),
        Outcome("infection_bacterial_day28", "bacterial infection by day 28", lambda d: d.infection_bacterial_day28 > 0),
        Outcome("infection_fungal_day28", "fungal infection by day 28", lambda d: d.infection_fungal_day28 > 0),
        Outcome("infection_viral_day28", "viral infection by day 28", lambda d: d.infection_viral_day28 > 0),
        Outcome("death_by_day28", "death by day 28", lambda d: d.death.astype(bool) & (d.os_days <= 28.0)),
        Outcome("death", "death within the horizon", _flag("death")),
        Outcome("death_progression", "death from the leukemia within the horizon", lambda d: d.death_cause == "progression"),
        Outcome("platelet_transfusion", "at least one platelet transfusion", lambda d: d.platelet_transfusions > 0),
        Outcome("relapse", "relapse within the horizon", _flag("relapse")),
        Outcome(
            "relapse_target_negative", "relapse with mostly CAR-target-negative marrow blasts", _flag("relapse_target_negative")
        ),
        Outcome(
            "relapse_antigen_negative",
            "relapse with mostly CAR-antigen-negative marrow blasts (pre-existing or lost under pressure)",
            _flag("relapse_antigen_negative"),
        ),
        Outcome(
            "infusion_held",
            "a later infusion held (CRS at the hold grade, or CAR T cells eliminated)",
            lambda d: d.infusions_held > 0,
        ),
        Outcome(
            "car_t_eliminated",
            "CAR T cells eliminated (suicide switch or depleting antibody)",
            lambda d: d.car_t_eliminated_day.notna(),
        ),
        Outcome("hsct", "allo-HSCT within the horizon", lambda d: d.hsct_day.notna()),
        Outcome("gvhd_any", "acute GVHD of any grade", _at_least("gvhd_grade", 1)),
        Outcome("gvhd_grade_ge3", "acute GVHD grade III-IV", _at_least("gvhd_grade", 3)),
        Outcome("relapse_icar_protected", "relapse with mostly iCAR-protected marrow blasts", _flag("relapse_icar_protected")),
    )
}

CONTINUOUS: dict[str, Measure] = {
    m.name: m
    for m in (
        Measure("anc_nadir_1e9_per_l", "1e9/L", "lowest ANC after infusion"),
        Measure("days_anc_below_0_5", "d", "days with ANC < 0.5e9/L after infusion"),
        Measure("days_anc_below_0_1", "d", "days with ANC < 0.1e9/L after infusion"),
        Measure("car_t_peak_cells_per_ul_blood", "cells/uL", "peak CAR T cells in blood"),
        Measure("car_t_tmax_days", "d", "day of the CAR T peak"),
        Measure("platelet_nadir_1e9_per_l", "1e9/L", "lowest platelet count after infusion (the patient's own)"),
        Measure("platelets_day28_1e9_per_l", "1e9/L", "platelet count at day 28 (the patient's own)"),
        Measure("platelet_transfusions", "units", "platelet transfusions given"),
        Measure("mrd_level_day28", "fraction", "marrow blasts among marrow nucleated cells at day 28"),
        Measure("il6_peak_pg_per_ml", "pg/mL", "peak IL-6 in blood"),
        Measure("bm_blast_percent_day28", "%", "marrow blasts at day 28"),
        Measure("os_days", "d", "overall survival, censored at the horizon"),
        Measure("lfs_days", "d", "leukemia-free survival, censored at the horizon"),
        Measure("hspc_loss_fraction", "fraction", "largest loss of HSPC after infusion"),
        Measure("car_t_day28_cells_per_ul_blood", "cells/uL", "CAR T cells in blood at day 28"),
        Measure("blasts_total_day28", "cells", "leukemic blasts in the body at day 28"),
        Measure("blasts_target_negative_day28", "cells", "CAR-target-negative blasts at day 28"),
    )
}


def rules(names: tuple[str, ...] | None = None) -> dict[str, Callable[[pd.DataFrame], pd.Series]]:
    """Name -> rule of the binary outcomes ``names``, in that order (all, in registry order, by default)."""
    return {n: BINARY[n].rule for n in (BINARY if names is None else names)}
