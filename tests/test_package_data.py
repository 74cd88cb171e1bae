from importlib import resources
from pathlib import Path

import pytest
import yaml

from sim.antigens import Stage, default_atlas

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "clinical_targets.yaml"


def packaged_targets() -> Path:
    return Path(str(resources.files("sim") / "data" / "clinical_targets.yaml"))


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data/clinical_targets.yaml not present")
def test_clinical_targets_copy_is_identical_to_shared():
    assert packaged_targets().read_bytes() == SHARED.read_bytes()


def test_clinical_targets_parse_and_keep_sources():
    data = yaml.safe_load(packaged_targets().read_text())
    ids = [s["id"] for s in data["studies"]]
    assert {"cd123_dasatinib", "cd33_post_hsct", "cd19_t821", "cll1_savvy_il18", "il1rap_resolve"} <= set(ids)
    assert all(s["abstract"] for s in data["studies"])
    assert "doi:10.1186/s40164-025-00651-6" in packaged_targets().read_text()


def test_atlas_stage_pattern_matches_design():
    """CD16 only on late neutrophils, CLL1 absent on HSC, CD15 from promyelocytes on."""
    atlas = default_atlas()
    dens = atlas.stage_density_matrix()
    cd16, cll1, cd15 = (atlas.index(a) for a in ("CD16", "CLL1", "CD15"))
    assert dens[cll1, Stage.HSPC] == 0
    assert all(dens[cd16, s] == 0 for s in (Stage.HSPC, Stage.MYELOBLAST, Stage.PROMYELOCYTE, Stage.MYELOCYTE))
    assert all(dens[cd16, s] > 0 for s in (Stage.BAND, Stage.RESERVE, Stage.BLOOD_NEUTROPHIL))
    assert dens[cd15, Stage.MYELOBLAST] < dens[cd15, Stage.PROMYELOCYTE] < dens[cd15, Stage.RESERVE]
