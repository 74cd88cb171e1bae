"""Preclinical scenarios, each with a test of its defining mechanism; the atlas; the screen."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from sim.antigens import load_atlas
from sim.model import Simulation
from sim.scenario import load_scenario
from tests.conftest import ROOT, SCENARIOS

PRECLINICAL = sorted((SCENARIOS / "preclinical").glob("*.yaml"))
FAST = ["resolution.car_t_agents=200", "resolution.blast_agents=200"]


def pre(name, *sets):
    return load_scenario(SCENARIOS / "preclinical" / f"{name}.yaml", [*FAST, *sets])


def run(sc, patient=0):
    sim = Simulation(sc, patient_index=patient)
    return sim, sim.run()


@pytest.mark.parametrize("path", PRECLINICAL, ids=[p.stem for p in PRECLINICAL])
def test_preclinical_scenario_runs_as_a_cohort(path, tmp_path):
    from sim.workflows.cohort import run_cohort

    sc = load_scenario(path, [*FAST, "horizon_days=4"])
    result = run_cohort(sc, 2)
    assert len(result.patients) == 2 and "hspc_loss_fraction" in result.patients
    assert sc.source  # every preclinical scenario states where it comes from


def test_cd45_car_ablates_hspc_and_only_the_rescue_hsct_restores_it():
    _, without = run(pre("cd45_rescue_hsct", "horizon_days=40", "interventions.rescue_hsct_day=null"))
    _, rescued = run(pre("cd45_rescue_hsct", "horizon_days=40"))
    hspc = lambda r: r.timeseries[r.timeseries.compartment == "bm"].hspc.to_numpy()  # noqa: E731
    assert without.summary["hspc_loss_fraction"] > 0.99  # HSPC carry CD45: the CAR ablates them
    assert hspc(without)[-1] < 0.01 * hspc(without)[0]  # and nothing brings them back
    assert rescued.summary["hsct_day"] == 21.0
    assert hspc(rescued)[-1] > 100 * hspc(without)[-1]


def test_adjuvant_raises_density_during_its_window_and_lowers_cll1_negative_escape():
    sc = pre("cll1_cd33_or_adjuvant", "horizon_days=14")
    sim = Simulation(sc)
    k = sim.atlas.index("CD33")
    sim.step_index = int((0.0 - sim.t0_day) * 24)  # day 0: inside the window (-7 to 14)
    assert np.allclose(sim.blast_densities_seen()[k, : sim.blasts.n], 3.0 * sim.blasts.x[k, : sim.blasts.n])
    sim.step_index = int((15.0 - sim.t0_day) * 24)  # after it
    assert sim.blast_densities_seen() is sim.blasts.x
    cls_neg = 1 + sim.atlas.index("CLL1")  # the CLL1-negative subclone (CD33+, so still a target)

    def cll1_negative_day14(scenario):
        out = []
        for i in range(4):
            s, _ = run(scenario, i)
            b = s.blasts
            out.append(b.w[: b.n][b.cls[: b.n] == cls_neg].sum())
        return np.array(out)

    with_adj = cll1_negative_day14(sc)
    without = cll1_negative_day14(pre("cll1_cd33_or_adjuvant", "horizon_days=14", "adjuvant=null"))
    assert with_adj.sum() < without.sum(), (with_adj, without)


def test_allogeneic_product_is_rejected_faster_without_lymphodepletion():
    sim_ld, with_ld = run(pre("universal_allo_cll1", "horizon_days=14"))
    sim_no, without = run(pre("universal_allo_cll1", "horizon_days=14", "lymphodepletion.enabled=false"))
    # rejection x (1 - L(t)): on day 1, L = exp(-(1 - (-2)) / 10) after Flu/Cy on days -5..-2, 0 without
    assert sim_ld.rejection_per_h(1.0) == pytest.approx(sim_no.rejection_per_h(1.0) * (1 - np.exp(-0.3)))
    assert without.summary["car_t_peak_cells_per_ul_blood"] < 0.5 * with_ld.summary["car_t_peak_cells_per_ul_blood"]


def test_nkg2d_car_leaves_the_nkg2dl_negative_stem_cells():
    """NKG2DL is absent on LSC (atlas lsc_median 0): survivors of the main clone are enriched for them."""
    # a product strong enough to clear most NKG2DL+ blasts, so the escape is visible
    sc = pre("gd_nkg2d_allo", "horizon_days=14", "product.source=autologous", "patient.product_fitness=3")
    i = next(i for i in range(20) if Simulation(sc, patient_index=i).patient.antigens["NKG2DL"].positive)
    sim = Simulation(sc, patient_index=i)
    k = sim.atlas.index("NKG2DL")

    def stem_share(b):
        main = b.cls[: b.n] == 0
        w = b.w[: b.n][main]
        return w[b.x[k, : b.n][main] == 0.0].sum() / w.sum()

    before = stem_share(sim.blasts)
    assert 0.005 < before < 0.02  # lsc_fraction_of_blasts = 0.01 of the main clone
    sim.run()
    assert stem_share(sim.blasts) > 5 * before


def test_immunocoached_product_persists_longer_on_the_same_patients():
    coached = [run(pre("immunocoached_cll1"), i)[1].summary["car_t_day28_cells_per_ul_blood"] for i in range(3)]
    standard = [
        run(load_scenario(SCENARIOS / "cll1_standard.yaml", FAST), i)[1].summary["car_t_day28_cells_per_ul_blood"]
        for i in range(3)
    ]
    assert np.mean(coached) > 1.5 * np.mean(standard), (coached, standard)


def test_scfv_cd70_car_has_a_lower_activation_threshold_than_the_ligand_car():
    ligand, scfv = Simulation(pre("cd70_ligand")), Simulation(pre("cd70_scfv"))
    x = np.zeros((len(ligand.atlas.names), 1))
    x[ligand.atlas.index("CD70"), 0] = 100.0  # a CD70-low blast
    assert scfv.activations(x, 1)[0][0] > 2 * ligand.activations(x, 1)[0][0]


def test_cd64_car_kills_monocytes_where_a_monocyte_negative_target_does_not():
    # targeting only: steroids at grade 3 CRS (this patient's) would halve the killing
    no_steroids = ("horizon_days=14", "interventions.steroids_at_crs_grade=null")
    _, r = run(pre("cd64_monocytic", *no_steroids))
    _, cd70 = run(pre("cd64_monocytic", *no_steroids, "product.car.antigens=[CD70]", "product.knockout=[CD70]"))
    pool = r.timeseries[r.timeseries.compartment == "pb"].monocyte.iloc[0]
    assert r.summary["myeloid_killed"]["monocyte"] > 0.5 * pool  # CD64 ~20,000 per monocyte
    assert cd70.summary["myeloid_killed"]["monocyte"] == 0.0
    assert r.summary["blasts_total_day28"] < 0.2 * r.summary["blasts_total_baseline"]  # CD64-bright blasts


def test_fratricide_through_t_cell_antigens_unless_the_product_is_edited():
    base = load_scenario(SCENARIOS / "cll1_standard.yaml", [*FAST, "horizon_days=12", "product.car.antigens=[CD7]"])
    edited = base.model_copy(update={"product": base.product.model_copy(update={"knockout": ["CD7"]})})
    i = next(i for i in range(20) if Simulation(base, patient_index=i).patient.antigens["CD7"].positive)
    sim_plain, plain = run(base, i)
    sim_edit, kept = run(edited, i)
    assert sim_plain.car_a_kill > 0.9 and sim_edit.car_a_kill == 0.0  # CD7 ~30,000 per T cell
    # on day 12 (the horizon), CAR T cells that kill each other are far fewer
    assert plain.summary["car_t_day28_cells_per_ul_blood"] < 0.5 * kept.summary["car_t_day28_cells_per_ul_blood"]


def test_a_new_atlas_antigen_is_usable_without_code_changes(tmp_path):
    atlas = yaml.safe_load((ROOT / "sim" / "data" / "antigens.yaml").read_text())
    entry = dict(atlas["antigens"]["CLEC2A"], aml_positive_fraction=1.0, source="test antigen")
    atlas["antigens"]["TESTAG"] = entry
    path = tmp_path / "atlas.yaml"
    path.write_text(yaml.safe_dump(atlas))
    assert "TESTAG" in load_atlas(path).names
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        yaml.safe_dump(
            {"name": "testag", "horizon_days": 3, "product": {"car": {"antigens": ["TESTAG"]}, "dose_cells_per_kg": 1e6}}
        )
    )
    env = {**os.environ, "CART_SIM_ATLAS": str(path)}
    r = subprocess.run(
        [sys.executable, "-m", "sim.cli", "run", str(scenario), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    summary = yaml.safe_load((tmp_path / "o" / "summary.json").read_text())
    assert summary["patient"]["TESTAG_blast_median"] > 0
    # without the atlas the same scenario names an unknown antigen
    r = subprocess.run(
        [sys.executable, "-m", "sim.cli", "run", str(scenario), "--out", str(tmp_path / "p")], capture_output=True, text=True
    )
    assert r.returncode == 2 and "TESTAG" in r.stderr


def screen_spec(tmp_path, **fields):
    spec = tmp_path / "screen.yaml"
    spec.write_text(yaml.safe_dump({"name": "t", "base": str(SCENARIOS / "cll1_standard.yaml"), **fields}))
    return spec


def test_screen_ranks_by_the_index_with_equal_efficacy_going_to_the_less_toxic(tmp_path):
    from sim.workflows.screen import Screen, rank

    toxicity = {"metric": "days_anc_below_0_5", "weight": 0.5, "scale": 28}
    sc = Screen(screen_spec(tmp_path, n_patients=4, toxicities=[toxicity], designs={"A": {}, "B": {}}))
    same = pd.DataFrame({"response_day28": ["CR", "CR", "NR", "CR"], "days_anc_below_0_5": [5.0, 6.0, 7.0, 8.0]})
    worse = same.assign(days_anc_below_0_5=same.days_anc_below_0_5 + 10.0)
    table = rank(sc, {"A": worse, "B": same})
    assert list(table.design) == ["B", "A"] and list(table["rank"]) == [1, 2]
    assert table.efficacy.tolist() == [0.75, 0.75]
    assert table.therapeutic_index[0] - table.therapeutic_index[1] == pytest.approx(0.5 * 10 / 28)


def test_screen_cli_writes_its_outputs(tmp_path):
    spec = screen_spec(
        tmp_path,
        set={"horizon_days": 5, "resolution.car_t_agents": 100, "resolution.blast_agents": 100},
        n_patients=2,
        designs={"CLL1": {}, "CD70": {"product.car.antigens": ["CD70"], "product.knockout": ["CD70"]}},
    )
    out = tmp_path / "o"
    r = subprocess.run([sys.executable, "-m", "sim.cli", "screen", str(spec), "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert {"screen.csv", "screen.png"} <= {p.name for p in out.iterdir()}
    assert len(pd.read_csv(out / "screen.csv")) == 2


def test_screen_spec_errors_name_the_design(tmp_path):
    spec = screen_spec(tmp_path, designs={"X": {"product.car.antigens": ["CD999"]}})
    r = subprocess.run(
        [sys.executable, "-m", "sim.cli", "screen", str(spec), "--out", str(tmp_path / "o")], capture_output=True, text=True
    )
    assert r.returncode == 2 and "designs.X" in r.stderr and "CD999" in r.stderr and "Traceback" not in r.stderr
