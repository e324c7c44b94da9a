"""The `cogitans` command line. Bad input becomes one line on stderr and exit code 2."""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path
from typing import Optional

import typer

from genome.cli import app as genome_app
from genome.errors import BadInput

app = typer.Typer(
    help="Cogitans: an evolving swarm of tiny neural agents, and a gene pool for real networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(genome_app, name="genome")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"cogitans {version('cogitans')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Cogitans command line."""


@app.command()
def run(
    config: Optional[Path] = typer.Argument(None, help="Experiment spec (YAML)."),
    set_: list[str] = typer.Option([], "--set", help="Override a spec key: --set mutation.sigma=0.02"),
    steps: Optional[int] = typer.Option(None, help="Steps to run (overrides run.steps)."),
    out: Path = typer.Option(Path("runs"), help="Runs root: each run gets runs/<name>-<timestamp>/."),
    seed: Optional[int] = typer.Option(None, help="Random seed (overrides run.seed)."),
    resume: Optional[Path] = typer.Option(None, help="Continue an interrupted run from its last checkpoint."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary as the last line."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
    dashboard: bool = typer.Option(False, "--dashboard", help="Also serve the live dashboard for --out."),
    port: int = typer.Option(8501, help="Dashboard port (with --dashboard)."),
    ray: bool = typer.Option(False, "--ray", help="Run colonies and memory shards as Ray actors (backend.name=ray)."),
    address: Optional[str] = typer.Option(None, help="With --ray: join a Ray cluster (auto or HOST:PORT)."),
) -> None:
    """Run a swarm experiment (serial backend, or Ray actors with --ray), or --resume RUN_DIR."""
    from experiments.runner import resume_run, start_run

    if address is not None and not ray and resume is None:
        raise BadInput("--address needs --ray")
    if ray and resume is None:
        set_ = [*set_, "backend.name=ray"] + ([f"backend.address={address}"] if address else [])

    proc = None
    if dashboard:
        from dashboard.launch import start

        root = resume.parent if resume is not None else out
        proc = start(root, host="127.0.0.1", port=port, wait=False)

    if resume is not None:
        if config is not None or set_ or seed is not None:
            raise BadInput("--resume takes a run directory only; do not pass CONFIG, --set or --seed")
        summary = resume_run(resume, steps=steps, progress=progress and not json_out, address=address)
    else:
        if config is None:
            raise BadInput("give a CONFIG file (for example experiments/configs/default.yaml) or --resume RUN_DIR")
        summary = start_run(config, overrides=set_, steps=steps, seed=seed, out=out,
                            progress=progress and not json_out)
    if json_out:
        typer.echo(json.dumps(summary))
    else:
        typer.echo(f"run directory: {summary['run_dir']}")
    if proc is not None:
        from dashboard.launch import serve

        typer.echo("The dashboard keeps serving the finished run; Ctrl-C to stop.", err=True)
        serve(proc)


@app.command()
def sweep(
    config: Optional[Path] = typer.Argument(None, help="Base experiment spec (YAML)."),
    grid: list[str] = typer.Option([], "--grid", help="Sweep a key over values: --grid mutation.sigma=0.001,0.01"),
    random: list[str] = typer.Option([], "--random", help="Sample a key: --random mutation.sigma=0.001:0.1:log"),
    samples: int = typer.Option(4, help="Random samples (with --random)."),
    repeats: int = typer.Option(1, help="Repeats of every combination, with seeds seed, seed+1, ..."),
    set_: list[str] = typer.Option([], "--set", help="Override a base spec key for every trial."),
    max_concurrent: Optional[int] = typer.Option(None, help="Trials at once (default: one per CPU)."),
    address: Optional[str] = typer.Option(None, help="Ray cluster to join (auto or HOST:PORT); default: a local Ray."),
    backend: str = typer.Option("tune", help="tune (Ray Tune, run store per trial) or batch (mesa.batch_run, in-process)."),
    out: Path = typer.Option(Path("runs"), help="Runs root; the sweep gets RUNS_ROOT/sweep-<timestamp>/."),
    resume: Optional[Path] = typer.Option(None, help="Finish an interrupted sweep: runs only the missing trials."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary as the last line."),
) -> None:
    """Sweep spec keys over values (grid and/or random) as Ray Tune trials, with repeats."""
    from experiments import sweep as sweeps
    from experiments import sweep_results

    if backend not in ("tune", "batch"):
        raise BadInput(f"--backend must be tune or batch, got '{backend}'")
    if resume is not None:
        if config is not None or grid or random:
            raise BadInput("--resume takes a sweep directory only; do not pass CONFIG, --grid or --random")
        sweep_dir = resume
        record, trials = sweeps.load(sweep_dir)
    elif config is None:
        raise BadInput("give a base CONFIG file (for example experiments/configs/smoke.yaml) or --resume SWEEP_DIR")
    elif backend == "batch":
        from experiments.batch import batch_sweep
        from experiments.spec import apply_overrides, read_yaml, validate

        if random:
            raise BadInput("--backend batch takes --grid only")
        base = apply_overrides(read_yaml(config), set_)
        keys = dict(sweeps.parse_grid(g) for g in grid)
        sweeps.plan(base, grid, [], 1, repeats)  # validates every value before anything runs
        table = batch_sweep(base, keys, repeats, validate(base).run.steps)
        summary = sweep_results.summary_table(table, list(keys))
        sweep_results.print_ranked(summary, list(keys))
        best = summary.iloc[0].to_dict() if len(summary) else {}
        if json_out:
            typer.echo(json.dumps({"sweep_dir": None, "trials": len(table), "failed": 0, "best": best}, default=str))
        return
    else:
        sweep_dir, trials = sweeps.create(config, set_, grid, random, samples, repeats, out)
        record, trials = sweeps.load(sweep_dir)
    todo = [t for t in trials if sweeps.finished(sweep_dir, t) is None]
    typer.echo(f"sweep {sweep_dir}: {len(trials)} trials, {len(trials) - len(todo)} already finished, "
               f"running {len(todo)}", err=True)
    errors = {}
    if todo:
        errors = sweeps.run_with_tune(sweep_dir, record, todo, max_concurrent, address) if backend == "tune" \
            else sweeps.run_local(sweep_dir, record, todo)
    params = list(trials[0].params)
    table = sweep_results.trial_table(sweep_dir, trials, errors)
    summary = sweep_results.summary_table(table, params)
    sweep_results.write(sweep_dir, table, summary)
    sweep_results.print_ranked(summary, params)
    failed = int((table["status"] != "finished").sum())
    best = summary.iloc[0].to_dict() if len(summary) else {}
    if json_out:
        typer.echo(json.dumps({"sweep_dir": str(sweep_dir), "trials": len(trials), "ran": len(todo),
                               "failed": failed, "best": best}, default=str))
    else:
        typer.echo(f"results: {sweep_dir / 'summary.csv'} ({failed} failed)")


@app.command()
def experiment(
    name: str = typer.Argument(..., help="specialisation, starvation, mutation-sweep, threshold-sweep, bitdelta, dedup-family, alignment"),
    quick: bool = typer.Option(False, "--quick", help="The small variant (seconds to a minute)."),
    out: Path = typer.Option(Path("runs"), help="Runs root; the report goes to RUNS_ROOT/claim-<name>-<timestamp>/."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary as the last line."),
) -> None:
    """Test one of the source documents' claims; writes report.md with plots and prints its table."""
    from rich.console import Console
    from rich.table import Table

    from experiments.claims.report import run as run_claim

    result = run_claim(name, quick, out)
    table = Table(title=f"{name}: {result['verdict']}")
    rows = result["table"]
    for col in rows[0]:
        table.add_column(str(col), justify="right")
    for row in rows:
        table.add_row(*(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row.values()))
    Console(stderr=json_out).print(table)
    if json_out:
        typer.echo(json.dumps(result, default=str))
    else:
        typer.echo(f"report: {result['report']}")


@app.command("dashboard")
def dashboard_cmd(
    root: Path = typer.Argument(Path("runs"), help="Runs root to show."),
    port: int = typer.Option(8501, help="Port to serve on."),
    host: str = typer.Option("127.0.0.1", help="Address to bind (localhost unless told otherwise)."),
) -> None:
    """Serve the live dashboard (Streamlit) for every run under ROOT."""
    from dashboard.launch import start

    start(root, host=host, port=port, wait=True)


@app.command()
def ask(
    run_dir: Path = typer.Argument(..., help="A text_qa run directory (with a checkpoint)."),
    question: str = typer.Argument(..., help="The question, in quotes."),
    feedback: Optional[str] = typer.Option(None, help="up or down: your vote, stored in the run as fitness."),
    json_out: bool = typer.Option(False, "--json", help="Print the whole answer as one JSON object."),
) -> None:
    """Ask a trained swarm a question: answer, confidence, the agents that answered, memory hits."""
    from experiments.ask import ask_run, describe

    result = ask_run(run_dir, question, feedback)
    typer.echo(json.dumps(result) if json_out else describe(result))


@app.command()
def serve(
    run_dir: Path = typer.Argument(..., help="A text_qa run directory (with a checkpoint)."),
    host: str = typer.Option("127.0.0.1", help="Address to bind (localhost unless told otherwise)."),
    port: int = typer.Option(8000, help="Port to serve on."),
    checkpoint_every: int = typer.Option(100, help="Votes between checkpoints (and one at shutdown)."),
) -> None:
    """Serve a swarm as an HTTP JSON API (POST /ask, POST /feedback, docs at /docs); it keeps evolving."""
    from experiments.serve import run_server

    run_server(run_dir, host=host, port=port, checkpoint_every=checkpoint_every)


def _reflow_help(group: typer.Typer) -> None:
    """Join the wrapped lines of each command docstring's paragraphs: this typer keeps single line
    breaks after the first paragraph, so `--help` would show the source's wrapping."""
    for command in group.registered_commands:
        doc = inspect.cleandoc(command.help or command.callback.__doc__ or "")
        command.help = "\n\n".join(" ".join(p.split("\n")) for p in doc.split("\n\n"))
    for sub in group.registered_groups:
        _reflow_help(sub.typer_instance)


_reflow_help(app)


def main() -> None:
    """Console-script entry point: one clear line and exit code 2 for bad input."""
    try:
        app()  # standalone: usage errors already exit 2 with click's message
    except BadInput as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)
    except OSError as err:  # a path the command cannot create or read (a file where a folder goes, ...)
        if err.filename is None:
            raise
        typer.echo(f"error: {err.filename}: {err.strerror or err}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
