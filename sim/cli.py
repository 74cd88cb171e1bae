"""The ``cart-sim`` command line.

User errors (bad files, keys, values, paths) print one line naming the file, the key
path, the value and what was expected, and exit with code 2, leaving nothing written.
"""

from __future__ import annotations

import json
import shutil
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sim.errors import UserError

warnings.formatwarning = lambda message, category, *args, **kwargs: f"{category.__name__}: {message}\n"

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Agent-based simulator of CAR T-cell therapy in AML. Start with: cart-sim run scenarios/cll1_standard.yaml",
)
err_console = Console(stderr=True)
console = Console(width=None if sys.stdout.isatty() else 160)  # wide tables when piped

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override any scenario value by dotted path, e.g. --set product.dose_cells_per_kg=3e6"),
]


PosteriorOption = Annotated[
    Path | None,
    typer.Option(help="A fit's posterior.parquet or folder, or 'fitted' (shipped): one parameter draw per replicate cohort"),
]
ReplicatesOption = Annotated[int, typer.Option(min=2, help="--posterior: replicate cohorts (-n split among them)")]
ParamsOption = Annotated[
    str | None,
    typer.Option("--params", help="Parameter set: a calibrated.yaml path, or a name in results/calibration/ (e.g. calibrated)"),
]


SchedulerOption = Annotated[
    str | None,
    typer.Option(help="Dask scheduler address (tcp://host:8786): run on that cluster instead of local threads"),
]


def _param_set(name: str | None) -> dict[str, float] | None:
    if name is None:
        return None
    from sim.workflows.calibrate import load_param_set

    return load_param_set(name)


def _load(scenario: Path, overrides: list[str] | None, seed: int | None, params: dict[str, float] | None = None):
    from sim.scenario import load_scenario

    extra = list(overrides or [])
    if seed is not None:
        extra.append(f"seed={seed}")
    sc = load_scenario(scenario, extra)
    if params:
        from sim.scenario import with_param_set

        sc = with_param_set(sc, params)
    return sc


def _check_scheduler(scheduler: str | None) -> None:
    """An unreachable cluster is an error before anything is written."""
    if scheduler:
        from sim.parallel import connect

        connect(scheduler).close()


