"""Cohort outputs in the formats pharmacometric tools read.

``nonmem_dataset`` turns a cohort folder (``patients.parquet`` and ``trajectories.parquet``)
into a NONMEM-style event table, the input of NONMEM, nlmixr2 and Monolix: one dose record
per patient (EVID 1, AMT the CAR+ cells/kg given, the whole dose at TIME 0: split doses are
summed) and one observation record per patient, day and series (EVID 0, DV in the series'
own unit, told apart by DVID and CMT). TIME is in hours after the first infusion; days
after death are not observed and carry no record.
"""

from __future__ import annotations

import pandas as pd

from sim.workflows.cohort import TRAJECTORIES

#: DVID (and CMT, dose in CMT 1) of each exported series, with its unit.
NONMEM_SERIES = {
    "car_t_blood_per_ul": (1, "CAR T cells/uL blood"),
    "anc_1e9_per_l": (2, "ANC 1e9/L"),
    "blasts_total": (3, "leukemic blasts, cells"),
    "il6_pg_per_ml": (4, "IL-6 pg/mL blood"),
}
COLUMNS = ("ID", "TIME", "DV", "EVID", "AMT", "CMT", "DVID", "MDV", "WT", "AGE")


def nonmem_dataset(patients: pd.DataFrame, trajectories: pd.DataFrame) -> pd.DataFrame:
    """The NONMEM-style table (``COLUMNS``), sorted by ID, TIME and dose before observations."""
    assert set(NONMEM_SERIES) == set(TRAJECTORIES)
    cov = patients.set_index("patient_index")[["patient_weight_kg", "patient_age_years"]]
    doses = pd.DataFrame(
        {
            "ID": patients.patient_index + 1,
            "TIME": 0.0,
            "DV": 0.0,
            "EVID": 1,
            "AMT": patients.dose_given_cells_per_kg,
            "CMT": 1,
            "DVID": 0,
            "MDV": 1,
        }
    )
    obs = []
    for name, (dvid, _) in NONMEM_SERIES.items():
        t = trajectories[["patient_index", "day", name]].dropna()
        obs.append(
            pd.DataFrame(
                {
                    "ID": t.patient_index + 1,
                    "TIME": t.day * 24.0,
                    "DV": t[name],
                    "EVID": 0,
                    "AMT": 0.0,
                    "CMT": dvid + 1,
                    "DVID": dvid,
                    "MDV": 0,
                }
            )
        )
    table = pd.concat([doses, *obs], ignore_index=True)
    table["WT"] = cov.patient_weight_kg.reindex(table.ID - 1).to_numpy()
    table["AGE"] = cov.patient_age_years.reindex(table.ID - 1).to_numpy()
    table = table.sort_values(["ID", "TIME", "EVID", "DVID"], ascending=[True, True, False, True], kind="stable")
    return table[list(COLUMNS)].reset_index(drop=True)


def dvid_legend() -> str:
    """One line per DVID, for the header comment of an exported file."""
    return "; ".join(f"DVID {d} (CMT {d + 1}): {unit}" for d, unit in NONMEM_SERIES.values())
