"""NONMEM-style export of a cohort (issue 26): records, units, order, and bad input."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd

from sim.export import COLUMNS, nonmem_dataset
from sim.scenario import load_scenario
from sim.workflows.cohort import run_cohort, trajectories_long
from tests.conftest import SCENARIOS


def test_nonmem_records_from_a_hand_built_cohort():
    patients = pd.DataFrame(
        {"patient_index": [0, 1], "dose_given_cells_per_kg": [1e6, 3e5], "patient_weight_kg": [70.0, 20.0],
         "patient_age_years": [50.0, 8.0]}
    )  # fmt: skip
    traj = pd.DataFrame(
        {"patient_index": [0, 0, 1, 1], "day": [0, 1, 0, 1], "car_t_blood_per_ul": [0.1, 5.0, 0.2, np.nan],
         "anc_1e9_per_l": [1.0, 0.4, 2.0, np.nan], "blasts_total": [1e11, 5e10, 2e11, np.nan],
         "il6_pg_per_ml": [3.0, 40.0, 3.0, np.nan]}
    )  # fmt: skip
    t = nonmem_dataset(patients, traj)
    assert list(t.columns) == list(COLUMNS)
    # one dose each, first; 4 series x 2 days for patient 1, 4 x 1 for patient 2 (died before day 1)
    assert len(t) == 2 + 8 + 4
    first = t.groupby("ID").head(1)
    assert (first.EVID == 1).all() and (first.MDV == 1).all() and list(first.AMT) == [1e6, 3e5]
    obs = t[t.EVID == 0]
    assert set(obs.DVID) == {1, 2, 3, 4} and (obs.CMT == obs.DVID + 1).all() and (obs.MDV == 0).all()
    assert obs[(obs.ID == 1) & (obs.DVID == 2) & (obs.TIME == 24.0)].DV.item() == 0.4  # ANC on day 1, in hours
    assert list(t[t.ID == 2].WT.unique()) == [20.0] and list(t[t.ID == 2].AGE.unique()) == [8.0]


def test_export_cli_writes_a_readable_csv_and_refuses_a_non_cohort_folder(tmp_path):
    sc = load_scenario(SCENARIOS / "cll1_standard.yaml", ["horizon_days=4"])
    result = run_cohort(sc, 3, workers=1)
    result.patients.to_parquet(tmp_path / "patients.parquet")
    trajectories_long(result).to_parquet(tmp_path / "trajectories.parquet")
    r = subprocess.run([sys.executable, "-m", "sim.cli", "export", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    table = pd.read_csv(tmp_path / "nonmem.csv", comment="#")
    assert table.ID.nunique() == 3 and (table.EVID == 1).sum() == 3
    assert len(table) == 3 + 3 * 4 * 5  # a dose and 4 series on days 0-4 per patient
    empty = tmp_path / "empty"
    empty.mkdir()
    r = subprocess.run([sys.executable, "-m", "sim.cli", "export", str(empty)], capture_output=True, text=True)
    assert r.returncode == 2 and "patients.parquet missing" in r.stderr and "Traceback" not in r.stderr
    assert list(empty.iterdir()) == []