def _progress():
    """A progress bar on stderr: done / total, elapsed and remaining time."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    return Progress(*columns, console=err_console)


@app.command()
def run(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML, e.g. scenarios/cll1_standard.yaml")],
    seed: Annotated[int | None, typer.Option(min=0, help="Root seed (overrides the scenario's seed)")] = None,
    overrides: SetOption = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default results/<scenario name>)")] = None,
    patient: Annotated[int, typer.Option(min=0, help="Index of the virtual patient in the population")] = 0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate everything and print the resolved scenario")] = False,
    check: Annotated[bool, typer.Option("--check", help="Assert invariants after every step phase (slower)")] = False,
    params: ParamsOption = None,
) -> None:
    """Simulate one virtual patient and write timeseries.parquet, summary.json and patient.png."""
    from sim.io import check_output_dir

    sc = _load(scenario, overrides, seed, _param_set(params))
    out_dir = check_output_dir(out or Path("results") / sc.name)
    if dry_run:
        console.print_json(sc.model_dump_json())
        console.print(f"[green]valid[/green]: {scenario} -> would write {out_dir}/")
        return
    with err_console.status("simulating (the first run compiles the numba core, ~30 s)"):
        from sim.model import Simulation

        sim = Simulation(sc, patient_index=patient, check=check)
        result = sim.run()
    _write_run(result, sim, out_dir, params)
    s = result.summary
    console.print(
        f"[bold]{s['scenario']}[/bold] patient {patient}: response {s['response_day28']}"
        f" (BM blasts {s['bm_blast_percent_day28']:.3g}%, MRD-negative {s['mrd_negative']}), CRS {s['crs_grade']},"
        f" ICANS {s['icans_grade']}, IEC-HS {s['iec_hs']}, ANC nadir {s['anc_nadir_1e9_per_l']:.2g}e9/L,"
        f" {s['days_anc_below_0_5']:.1f} d below 0.5, CAR T peak {s['car_t_peak_cells_per_ul_blood']:.3g}/uL"
        f" on day {s['car_t_tmax_days']:.1f}"
    )
    console.print(f"wrote {out_dir}/timeseries.parquet, summary.json, patient.png")


def _write_run(result, sim, out_dir: Path, params: str | None) -> None:
    from sim.io import provenance, save_figure, staged_outputs, write_json, write_parquet
    from sim.plots import patient_figure

    with staged_outputs(out_dir) as staging:
        write_parquet(staging / "timeseries.parquet", result.columns)  # without pandas, which would double the start-up
        write_json(staging / "summary.json", {**result.summary, "provenance": provenance(params, [result.scenario])})
        save_figure(staging / "patient.png", patient_figure(result.columns, result.summary, sim.volume_l[1]), tight=False)


@app.command()
def cohort(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML (one trial arm)")],
    n: Annotated[int, typer.Option("-n", "--n-patients", min=1, help="Number of virtual patients")] = 100,
    workers: Annotated[int | None, typer.Option(min=1, help="Worker threads (default: all CPUs)")] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Root seed (overrides the scenario's seed)")] = None,
    overrides: SetOption = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default results/<scenario name>-cohort)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate everything and simulate nothing")] = False,
    params: ParamsOption = None,
    scheduler: SchedulerOption = None,
    posterior: PosteriorOption = None,
    replicates: ReplicatesOption = 20,
) -> None:
    """Simulate a virtual trial arm: writes patients.parquet, trajectories.parquet, summary.json and four figures.

    Patient i is the same virtual patient for any --workers and in every arm that shares
    the population (common random numbers). Finished chunks are kept under OUT/chunks/,
    so an interrupted cohort resumes when the same command is run again. With --posterior,
    the N patients are split into --replicates cohorts, each on its own patients under its
    own posterior draw; summary.json gains posterior_predictive (the spread of their rates).
    """
    from sim.io import check_output_dir, content_hash, refuse_other_work
    from sim.workflows.cohort import default_workers, spec_hash

    draws = _posterior_draws(posterior, replicates, seed or 0, params)
    sc = _load(scenario, overrides, seed, _param_set(params))
    out_dir = check_output_dir(out or Path("results") / f"{sc.name}-cohort")
    workers = workers or default_workers()
    key = spec_hash(sc, n) if draws is None else content_hash({"cohort": spec_hash(sc, n), "draws": draws})
    refuse_other_work(out_dir, "chunks/spec.json", key, "the scenario and -n of the unfinished cohort there")
    if dry_run:
        console.print_json(sc.model_dump_json())
        console.print(f"[green]valid[/green]: {n} patients of {sc.name} on {workers} workers -> {out_dir}/")
        return
    _check_scheduler(scheduler)
    _run_cohort(sc, n, workers, out_dir, key, params, scheduler, draws, _posterior_record(posterior, replicates, draws))


def _run_cohort(
    sc, n: int, workers: int, out_dir: Path, key: str, params: str | None, scheduler=None, draws=None, extra=None
) -> None:
    from sim.io import provenance, save_figure, staged_outputs, write_json, write_parquet
    from sim.plots import cohort_figure, km_figure, spaghetti_figure, swimmer_figure
    from sim.workflows.cohort import trajectories_long

    result = _simulate_cohort(sc, n, workers, out_dir, key, scheduler, draws)
    with staged_outputs(out_dir) as staging:
        write_parquet(staging / "patients.parquet", result.patients)
        write_json(staging / "summary.json", {**result.summary, **(extra or {}), "provenance": provenance(params, [sc])})
        save_figure(staging / "cohort.png", cohort_figure(result, f"{sc.name}: {n} virtual patients"))
        save_figure(staging / "km.png", km_figure(result.patients, f"{sc.name}: overall and leukemia-free survival"))
        write_parquet(staging / "trajectories.parquet", trajectories_long(result))
        save_figure(staging / "swimmer.png", swimmer_figure(result.patients, f"{sc.name}: each patient's course"))
        save_figure(staging / "spaghetti.png", spaghetti_figure(result, f"{sc.name}: daily trajectories"))
    shutil.rmtree(out_dir / "chunks", ignore_errors=True)
    _print_cohort(result.summary)
    console.print(
        f"wrote {out_dir}/patients.parquet, trajectories.parquet, summary.json, cohort.png, km.png, swimmer.png, spaghetti.png"
    )


def _simulate_cohort(sc, n: int, workers: int, out_dir: Path, key: str, scheduler: str | None, draws=None):
    """Run a cohort with a progress bar, keeping finished chunks under ``out_dir/chunks`` (resumable)."""
    from sim.io import write_json
    from sim.workflows.cohort import run_cohort, run_posterior_cohort

    chunk_dir = out_dir / "chunks"
    chunk_dir.mkdir(parents=True, exist_ok=True)
    write_json(chunk_dir / "spec.json", {"hash": key, "scenario": sc.name, "n": n})
    with _progress() as bar:
        task = bar.add_task(f"{sc.name}: patients", total=n)

        def done(k: int) -> None:
            bar.update(task, completed=k)

        if draws:
            return run_posterior_cohort(sc, draws, n, workers, chunk_dir, done, scheduler)
        return run_cohort(sc, n, workers, chunk_dir, progress=done, scheduler=scheduler)


def _print_cohort(summary: dict) -> None:
    from rich.table import Table

    table = Table(title=f"{summary['scenario']} ({summary['n_patients']} patients)")
    predictive = summary.get("posterior_predictive", {}).get("rates", {})
    for col in ("outcome", "rate", "95% CI (Wilson)", *(["95% of replicate cohorts (posterior)"] if predictive else [])):
        table.add_column(col)
    for name, r in summary["rates"].items():
        cells = [name, f"{r['rate']:.1%}", f"{r['ci95'][0]:.1%} - {r['ci95'][1]:.1%}"]
        if predictive:
            lo, hi = predictive[name]["interval95"]
            cells.append(f"{lo:.1%} - {hi:.1%}")
        table.add_row(*cells)
    console.print(table)


@app.command()
def compare(
    scenarios: Annotated[list[Path], typer.Argument(help="Two or more arm scenarios; differences are against the first")],
    n: Annotated[int, typer.Option("-n", "--n-patients", min=2, help="Virtual patients per arm (the same in every arm)")] = 200,
    workers: Annotated[int | None, typer.Option(min=1, help="Worker threads (default: all CPUs)")] = None,
    overrides: SetOption = None,
    out: Annotated[Path, typer.Option(help="Output folder")] = Path("results") / "compare",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate everything and simulate nothing")] = False,
    seed: Annotated[int | None, typer.Option(min=0, help="Root seed of every arm (default: the first arm's)")] = None,
    params: ParamsOption = None,
    scheduler: SchedulerOption = None,
    posterior: PosteriorOption = None,
    replicates: ReplicatesOption = 20,
) -> None:
    """Compare arms on the same virtual patients: compare.json, anc.png, kinetics.png, lineage.png.

    Every arm runs on patients 0..N-1 of the first arm's seed (common random numbers).
    --set applies to every arm. With --posterior, each arm's patients are split into
    --replicates cohorts under the same posterior draws in every arm (still paired).
    """
    from sim.io import check_output_dir, provenance, save_figure, staged_outputs, write_json
    from sim.workflows.cohort import default_workers
    from sim.workflows.compare import figures, paired_scenarios, run_comparison

    if len(scenarios) < 2:
        raise UserError("compare", "SCENARIOS", [str(s) for s in scenarios], "at least two scenario files")
    param_set = _param_set(params)
    draws = _posterior_draws(posterior, replicates, seed or 0, params)
    arms = [_load(s, overrides, seed, param_set) for s in scenarios]
    try:
        paired_scenarios(arms)
    except ValueError as e:
        raise UserError("compare", "name", [a.name for a in arms], str(e)) from None
    out_dir = check_output_dir(out)
    workers = workers or default_workers()
    if dry_run:
        console.print(f"[green]valid[/green]: {len(arms)} arms x {n} patients on {workers} workers -> {out_dir}/")
        return
    _check_scheduler(scheduler)
    with _progress() as bar:
        task = bar.add_task("patients (all arms)", total=n * len(arms))
        comp = run_comparison(arms, n, workers, lambda k: bar.update(task, completed=k), scheduler, draws)
    extra = _posterior_record(posterior, replicates, draws)
    with staged_outputs(out_dir) as staging:
        write_json(staging / "compare.json", {**comp.to_json(), **extra, "provenance": provenance(params, arms)})
        for name, fig in figures(comp).items():
            save_figure(staging / name, fig)
    _print_comparison(comp)
    console.print(comp.conclusion)
    console.print(f"wrote {out_dir}/compare.json, anc.png, kinetics.png, lineage.png")


def _print_comparison(comp) -> None:
    from rich.table import Table

    table = Table(title=f"Arms on the same {len(comp.cohorts[0].patients)} virtual patients (95% intervals)")
    table.add_column("outcome")
    for name in comp.names:
        table.add_column(name)
    for key in comp.tables[comp.names[0]]:
        cells = []
        for k, name in enumerate(comp.names):
            v = comp.tables[name][key]
            if "rate" in v:
                cell = f"{v['rate']:.0%} ({v['ci95'][0]:.0%}-{v['ci95'][1]:.0%})"
            else:
                cell = f"{v['median']:.3g} ({v['ci95'][0]:.3g}-{v['ci95'][1]:.3g})"
            if k:
                d = comp.differences[name][key]
                scale = 100 if "rate" in v else 1
                cell += f"\n  diff {d['difference'] * scale:+.3g} ({d['ci95'][0] * scale:+.3g} to {d['ci95'][1] * scale:+.3g})"
            cells.append(cell)
        table.add_row(key, *cells)
    console.print(table)


@app.command()
def validate(
    n_patients: Annotated[int, typer.Option("--n-patients", "-n", min=10, help="Virtual patients simulated per arm")] = 200,
    workers: Annotated[int | None, typer.Option(min=1, help="Worker threads (default: all CPUs)")] = None,
    scenarios: Annotated[
        Path | None, typer.Option(help="Folder of scenarios with trial sections (default: the target set's)")
    ] = None,
    targets: Annotated[
        str, typer.Option(help="calibration (clinical_targets.yaml) or training (training_arms.yaml, never tuned on)")
    ] = "calibration",
    out: Annotated[Path | None, typer.Option(help="Output folder (default results/validation[-training])")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 if any metric falls outside its interval")] = False,
    params: ParamsOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check the scenarios and the arms, simulate nothing")] = False,
    seed: Annotated[int | None, typer.Option(min=0, help="Root seed of every arm (default: each scenario's)")] = None,
    overrides: SetOption = None,
    scheduler: SchedulerOption = None,
    cv: Annotated[
        bool, typer.Option("--cv", help="Fit the emulator spec --fit and predict every study from a fit that never saw it")
    ] = False,
    fit: Annotated[Path, typer.Option(help="--cv: the emulator fit spec")] = Path("scenarios") / "calibration" / "emulator.yaml",
    posterior: PosteriorOption = None,
    replicates: ReplicatesOption = 20,
) -> None:
    """Compare every reported arm of clinical_targets.yaml with its simulated cohort.

    For each reported count, the arm is simulated with N virtual patients; the count in a
    cohort of the reported size follows a beta-binomial. Prints the table and writes
    validation.json and validation.png. Exit code 0 whether or not metrics agree, unless
    --strict.

    With --posterior: the N patients of an arm are split into --replicates cohorts, each under
    its own draw from the posterior (the same draw in every arm), and the predictive interval
    is their mixture: parameter uncertainty as well as patients and cohort size.

    With --cv: the Bayesian fit of --fit (both target sets; resumes where it stopped), each
    reported count in sample and left out with its study, two methods compared; writes
    cross_validation.md, fit.json and calibration.png (default folder results/validation-cv).
    """
    from sim.io import check_output_dir, provenance, save_figure, staged_outputs, write_json
    from sim.workflows.cohort import default_workers
    from sim.workflows.validate import (
        SCENARIO_DIRS,
        arm_cohorts,
        arm_scenarios,
        reported_arms,
        run_validation,
        summary_counts,
        validation_figure,
    )

    if cv:
        if params or overrides or seed is not None:
            raise UserError("--cv", "", "--params/--set/--seed", "none of them: the fit chooses the parameters")
        out_dir = check_output_dir(out or Path("results") / "validation-cv")
        _emulator_fit(fit, out_dir, workers or default_workers(), scheduler, dry_run)
        return
    if targets not in SCENARIO_DIRS:
        raise UserError("--targets", "", targets, " or ".join(SCENARIO_DIRS))
    scenarios = scenarios or SCENARIO_DIRS[targets]
    out_dir = check_output_dir(out or Path("results") / ("validation" if targets == "calibration" else f"validation-{targets}"))
    param_set = _param_set(params)
    draws = _posterior_draws(posterior, replicates, seed or 0, params)
    if not scenarios.is_dir():
        raise UserError("--scenarios", "", str(scenarios), "a folder of scenario YAML files")
    workers = workers or default_workers()
    missing = [k for k in reported_arms(targets) if k not in arm_scenarios(scenarios)]
    if missing:
        raise UserError(str(scenarios), ".".join(missing[0]), None, "a scenario whose trial section names this arm")
    sets = [*(overrides or []), *([f"seed={seed}"] if seed is not None else [])]
    n_arms = len(arm_cohorts(scenarios, param_set, sets, targets))  # every --set checked on every arm before any work
    if dry_run:
        console.print(f"[green]valid[/green]: {n_arms} reported arms x {n_patients} patients -> {out_dir}/")
        return
    _check_scheduler(scheduler)
    with _progress() as bar:
        task = bar.add_task("reported arms: patients", total=n_arms * n_patients)
        records = run_validation(
            scenarios, n_patients, workers, lambda k: bar.update(task, completed=k), param_set, sets, scheduler, targets,
            draws,
        )  # fmt: skip
    _print_validation(records)
    counts = summary_counts(records)
    with staged_outputs(out_dir) as staging:
        record = {"summary": counts, "n_simulated_per_arm": n_patients, "records": [vars(r) for r in records]}
        record |= _posterior_record(posterior, replicates, draws)
        write_json(staging / "validation.json", {**record, "provenance": provenance(params)})
        save_figure(staging / "validation.png", validation_figure(records))
    console.print(f"{counts['agree']} of {counts['metrics']} reported metrics inside their 95% predictive intervals")
    console.print(f"wrote {out_dir}/validation.json, validation.png")
    if strict and counts["agree"] < counts["metrics"]:
        raise typer.Exit(1)


def _posterior_draws(path: Path | None, replicates: int, seed: int, params: str | None) -> list[dict[str, float]] | None:
    """Parameter sets of ``--posterior`` (None without it); ``--params`` with it is an error."""
    if path is None:
        return None
    if params is not None:
        raise UserError("--posterior", "", "--params", "one of the two: the posterior draws are the parameter sets")
    from sim.workflows.posterior import parameter_draws

    return parameter_draws(path, replicates, seed)


def _posterior_record(path: Path | None, replicates: int, draws: list | None) -> dict:
    """The ``posterior`` entry of an output's JSON: which fit, how many replicates, the draws (empty without one)."""
    return {"posterior": {"file": str(path), "replicates": replicates, "draws": draws}} if draws else {}


