"""`cogitans genome ...` commands. Heavy imports happen inside the commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="Take real models apart into genes, measure, dedup and recombine them.",
                  no_args_is_help=True)


@app.callback()
def _genome() -> None:
    """Genome tools (GGUF, safetensors, PyTorch)."""
