"""Stored baselines: the summary of every bundled scenario for its seed (short and coarse).

Update after an intended change of the model with ``python -m tests.baselines`` and
commit the diff of ``tests/baselines/*.json`` with the reason.
"""

import argparse
import json
from pathlib import Path

from sim.model import Simulation
from sim.scenario import load_scenario

HERE = Path(__file__).resolve().parent
SCENARIOS = sorted((HERE.parent / "scenarios").glob("*.yaml"))
SETTINGS = ["horizon_days=10", "resolution.car_t_agents=100", "resolution.blast_agents=100"]
KEYS = (
    "response_day28",
    "bm_blast_percent_day28",
    "crs_grade",
    "icans_grade",
    "anc_nadir_1e9_per_l",
    "days_anc_below_0_5",
    "car_t_peak_cells_per_ul_blood",
    "car_t_tmax_days",
    "il6_peak_pg_per_ml",
    "blasts_total_day28",
    "infection_first_day",
    "os_days",
)


def baseline(path: Path) -> dict:
    s = Simulation(load_scenario(path, SETTINGS)).run().summary
    return {k: s[k] for k in KEYS}


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()  # --help must not overwrite
    for path in SCENARIOS:
        out = HERE / "baselines" / f"{path.stem}.json"
        out.write_text(json.dumps(baseline(path), indent=1, sort_keys=True) + "\n")
        print("wrote", out.relative_to(HERE.parent))


if __name__ == "__main__":
    main()