def _print_validation(records) -> None:
    from rich.table import Table

    table = Table(title="Reported vs simulated (95% predictive interval for a cohort of the reported size)")
    for col in ("study", "arm", "metric", "reported", "simulated mean", "95% interval", "P(reported)", "verdict"):
        table.add_column(col)
    for r in records:
        if r.interval95 is None:
            table.add_row(r.study, r.arm, r.metric, f"{r.reported}/{r.n_reported}", "-", "-", "-", r.verdict)
            continue
        color = "green" if r.verdict == "agrees" else "red"
        table.add_row(
            r.study,
            r.arm,
            r.metric,
            f"{r.reported}/{r.n_reported}",
            f"{r.simulated_mean:.1f}",
            f"{r.interval95[0]}-{r.interval95[1]}",
            f"{r.p_reported:.3f}",
            f"[{color}]{r.verdict}[/{color}]",
        )
    console.print(table)


@app.command()
def sweep(
    spec: Annotated[Path, typer.Argument(help="Sweep spec YAML, e.g. scenarios/sweeps/cll1_window.yaml")],
    workers: Annotated[int | None, typer.Option(min=1, help="Local worker processes (default: all CPUs)")] = None,
    scheduler: SchedulerOption = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default results/<sweep name>)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate every point and simulate nothing")] = False,
) -> None:
    """Run a parameter sweep: points.parquet, and heatmaps (2-D grid) or sobol.csv/sobol.png (sobol).

    Every point runs the same virtual patients (common random numbers). Each finished
    point is kept under OUT/points/; rerunning the same command skips finished points.
    """
    from sim.io import check_output_dir
    from sim.workflows.cohort import default_workers
    from sim.workflows.sweep import Sweep

    sw = Sweep(spec)
    out_dir = check_output_dir(out or Path("results") / sw.spec.name)
    workers = workers or default_workers()
    where = f"Dask scheduler {scheduler}" if scheduler else f"{workers} local workers"
    n_runs = len(sw.points) * sw.spec.n_patients
    if dry_run:
        console.print(
            f"[green]valid[/green]: {sw.spec.design} sweep of {len(sw.points)} points x {sw.spec.n_patients} patients"
            f" ({n_runs} patient runs) on {where} -> {out_dir}/"
        )
        return
    _run_sweep(sw, out_dir, workers, scheduler)


