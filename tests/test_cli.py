"""`cart-sim run` end to end, and bad input: exit 2, one message, no traceback, nothing written."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import SCENARIOS

STD = str(SCENARIOS / "cll1_standard.yaml")


def cart_sim(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "sim.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def test_run_writes_the_three_outputs(tmp_path):
    out = tmp_path / "run"
    r = cart_sim("run", STD, "--set", "horizon_days=4", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["patient.png", "summary.json", "timeseries.parquet"]
    summary = json.loads((out / "summary.json").read_text())
    required = {
        "scenario",
        "seed",
        "version",
        "response_day28",
        "mrd_negative",
        "bm_blast_percent_day28",
        "crs_grade",
        "icans_grade",
        "iec_hs",
        "anc_nadir_1e9_per_l",
        "days_anc_below_0_5",
        "days_anc_below_0_1",
        "car_t_peak_cells_per_ul_blood",
        "car_t_tmax_days",
    }
    assert required <= set(summary)
    prov = summary["provenance"]  # what made it: versions, parameter set, command
    assert prov["cart_sim"] == summary["version"] and prov["packages"]["numba"] and prov["params_file"] is None
    assert prov["scenarios"] == [{"name": "cll1_standard", "seed": summary["seed"], "hash": prov["scenarios"][0]["hash"]}]
    assert len(prov["scenarios"][0]["hash"]) == 16 and "commit" in prov  # None outside a git checkout
    ts = pd.read_parquet(out / "timeseries.parquet")
    assert {
        "t_days",
        "compartment",
        "blasts",
        "car_t_memory",
        "car_t_effector",
        "car_t_exhausted",
        "anc_1e9_per_l",
        "il6_pg_per_ml",
        "ifng_pg_per_ml",
        "il18_pg_per_ml",
        "macrophage_activation",
        "hspc",
        "monocyte",
    } <= set(ts.columns)
    assert set(ts.compartment) == {"bm", "pb"}
    assert ts.t_days.min() == -5 and abs(ts.t_days.max() - 4) < 1e-9
    umask = os.umask(0)
    os.umask(umask)
    for p in out.iterdir():  # the mode of a plain open(): readable by others unless the umask says not
        assert p.stat().st_mode & 0o777 == 0o666 & ~umask, (p.name, oct(p.stat().st_mode))


def test_run_writes_the_time_series_pandas_would_and_never_imports_it(tmp_path):
    """`cart-sim run` writes its time series from arrays (pandas costs half its start-up): the same table."""
    from sim.model import Simulation
    from sim.scenario import load_scenario

    out = tmp_path / "run"
    code = (
        "import sys; from sim.cli import main; sys.argv = ['cart-sim', 'run', sys.argv[1], '--set', 'horizon_days=2', "
        "'--out', sys.argv[2]]\ntry: main()\nexcept SystemExit: pass\nprint('pandas' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code, STD, str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "False"
    expected = Simulation(load_scenario(STD, ["horizon_days=2"]), 0).run().timeseries
    pd.testing.assert_frame_equal(pd.read_parquet(out / "timeseries.parquet"), expected)


def test_parquet_from_columns_reads_back_as_pandas_writes_it(tmp_path):
    from sim.io import write_parquet

    cols = {"f": np.array([0.5, -1.0, np.nan]), "i": np.arange(3, dtype=np.int64), "b": np.array([True, False, True]),
            "s": np.array(["bm", "pb", "emd"])}  # fmt: skip
    write_parquet(tmp_path / "a.parquet", cols)
    write_parquet(tmp_path / "b.parquet", pd.DataFrame(cols))
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet"))


def test_seed_option_changes_seed(tmp_path):
    r = cart_sim("run", STD, "--seed", "7", "--set", "horizon_days=1", "--out", str(tmp_path / "o"))
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["seed"] == 7


def test_schema_is_json_schema():
    r = cart_sim("schema")
    assert r.returncode == 0
    schema = json.loads(r.stdout)
    assert schema["title"] == "Scenario" and "product" in schema["properties"]


def write(tmp_path, text, name="s.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


VALID = Path(STD).read_text()

# (id, file text or None for the bundled scenario, extra args, text the message must contain)
BAD_RUN_CASES = [
    ("missing-file", "MISSING", [], "expected an existing file"),
    ("empty-file", "", [], "the file is empty"),
    ("not-yaml", "name: [unclosed\n", [], "expected valid YAML"),
    ("yaml-list", "- a\n- b\n", [], "not a list"),
    ("unknown-top-key", VALID + "horizon_dayz: 3\n", [], "did you mean 'horizon_days'"),
    ("unknown-nested-key", None, ["--set", "product.car.logik=or"], "did you mean 'logic'"),
    ("wrong-type", None, ["--set", "horizon_days=lots"], "horizon_days = 'lots'"),
    ("negative-dose", None, ["--set", "product.dose_cells_per_kg=-1e6"], "a dose in CAR+ cells/kg > 0"),
    ("zero-dose", None, ["--set", "product.dose_cells_per_kg=0"], "a dose in CAR+ cells/kg > 0"),
    ("nan-dose", None, ["--set", "product.dose_cells_per_kg=nan"], "finite number"),
    ("dose-range-below-zero", None, ["--set", "product.dose_cells_per_kg={dist: uniform, low: -1, high: 5}"], "allows [-1, 5]"),
    ("negative-dt", None, ["--set", "dt_hours=-1"], "dt_hours = -1"),
    ("unknown-costim", None, ["--set", "product.costimulation=CD27"], "product.costimulation"),
    ("inf-horizon", None, ["--set", "horizon_days=.inf"], "finite number"),
    ("unknown-antigen", None, ["--set", "product.car.antigens=[CLL2]"], "did you mean 'CLL1'"),
    ("icar-on-car-antigen", None, ["--set", "product.icar.antigen=CLL1"], "product.icar.antigen = 'CLL1'"),
    ("unknown-logic", None, ["--set", "product.car.logic=xor"], "product.car.logic"),
    ("dt-longer-than-horizon", None, ["--set", "horizon_days=0.5", "--set", "dt_hours=13"], "no longer than the horizon"),
    ("negative-weight", None, ["--set", "patient.weight_kg=-70"], "patient.weight_kg"),
    ("unknown-param", None, ["--set", "params.search_rate=1"], "did you mean 'search_rate_l_per_h'"),
    ("param-out-of-domain", None, ["--set", "params.icar_imax=1.5"], "params.icar_imax = 1.5"),
    ("bad-override-syntax", None, ["--set", "product.dose_cells_per_kg"], "dotted.path=value"),
    ("directory-as-scenario", "DIR", [], "not a directory"),
    ("unknown-patient-key", None, ["--set", "patient.wieght_kg=70"], "did you mean 'weight_kg'"),
    ("unknown-antigen-override", None, ["--set", "patient.antigens={CD999: {aml_positive_fraction: 1}}"], "patient.antigens"),
    ("dist-missing-field", None, ["--set", "patient.weight_kg={dist: lognormal, median: 70}"], "needs sd_log"),
    ("loguniform-nonpositive", None, ["--set", "product.dose_cells_per_kg={dist: loguniform, low: 0, high: 1e6}"], "low > 0"),
    ("fraction-above-one", None, ["--set", "patient.emd_probability=1.5"], "patient.emd_probability = 1.5"),
    ("trial-wrong-type", None, ["--set", "trial=yes"], "trial"),
    ("record-shorter-than-step", None, ["--set", "dt_hours=2", "--set", "outputs.record_every_hours=1"], "at least dt_hours"),
    ("yaml-error-says-why", "name: [unclosed\n", [], "but got"),
    ("name-escapes-results", None, ["--set", "name=../../escaped"], "usable as a folder name"),
    ("name-with-nul", VALID.replace("name: cll1_standard", 'name: "a\\0b"'), [], "usable as a folder name"),
    ("negative-seed-option", None, ["--seed", "-1"], "'--seed'"),
    ("number-or-distribution", None, ["--set", "patient.weight_kg=abc"], "a number, or a distribution"),
    ("mapping-expected", None, ["--set", "product.car=3"], "a mapping of keys (antigens, logic)"),
    ("misspelt-required-key", VALID.replace("\nproduct:", "\nprodcut:"), [], "found 'prodcut'"),
]


@pytest.mark.parametrize("case", BAD_RUN_CASES, ids=[c[0] for c in BAD_RUN_CASES])
def test_bad_run_input_exits_2_with_one_message(tmp_path, case):
    _, text, extra, needle = case
    if text is None:
        path = STD
    elif text == "MISSING":
        path = str(tmp_path / "nope.yaml")
    elif text == "DIR":
        path = str(tmp_path)
    else:
        path = write(tmp_path, text)
    out = tmp_path / "out"
    r = cart_sim("run", path, *extra, "--out", str(out))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    message = " ".join(lines)
    assert message.startswith("error:")
    assert needle in message, message
    assert not out.exists()


def test_output_folder_that_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    r = cart_sim("run", STD, "--set", "horizon_days=1", "--out", str(f))
    assert r.returncode == 2 and "this is a file" in r.stderr and "Traceback" not in r.stderr
    assert f.read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_output_folder_not_writable(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    r = cart_sim("run", STD, "--set", "horizon_days=1", "--out", str(ro / "x"))
    assert r.returncode == 2 and "writable" in r.stderr


def test_dry_run_validates_and_writes_nothing(tmp_path):
    out = tmp_path / "dry"
    r = cart_sim("run", STD, "--dry-run", "--out", str(out))
    assert r.returncode == 0 and "valid" in r.stdout
    assert not out.exists()


@pytest.mark.parametrize("command", ["cohort", "compare"])
def test_dry_run_of_cohort_and_compare(tmp_path, command):
    args = [STD] if command == "cohort" else [STD, str(SCENARIOS / "cll1_cd16_icar.yaml")]
    r = cart_sim(command, *args, "--dry-run", "--out", str(tmp_path / "x"))
    assert r.returncode == 0 and "valid" in r.stdout, r.stderr
    assert not (tmp_path / "x").exists()


BAD_OTHER = [
    ("cohort-zero-patients", ["cohort", STD, "-n", "0"], "Invalid value"),
    ("cohort-bad-override", ["cohort", STD, "--set", "product.dose_cells_per_kg=-1"], "a dose in CAR+ cells/kg > 0"),
    ("cohort-missing-file", ["cohort", "nope.yaml"], "expected an existing file"),
    ("compare-one-arm", ["compare", STD], "at least two scenario files"),
    ("compare-same-arm-twice", ["compare", STD, STD], "distinct names"),
    (
        "compare-bad-override",
        ["compare", STD, str(SCENARIOS / "cll1_cd16_icar.yaml"), "--set", "horizon_days=-3"],
        "horizon_days",
    ),
    ("compare-missing-arm", ["compare", STD, "missing.yaml"], "expected an existing file"),
    ("validate-missing-folder", ["validate", "--scenarios", "no/such/dir"], "a folder of scenario YAML files"),
    ("cohort-n-not-a-number", ["cohort", STD, "-n", "many"], "Invalid value"),
    ("compare-n-zero", ["compare", STD, str(SCENARIOS / "cll1_cd16_icar.yaml"), "-n", "0"], "Invalid value"),
    ("run-negative-patient", ["run", STD, "--patient", "-1"], "Invalid value"),
    ("cohort-unknown-option", ["cohort", STD, "--wrokers", "2"], "No such option"),
    ("cohort-unreachable-scheduler", ["cohort", STD, "-n", "2", "--scheduler", "tcp://127.0.0.1:9"], "a running Dask scheduler"),
    (
        "validate-dry-run-missing-folder",
        ["validate", "--dry-run", "--scenarios", "no/such/dir"],
        "a folder of scenario YAML files",
    ),
    ("compare-negative-seed", ["compare", STD, str(SCENARIOS / "cll1_cd16_icar.yaml"), "--seed", "-1"], "'--seed'"),
    ("compare-unknown-params", ["compare", STD, str(SCENARIOS / "cll1_cd16_icar.yaml"), "--params", "nope.yaml"], "nope"),
    ("validate-binary-file", ["validate", "--scenarios", "BINARY_DIR", "-n", "10"], "readable UTF-8 text file"),
    ("validate-bad-override", ["validate", "--set", "product.dosee=3"], "product.dosee = 3: expected no such key"),
    (
        "compare-unreachable-scheduler",
        ["compare", STD, str(SCENARIOS / "cll1_cd16_icar.yaml"), "-n", "2", "--scheduler", "tcp://127.0.0.1:9"],
        "a running Dask scheduler",
    ),
    ("screen-missing-spec", ["screen", "nope.yaml", "--dry-run"], "nope.yaml"),
    ("validate-unknown-targets", ["validate", "--targets", "testing"], "--targets = 'testing': expected calibration or training"),
]


@pytest.mark.parametrize("case", BAD_OTHER, ids=[c[0] for c in BAD_OTHER])
def test_bad_input_of_other_commands(tmp_path, case):
    _, args, needle = case
    if "BINARY_DIR" in args:  # a folder with a scenario and a binary file named .yaml
        (tmp_path / "sc").mkdir()
        (tmp_path / "sc" / "junk.yaml").write_bytes(bytes(range(256)))
        args = [str(tmp_path / "sc") if a == "BINARY_DIR" else a for a in args]
    r = cart_sim(*args, "--out", str(tmp_path / "o"))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and needle in r.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", ["cohort", "compare"])
def test_output_folder_that_is_a_file_for_cohort_and_compare(tmp_path, command):
    f = tmp_path / "file"
    f.write_text("x")
    args = [STD] if command == "cohort" else [STD, str(SCENARIOS / "cll1_cd16_icar.yaml")]
    r = cart_sim(command, *args, "--out", str(f))
    assert r.returncode == 2 and "this is a file" in r.stderr and "Traceback" not in r.stderr
    assert f.read_text() == "x"


#: Options every long-running command offers, where they make sense (issue 26, item 6).
COMMON_OPTIONS = {
    "run": ("--seed", "--set", "--params", "--out", "--dry-run"),
    "cohort": ("--seed", "--set", "--params", "--out", "--workers", "--scheduler", "--dry-run"),
    "compare": ("--seed", "--set", "--params", "--out", "--workers", "--scheduler", "--dry-run"),
    "validate": ("--seed", "--set", "--params", "--out", "--workers", "--scheduler", "--dry-run"),
    "vpc": ("--seed", "--set", "--params", "--out", "--workers", "--scheduler", "--dry-run"),
    "sweep": ("--out", "--workers", "--scheduler", "--dry-run"),
    "screen": ("--out", "--workers", "--scheduler", "--dry-run"),
    "calibrate": ("--out", "--workers", "--scheduler", "--dry-run"),
}


@pytest.mark.parametrize("command", sorted(COMMON_OPTIONS))
def test_commands_share_one_set_of_options(command):
    r = cart_sim(command, "--help")
    assert r.returncode == 0, r.stderr
    missing = [o for o in COMMON_OPTIONS[command] if o not in r.stdout]
    assert not missing, f"{command} lacks {missing}"
