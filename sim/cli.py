"""The ``cart-sim`` command line.

User errors (bad files, keys, values, paths) print one line naming the file, the key
path, the value and what was expected, and exit with code 2, leaving nothing written.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from sim.errors import UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Agent-based simulator of CAR T-cell therapy in AML. Start with: cart-sim run scenarios/cll1_standard.yaml",
)
err_console = Console(stderr=True)
console = Console()

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override any scenario value by dotted path, e.g. --set product.dose_cells_per_kg=3e6"),
]


def _load(scenario: Path, overrides: list[str] | None, seed: int | None):
    from sim.scenario import load_scenario

    extra = list(overrides or [])
    if seed is not None:
        extra.append(f"seed={seed}")
    return load_scenario(scenario, extra)


def publish(staging: Path, out: Path) -> None:
    """Move finished files from ``staging`` into ``out`` (atomic renames, same filesystem)."""
    out.mkdir(parents=True, exist_ok=True)
    for f in staging.iterdir():
        f.replace(out / f.name)


@app.command()
def run(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML, e.g. scenarios/cll1_standard.yaml")],
    seed: Annotated[int | None, typer.Option(help="Root seed (overrides the scenario's seed)")] = None,
    overrides: SetOption = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default results/<scenario name>)")] = None,
    patient: Annotated[int, typer.Option(min=0, help="Index of the virtual patient in the population")] = 0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate everything and print the resolved scenario")] = False,
    check: Annotated[bool, typer.Option("--check", help="Assert invariants after every step phase (slower)")] = False,
) -> None:
    """Simulate one virtual patient and write timeseries.parquet, summary.json and patient.png."""
    from sim.io import check_output_dir

    sc = _load(scenario, overrides, seed)
    out_dir = check_output_dir(out or Path("results") / sc.name)
    if dry_run:
        console.print_json(sc.model_dump_json())
        console.print(f"[green]valid[/green]: {scenario} -> would write {out_dir}/")
        return
    with err_console.status("simulating (the first run compiles the numba core, ~30 s)"):
        from sim.model import Simulation

        sim = Simulation(sc, patient_index=patient, check=check)
        result = sim.run()
    _write_run(result, sim, out_dir)
    s = result.summary
    console.print(
        f"[bold]{s['scenario']}[/bold] patient {patient}: response {s['response_day28']}"
        f" (BM blasts {s['bm_blast_percent_day28']:.3g}%, MRD-negative {s['mrd_negative']}), CRS {s['crs_grade']},"
        f" ICANS {s['icans_grade']}, IEC-HS {s['iec_hs']}, ANC nadir {s['anc_nadir_1e9_per_l']:.2g}e9/L,"
        f" {s['days_anc_below_0_5']:.1f} d below 0.5, CAR T peak {s['car_t_peak_cells_per_ul_blood']:.3g}/uL"
        f" on day {s['car_t_tmax_days']:.1f}"
    )
    console.print(f"wrote {out_dir}/timeseries.parquet, summary.json, patient.png")


def _write_run(result, sim, out_dir: Path) -> None:
    from sim.io import save_figure, write_json, write_parquet
    from sim.plots import patient_figure

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        write_parquet(staging / "timeseries.parquet", result.timeseries)
        write_json(staging / "summary.json", result.summary)
        save_figure(staging / "patient.png", patient_figure(result.timeseries, result.summary, sim.volume_l[1]))
        publish(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@app.command()
def cohort(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML (one trial arm)")],
    n: Annotated[int, typer.Option("-n", "--n-patients", min=1, help="Number of virtual patients")] = 100,
    workers: Annotated[int | None, typer.Option(min=1, help="Worker processes (default: all CPUs)")] = None,
    seed: Annotated[int | None, typer.Option(help="Root seed (overrides the scenario's seed)")] = None,
    overrides: SetOption = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default results/<scenario name>-cohort)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate everything and simulate nothing")] = False,
) -> None:
    """Simulate a virtual trial arm: writes patients.parquet, summary.json and cohort.png.

    Patient i is the same virtual patient for any --workers and in every arm that shares
    the population (common random numbers). Finished chunks are kept under OUT/chunks/,
    so an interrupted cohort resumes when the same command is run again.
    """
    from sim.cohort import default_workers, spec_hash
    from sim.io import check_output_dir

    sc = _load(scenario, overrides, seed)
    out_dir = check_output_dir(out or Path("results") / f"{sc.name}-cohort")
    workers = workers or default_workers()
    key = spec_hash(sc, n)
    spec_file = out_dir / "chunks" / "spec.json"
    if spec_file.exists() and json.loads(spec_file.read_text()).get("hash") != key:
        raise UserError(
            str(out_dir),
            "chunks/spec.json",
            json.loads(spec_file.read_text()).get("hash"),
            f"the scenario and -n of the unfinished cohort there (this run is {key}); use another --out or remove it",
        )
    if dry_run:
        console.print_json(sc.model_dump_json())
        console.print(f"[green]valid[/green]: {n} patients of {sc.name} on {workers} workers -> {out_dir}/")
        return
    _run_cohort(sc, n, workers, out_dir, key)


def _run_cohort(sc, n: int, workers: int, out_dir: Path, key: str) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from sim.cohort import run_cohort
    from sim.io import save_figure, write_json, write_parquet
    from sim.plots import cohort_figure

    chunk_dir = out_dir / "chunks"
    chunk_dir.mkdir(parents=True, exist_ok=True)
    write_json(chunk_dir / "spec.json", {"hash": key, "scenario": sc.name, "n": n})
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console) as bar:
        task = bar.add_task(f"{sc.name}: patients", total=n)
        result = run_cohort(sc, n, workers, chunk_dir, progress=lambda k: bar.update(task, completed=k))
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir))
    try:
        write_parquet(staging / "patients.parquet", result.patients)
        write_json(staging / "summary.json", result.summary)
        save_figure(staging / "cohort.png", cohort_figure(result, f"{sc.name}: {n} virtual patients"))
        publish(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(chunk_dir, ignore_errors=True)
    _print_cohort(result.summary)
    console.print(f"wrote {out_dir}/patients.parquet, summary.json, cohort.png")


def _print_cohort(summary: dict) -> None:
    from rich.table import Table

    table = Table(title=f"{summary['scenario']} ({summary['n_patients']} patients)")
    for col in ("outcome", "rate", "95% CI (Wilson)"):
        table.add_column(col)
    for name, r in summary["rates"].items():
        table.add_row(name, f"{r['rate']:.1%}", f"{r['ci95'][0]:.1%} - {r['ci95'][1]:.1%}")
    console.print(table)


@app.command()
def schema() -> None:
    """Print the JSON Schema of scenario files (for editors)."""
    from sim.scenario import json_schema

    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")


@app.command()
def params() -> None:
    """List the biological parameters with value, unit, confidence and source."""
    from sim.params import PARAMETERS

    for name, p in PARAMETERS.items():
        prior = f" prior {p.prior}" if p.prior else ""
        console.print(f"{name} = {p.value:g} {p.unit} [{p.confidence}]{prior}: {p.source}", highlight=False)


def main() -> None:
    """Entry point: run the app, turning user errors into one line and exit code 2."""
    try:
        app(standalone_mode=False)
    except UserError as e:
        err_console.print(f"[red]error[/red]: {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("aborted")
        sys.exit(130)
    except Exception as e:  # click usage errors carry their own exit code
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            sys.exit(e.exit_code)
        raise


if __name__ == "__main__":
    main()