def _run_sweep(sw, out_dir: Path, workers: int, scheduler: str | None) -> None:
    from sim.io import save_figure, staged_outputs, write_parquet
    from sim.plots import sobol_figure, sweep_heatmap
    from sim.workflows.sweep import grid_axes, run_sweep, sobol_indices

    with _progress() as bar:
        task = bar.add_task(f"{sw.spec.name}: points", total=len(sw.points))
        table = run_sweep(sw, out_dir / "points", workers, scheduler, progress=lambda k: bar.update(task, completed=k))
    written, indices = ["points.parquet"], None
    with staged_outputs(out_dir) as staging:
        write_parquet(staging / "points.parquet", table)
        if sw.spec.design == "sobol":
            indices = sobol_indices(sw, table)
            indices.to_csv(staging / "sobol.csv", index=False, float_format="%.4g")
            save_figure(staging / "sobol.png", sobol_figure(indices, f"{sw.spec.name}: Sobol indices"))
            written += ["sobol.csv", "sobol.png"]
        if axes := grid_axes(sw):
            for m in sw.spec.metrics:
                title = f"{sw.spec.name}: {m} ({sw.spec.n_patients} patients per point)"
                save_figure(staging / f"heatmap_{m}.png", sweep_heatmap(table, *axes, m, sw.spec.window, title))
                written.append(f"heatmap_{m}.png")
    _print_sweep(sw, table, indices)
    console.print(f"wrote {out_dir}/" + ", ".join(written))


