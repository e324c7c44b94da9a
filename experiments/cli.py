"""The `cogitans` command line. Bad input becomes one line on stderr and exit code 2."""

from __future__ import annotations

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
) -> None:
    """Run a swarm experiment (serial backend), or --resume RUN_DIR."""
    from experiments.runner import resume_run, start_run

    if dashboard:
        from dashboard.launch import start

        root = resume.parent if resume is not None else out
        start(root, host="127.0.0.1", port=port, wait=False)

    if resume is not None:
        if config is not None or set_ or seed is not None:
            raise BadInput("--resume takes a run directory only; do not pass CONFIG, --set or --seed")
        summary = resume_run(resume, steps=steps, progress=progress and not json_out)
    else:
        if config is None:
            raise BadInput("give a CONFIG file (for example experiments/configs/default.yaml) or --resume RUN_DIR")
        summary = start_run(config, overrides=set_, steps=steps, seed=seed, out=out,
                            progress=progress and not json_out)
    if json_out:
        typer.echo(json.dumps(summary))
    else:
        typer.echo(f"run directory: {summary['run_dir']}")


@app.command("dashboard")
def dashboard_cmd(
    root: Path = typer.Argument(Path("runs"), help="Runs root to show."),
    port: int = typer.Option(8501, help="Port to serve on."),
    host: str = typer.Option("127.0.0.1", help="Address to bind (localhost unless told otherwise)."),
) -> None:
    """Serve the live dashboard (Streamlit) for every run under ROOT."""
    from dashboard.launch import start

    start(root, host=host, port=port, wait=True)


def main() -> None:
    """Console-script entry point: one clear line and exit code 2 for bad input."""
    try:
        app()  # standalone: usage errors already exit 2 with click's message
    except BadInput as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