def _print_sweep(sw, table, indices) -> None:
    from rich.table import Table

    if indices is not None and len(indices):
        t = Table(title="Sobol indices (95% bootstrap intervals)")
        for col in ("metric", "parameter", "first order S1", "total ST"):
            t.add_column(col)
        for _, r in indices.sort_values(["metric", "ST"], ascending=[True, False]).iterrows():
            t.add_row(
                r.metric,
                r.parameter,
                f"{r.S1:.2f} ({r.S1_lo:.2f} to {r.S1_hi:.2f})",
                f"{r.ST:.2f} ({r.ST_lo:.2f} to {r.ST_hi:.2f})",
            )
        console.print(t)
        return
    shown = table if len(table) <= 60 else table[table.get("in_window", False)] if "in_window" in table else table.head(60)
    t = Table(title=f"{sw.spec.name}: {len(table)} points x {sw.spec.n_patients} patients (95% intervals)")
    for col in [*sw.spec.parameters, *sw.spec.metrics] + (["in window"] if "in_window" in table else []):
        t.add_column(col)
    for _, r in shown.iterrows():
        cells = [f"{r[p]:.3g}" if isinstance(r[p], float) else str(r[p]) for p in sw.spec.parameters]
        cells += [f"{r[m]:.3g} ({r[m + '_lo']:.3g}-{r[m + '_hi']:.3g})" for m in sw.spec.metrics]
        if "in_window" in table:
            cells.append("yes" if r.in_window else "")
        t.add_row(*cells)
    console.print(t)


@app.command()
def screen(
    spec: Annotated[Path, typer.Argument(help="Screen spec YAML, e.g. scenarios/sweeps/target_screen.yaml")],
    n: Annotated[
        int | None, typer.Option("-n", "--n-patients", min=2, help="Virtual patients per design (default: the spec's)")
    ] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Worker threads (default: all CPUs)")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default results/<screen name>)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate every design and simulate nothing")] = False,
    scheduler: SchedulerOption = None,
) -> None:
    """Rank targets or designs on the same virtual patients: screen.csv, screen.png and a printed ranking.

    Finished chunks of every design are kept under OUT/designs/, so an interrupted screen
    resumes when the same command is run again.
    """
    from sim.io import check_output_dir, save_figure, staged_outputs
    from sim.workflows.cohort import default_workers, run_cohort
    from sim.workflows.screen import Screen, rank, screen_figure

    sc = Screen(spec)
    if n is not None:
        sc.spec.n_patients = n
    out_dir = check_output_dir(out or Path("results") / sc.spec.name)
    workers = workers or default_workers()
    if dry_run:
        n_designs = len(sc.scenarios)
        console.print(f"[green]valid[/green]: {n_designs} designs x {sc.spec.n_patients} patients -> {out_dir}/")
        return
    _check_scheduler(scheduler)
    cohorts = {}
    with _progress() as bar:
        task = bar.add_task(f"{sc.spec.name}: patients (all designs)", total=sc.spec.n_patients * len(sc.scenarios))
        for k, (name, scenario) in enumerate(sc.scenarios.items()):
            base = k * sc.spec.n_patients
            chunks = out_dir / "designs" / f"{name}-n{sc.spec.n_patients}"
            result = run_cohort(
                scenario, sc.spec.n_patients, workers, chunks, lambda i, b=base: bar.update(task, completed=b + i), scheduler
            )
            cohorts[name] = result.patients
    table = rank(sc, cohorts)
    with staged_outputs(out_dir) as staging:
        table.to_csv(staging / "screen.csv", index=False, float_format="%.4g")
        save_figure(staging / "screen.png", screen_figure(table, sc.spec))
    t = Table(title=f"{sc.spec.name}: ranked by therapeutic index ({sc.spec.n_patients} patients per design, 95% CI)")
    for col in ("rank", "design", f"efficacy ({sc.spec.efficacy})", *(x.metric for x in sc.spec.toxicities), "TI"):
        t.add_column(col)
    for _, r in table.iterrows():
        cells = [str(r["rank"]), r.design, f"{r.efficacy:.2f} ({r.efficacy_lo:.2f}-{r.efficacy_hi:.2f})"]
        cells += [f"{r[x.metric]:.3g} ({r[x.metric + '_lo']:.3g}-{r[x.metric + '_hi']:.3g})" for x in sc.spec.toxicities]
        cells.append(f"{r.therapeutic_index:+.2f} ({r.therapeutic_index_lo:+.2f} to {r.therapeutic_index_hi:+.2f})")
        t.add_row(*cells)
    console.print(t)
    console.print(f"wrote {out_dir}/screen.csv, screen.png")


@app.command()
def calibrate(
    spec: Annotated[Path | None, typer.Argument(help="Calibration spec (default scenarios/calibration/trials.yaml)")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Recover a known parameter from synthetic data (a few minutes)")] = False,
    workers: Annotated[int | None, typer.Option(min=1, help="Local worker processes (default: all CPUs)")] = None,
    scheduler: SchedulerOption = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default results/calibration[-quick])")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check the spec and its arms, fit nothing")] = False,
) -> None:
    """Fit low-confidence parameters by ABC-SMC (pyabc): posterior.parquet, corner.png, calibrated.yaml.

    The fit checkpoints every generation in OUT/abc.db: rerunning the same command after an
    interruption continues from there. Load the result with --params OUT/calibrated.yaml.
    """
    from sim.io import check_output_dir
    from sim.workflows.calibrate import run_calibration
    from sim.workflows.cohort import default_workers

    if spec is None:
        spec = Path("scenarios") / "calibration" / ("quick.yaml" if quick else "trials.yaml")
    out_dir = check_output_dir(out or Path("results") / ("calibration-quick" if quick else "calibration"))
    workers = workers or default_workers()
    if _is_emulator_spec(spec):
        _emulator_fit(spec, out_dir, workers, scheduler, dry_run)
        return
    if dry_run:
        from sim.workflows.calibrate import Problem, load_spec

        loaded = load_spec(spec)
        Problem(loaded, spec)  # builds every arm's scenario: bad paths and values fail here
        console.print(f"[green]valid[/green]: {spec}: {len(loaded.parameters)} parameters -> {out_dir}/")
        return
    with err_console.status(f"ABC-SMC on {spec} (every generation is kept in {out_dir}/abc.db)"):
        record = run_calibration(spec, out_dir, workers, scheduler, log=lambda line: err_console.print(line))
    table = Table(
        title=f"{record['name']}: posterior after {record['generations']} generations, {record['simulations']} simulations"
    )
    for col in ("parameter", "median", "95% credible interval", "prior"):
        table.add_column(col)
    for name, s in record["posterior"].items():
        table.add_row(
            name, f"{s['median']:.4g}", f"{s['ci95'][0]:.4g} - {s['ci95'][1]:.4g}", f"{s['prior'][0]:.3g} - {s['prior'][1]:.3g}"
        )
    console.print(table)
    console.print(f"data: {record['data']}; acceptance thresholds {[round(e, 3) for e in record['acceptance_thresholds']]}")
    console.print(f"wrote {out_dir}/posterior.parquet, corner.png, calibrated.yaml (use: --params {out_dir}/calibrated.yaml)")


def _is_emulator_spec(spec: Path) -> bool:
    from sim.scenario import read_yaml_mapping

    return read_yaml_mapping(spec).get("method") == "emulator"


def _emulator_fit(spec: Path, out_dir: Path, workers: int, scheduler: str | None, dry_run: bool) -> None:
    from sim.workflows.emulate import constraint_arms, contraction_text, load_emulator_spec, reported_counts, run_fit

    if dry_run:
        loaded = load_emulator_spec(spec)
        arms, metrics = reported_counts(loaded, (spec.parent / loaded.scenarios).resolve())
        constraint_arms(loaded, spec)
        console.print(
            f"[green]valid[/green]: {spec}: {len(loaded.parameters)} parameters, {len(metrics)} reported counts in "
            f"{len(arms)} arms, {len(loaded.constraints)} constraints, {loaded.design_points} design points"
            f"{f' + {loaded.refine_points} refined' if loaded.refine_points else ''} -> {out_dir}/"
        )
        return
    _check_scheduler(scheduler)
    record = run_fit(spec, out_dir, workers, scheduler, log=lambda line: err_console.print(line))
    ess = record["effective_sample_size"]
    table = Table(title=f"{record['name']}: posterior, {record['method']} (effective draws {ess:.0f})")
    for col in ("parameter", "median", "95% credible interval", "prior", "default", "total Sobol index", "contraction"):
        table.add_column(col)
    for name, s in record["posterior"].items():
        lo, hi = s["ci95"]
        table.add_row(name, f"{s['median']:.4g}", f"{lo:.4g} - {hi:.4g}", f"{s['prior'][0]:.3g} - {s['prior'][1]:.3g}",
                      f"{s['default']:.4g}", f"{s['max_total_index']:.2f}",
                      contraction_text(s) + ("" if s["identified"] else " (held at default)"))  # fmt: skip
    console.print(table)
    for method, c in record["comparison"].items():
        for mode in ("in_sample", "leave_one_study_out"):
            m = c[mode]
            console.print(
                f"{method.replace('_', ' ')}, {mode.replace('_', ' ')}: {m['inside']} of {m['metrics']} reported counts "
                f"inside their 95% predictive interval; mean width {m['mean_width']:.2f} (binomial at the observed rate: "
                f"{m['mean_binomial_width']:.2f})"
            )
    console.print(f"kept {record['chosen_method'].replace('_', ' ')}; wrote {out_dir}/fit.json, cross_validation.md, "
                  "posterior.parquet, design.parquet, sensitivity.parquet, calibration.png, calibrated.yaml")  # fmt: skip


@app.command()
def export(
    cohort_dir: Annotated[Path, typer.Argument(help="A folder written by `cart-sim cohort`")],
    fmt: Annotated[str, typer.Option("--format", help="nonmem: ID, TIME, DV, EVID, AMT, CMT, DVID, MDV, WT, AGE")] = "nonmem",
    out: Annotated[Path | None, typer.Option("--out", help="CSV file to write (default COHORT_DIR/nonmem.csv)")] = None,
) -> None:
    """Write a cohort's patients and daily trajectories as a NONMEM-style dataset (for nlmixr2, NONMEM, Monolix)."""
    import pandas as pd

    from sim.export import dvid_legend, nonmem_dataset
    from sim.io import atomic_path

    if fmt != "nonmem":
        raise UserError("--format", "", fmt, "nonmem")
    tables = {}
    for name in ("patients", "trajectories"):
        path = cohort_dir / f"{name}.parquet"
        if not path.is_file():
            raise UserError(str(cohort_dir), "", f"{name}.parquet missing", "a folder written by `cart-sim cohort`")
        tables[name] = pd.read_parquet(path)
    table = nonmem_dataset(tables["patients"], tables["trajectories"])
    target = out or cohort_dir / "nonmem.csv"
    with atomic_path(target) as tmp:
        tmp.write_text(f"# cart-sim cohort {cohort_dir}: {dvid_legend()}; TIME in hours; AMT in CAR+ cells/kg\n")
        with tmp.open("a") as f:
            table.to_csv(f, index=False, na_rep=".")
    console.print(f"wrote {target} ({len(table)} records, {table.ID.nunique()} patients)")


@app.command()
def vpc(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML of the arm the observed data come from")],
    observed: Annotated[
        Path, typer.Option(help="Observed data: NONMEM-style CSV (ID, TIME h, DV, DVID) or CSV with day + series columns")
    ],
    n: Annotated[int, typer.Option("-n", "--n-patients", min=10, help="Virtual patients simulated")] = 200,
    interval: Annotated[float, typer.Option(min=1, max=99, help="Central prediction interval in percent")] = 90.0,
    workers: Annotated[int | None, typer.Option(min=1, help="Worker threads (default: all CPUs)")] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Root seed (overrides the scenario's seed)")] = None,
    overrides: SetOption = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default results/<scenario name>-vpc)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate everything and simulate nothing")] = False,
    params: ParamsOption = None,
    scheduler: SchedulerOption = None,
) -> None:
    """Visual predictive check: observed data over simulated percentile bands (vpc.png, vpc_bands.parquet, vpc.json)."""
    from sim.io import check_output_dir, provenance, refuse_other_work, save_figure, staged_outputs, write_json, write_parquet
    from sim.workflows.cohort import default_workers, spec_hash
    from sim.workflows.vpc import bands, coverage, figure, read_observed

    sc = _load(scenario, overrides, seed, _param_set(params))
    obs = read_observed(observed)
    out_dir = check_output_dir(out or Path("results") / f"{sc.name}-vpc")
    workers = workers or default_workers()
    key = spec_hash(sc, n)
    refuse_other_work(out_dir, "chunks/spec.json", key, "the scenario and -n of the unfinished cohort there")
    if dry_run:
        console.print(f"[green]valid[/green]: {len(obs)} observations, {n} patients of {sc.name} -> {out_dir}/")
        return
    _check_scheduler(scheduler)
    result = _simulate_cohort(sc, n, workers, out_dir, key, scheduler)
    band = bands(result.trajectories, interval)
    cover = coverage(band, obs)
    with staged_outputs(out_dir) as staging:
        write_parquet(staging / "vpc_bands.parquet", band)
        summary = {"scenario": sc.name, "n_patients": n, "observed": str(observed), "prediction_interval_percent": interval}
        write_json(staging / "vpc.json", {**summary, "coverage": cover, "provenance": provenance(params, [sc])})
        save_figure(staging / "vpc.png", figure(band, obs, interval, f"{sc.name}: {n} virtual patients vs {observed.name}"))
    shutil.rmtree(out_dir / "chunks", ignore_errors=True)
    for series, c in cover.items():
        share = "no point within the simulated days" if c["points"] == 0 else f"{c['share_inside']:.0%}"
        console.print(
            f"{series}: {c['inside']} of {c['points']} observed points inside the simulated {interval:g}% band ({share})"
        )
    console.print(f"wrote {out_dir}/vpc.png, vpc_bands.parquet, vpc.json")


@app.command()
def dashboard(
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every interface)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on")] = 8765,
    scenarios: Annotated[Path, typer.Option(help="Folder of scenarios the page offers")] = Path("scenarios"),
) -> None:
    """Serve the interactive dashboard (Mesa's SolaraViz): one virtual patient's CAR T, blasts, ANC and IL-6 over days.

    Pick scenario, dose, CAR target, iCAR I_max and seed in the sidebar, press Reset, then
    Step (one day) or play. Needs the dashboard extra (solara; see the README's Dashboard).
    """
    import importlib.util
    import os
    import subprocess

    missing = [m for m in ("solara", "altair", "networkx") if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError("dashboard", "", f"{missing[0]} not installed", 'the dashboard extra: pip install "cart-sim[dashboard]"')
    if not scenarios.is_dir() or not any(scenarios.rglob("*.yaml")):
        raise UserError("--scenarios", "", str(scenarios), "a folder of scenario YAML files")
    # no telemetry; no hook-rule warning about Mesa's own SolaraViz code on every start
    quiet = {"SOLARA_TELEMETRY_MIXPANEL_ENABLE": "False", "SOLARA_CHECK_HOOKS": "off"}
    env = {**quiet, **os.environ, "CART_SIM_SCENARIOS": str(scenarios.resolve())}
    page = Path(__file__).with_name("dashboard.py")
    cmd = [sys.executable, "-m", "solara", "run", str(page), "--host", host, "--port", str(port), "--production", "--no-open"]
    err_console.print(f"dashboard on http://{host}:{port} (Ctrl+C stops it)")
    rc = subprocess.call(cmd, env=env)
    if rc:
        raise typer.Exit(rc)


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
        console.print(escape(f"{name} = {p.value:g} {p.unit} [{p.confidence}]{prior}: {p.source}"), highlight=False)


def main() -> None:
    """Entry point: run the app, turning user errors into one line and exit code 2."""
    try:
        rc = app(standalone_mode=False)  # returns the code of typer.Exit (e.g. --strict)
    except UserError as e:
        err_console.print(f"[red]error[/red]: {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("aborted")
        sys.exit(130)
    except Exception as e:  # usage errors of the CLI parser carry their own exit code (2)
        if hasattr(e, "exit_code") and hasattr(e, "format_message"):
            err_console.print(f"[red]error[/red]: {escape(e.format_message())}", highlight=False, soft_wrap=True)
            sys.exit(e.exit_code)
        raise
    if isinstance(rc, int) and rc:
        sys.exit(rc)


if __name__ == "__main__":
    main()
