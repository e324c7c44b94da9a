"""`cogitans genome ...` commands. Heavy imports happen inside the commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

app = typer.Typer(help="Take real models apart into genes, measure, dedup and recombine them.",
                  no_args_is_help=True)

_JSON = typer.Option(False, "--json", help="Print one JSON object as the last line.")
_ORGANS_HELP = ("Tensors to select: roles/domains (organ, skeleton, norm, mlp ...) or globs on canonical or "
                "original names (blk.*.ffn_*), comma-separated.")


@app.callback()
def _genome() -> None:
    """Genome tools (GGUF, safetensors, PyTorch, Hugging Face folders, organ folders)."""


def _console() -> Any:
    import sys

    from rich.console import Console

    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f}"


def _totals_table(totals: dict[str, dict[str, int]]) -> Any:
    from rich.table import Table

    table = Table(title="totals per role")
    for col in ("role", "tensors", "params", "MB"):
        table.add_column(col, justify="left" if col == "role" else "right")
    for role, t in totals.items():
        table.add_row(role, str(t["tensors"]), f"{t['params']:,}", _mb(t["bytes"]))
    table.add_row("all", str(sum(t["tensors"] for t in totals.values())),
                  f"{sum(t['params'] for t in totals.values()):,}", _mb(sum(t["bytes"] for t in totals.values())))
    return table


@app.command()
def inspect(
    model: Path = typer.Argument(..., help="GGUF, safetensors, PyTorch file, HF folder or organ folder."),
    organs: Optional[str] = typer.Option(None, help=_ORGANS_HELP),
    measure: bool = typer.Option(True, help="Measure each tensor (sampled) to give its quality tier."),
    json_out: bool = _JSON,
) -> None:
    """Table of every tensor: names, role, domain, subtype, shape, dtype, tier; totals per role."""
    from rich.table import Table

    from genome.formats import open_model
    from genome.organs import anatomy, totals_by_role

    with open_model(model) as reader:
        rows = anatomy(reader, measure=measure, organs=organs)
        header = f"{model}  format={reader.format}  arch={reader.arch or '?'}  tensors={len(reader)}"
    totals = totals_by_role(rows)
    if json_out:
        typer.echo(json.dumps({"model": str(model), "tensors": rows, "totals": totals}))
        return
    table = Table(title=header)
    for col in ("name", "canonical", "role", "domain", "subtype", "shape", "dtype", "tier"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["canonical"], r["role"], r["domain"], r["subtype"],
                      "x".join(map(str, r["shape"])) or "()", r["dtype"], r.get("tier", "-"))
    console = _console()
    console.print(table)
    console.print(_totals_table(totals))


@app.command()
def extract(
    model: Path = typer.Argument(..., help="Model to take apart."),
    out_dir: Path = typer.Argument(..., help="Organ folder to create (absent or empty)."),
    measure: bool = typer.Option(True, help="Store entropy/kurtosis/theta/score per tensor."),
    json_out: bool = _JSON,
) -> None:
    """Take a model apart: one .bin per tensor plus manifest.json.

    The manifest holds names, roles, shapes, dtypes, byte sizes, BLAKE3 hashes, measurements and
    the source model's metadata.
    """
    from genome.organs import extract as run

    manifest = run(model, out_dir, measure=measure)
    summary = {"out": str(out_dir), "tensors": len(manifest["tensors"]), "totals": manifest["totals"]}
    if json_out:
        typer.echo(json.dumps(summary))
        return
    console = _console()
    console.print(f"extracted {summary['tensors']} tensors from {model} into {out_dir}")
    console.print(_totals_table(manifest["totals"]))


@app.command()
def graft(
    recipient: Path = typer.Argument(..., help="Model that receives the organs (never changed)."),
    donor: Path = typer.Argument(..., help="Model or organ folder that gives them."),
    out: Path = typer.Argument(..., help="Output: .gguf, .safetensors, or a folder (organ folder)."),
    organs: str = typer.Option(..., help=_ORGANS_HELP),
    direct: Optional[bool] = typer.Option(None, "--direct/--rewrite",
                                          help="GGUF to GGUF: overwrite bytes in a copy (default when possible), "
                                               "or rewrite the file."),
    json_out: bool = _JSON,
) -> None:
    """Replace the recipient's selected tensors with the donor's, into a new model."""
    from genome.organs import graft as run

    result = run(recipient, donor, organs, out, direct=direct)
    summary = {"out": str(result.out), "mode": result.mode, "replaced": len(result.replaced),
               "bytes_replaced": result.bytes_replaced}
    if json_out:
        typer.echo(json.dumps(summary))
        return
    _console().print(f"grafted {summary['replaced']} tensors ({_mb(result.bytes_replaced)} MB) from {donor} "
                     f"into a copy of {recipient}: {out} ({result.mode})")


@app.command()
def assemble(
    source: Path = typer.Argument(..., help="Organ folder (or any model, to convert)."),
    out: Path = typer.Argument(..., help="OUT.gguf or OUT.safetensors."),
) -> None:
    """Rebuild a model file (GGUF or safetensors) from an organ folder."""
    from genome.organs import assemble as run

    kind = run(source, out)
    _console().print(f"assembled {source} into {out} ({kind})")


@app.command()
def measure(
    model: Path = typer.Argument(..., help="Model to measure."),
    organs: Optional[str] = typer.Option(None, help=_ORGANS_HELP),
    json_out: bool = _JSON,
) -> None:
    """Entropy, kurtosis, theta, quality score and tier of each tensor."""
    from collections import Counter

    from rich.table import Table

    from genome.formats import open_model
    from genome.organs import anatomy

    with open_model(model) as reader:
        rows = anatomy(reader, measure=True, organs=organs)
    tiers = Counter(r["tier"] for r in rows)
    if json_out:
        typer.echo(json.dumps({"model": str(model), "tensors": rows, "tiers": dict(tiers)}))
        return
    table = Table(title=f"{model}: measured on <= 100k sampled values per tensor")
    for col in ("canonical", "role", "entropy", "kurtosis", "theta", "zeros", "score", "tier"):
        table.add_column(col, justify="left" if col in ("canonical", "role", "tier") else "right")
    for r in rows:
        if "score" not in r:  # a type gguf cannot dequantise
            table.add_row(r["canonical"], r["role"], "-", "-", "-", "-", "-", r["tier"])
            continue
        table.add_row(r["canonical"], r["role"], f"{r['entropy']:.3f}", f"{r['kurtosis']:.2f}",
                      f"{r['theta']:.1f}", f"{r['zero_frac']:.3f}", f"{r['score']:.1f}", r["tier"])
    console = _console()
    console.print(table)
    console.print("tiers: " + ", ".join(f"{t} {tiers[t]}" for t in ("PRISTINE", "HEALTHY", "DEGRADED", "DEAD", "?")
                                        if tiers[t] or t != "?"))


@app.command()
def purify(
    model: Path = typer.Argument(..., help="Model to purify."),
    out: Path = typer.Argument(..., help="Output: .gguf, .safetensors, or a folder."),
    strength: float = typer.Option(0.5, help="0 keeps everything, 1 removes every incoherent component."),
    organs: str = typer.Option("organ,skeleton", help=_ORGANS_HELP),
    probes: int = typer.Option(64, help="Gaussian probe inputs for the output-shift check."),
    json_out: bool = _JSON,
) -> None:
    """Haar-wavelet purification of the selected tensors, with a before/after report.

    The report gives each tensor's measures before and after and how far the layer's outputs
    moved on seeded Gaussian probe inputs.
    """
    from rich.table import Table

    from genome.errors import BadInput

    if not 0.0 <= strength <= 1.0:  # fail before importing torch
        raise BadInput(f"--strength must be between 0 and 1, got {strength}")
    from genome.transforms import purify_model

    reports = purify_model(model, out, strength=strength, organs=organs, n_probes=probes)
    rows = [{"name": n, "theta_before": r.before.theta, "theta_after": r.after.theta,
             "score_before": r.before.score, "score_after": r.after.score, "weight_change": r.weight_change,
             "output_shift": r.output_shift, "output_cosine": r.output_cosine} for n, r in reports]
    if json_out:
        typer.echo(json.dumps({"out": str(out), "strength": strength, "tensors": rows}))
        return
    table = Table(title=f"purified {len(rows)} tensors (strength {strength}) -> {out}")
    for col in ("name", "theta", "score", "weight change", "output shift", "output cos"):
        table.add_column(col, justify="left" if col == "name" else "right")
    for r in rows:
        table.add_row(r["name"], f"{r['theta_before']:.1f} -> {r['theta_after']:.1f}",
                      f"{r['score_before']:.0f} -> {r['score_after']:.0f}", f"{r['weight_change']:.4f}",
                      f"{r['output_shift']:.4f}", f"{r['output_cosine']:.4f}")
    _console().print(table)


@app.command()
def quantize(
    model: Path = typer.Argument(..., help="Model to compress (for bitdelta: the fine-tuned model)."),
    out: Path = typer.Argument(..., help="Packed output, OUT.safetensors."),
    method: str = typer.Option("absmean", help="absmean or twn (ternary, 2-bit packed), or bitdelta (1-bit)."),
    base: Optional[Path] = typer.Option(None, help="bitdelta: the base model the delta is taken against."),
    per_row: bool = typer.Option(False, help="bitdelta: one scale per row instead of per tensor."),
    organs: str = typer.Option("organ,skeleton", help=_ORGANS_HELP),
    json_out: bool = _JSON,
) -> None:
    """Ternary (absmean, TWN) or BitDelta quantisation into a packed file.

    Reports each tensor's measured compression ratio and reconstruction error.
    """
    from rich.table import Table

    from genome.errors import BadInput

    if out.suffix.lower() != ".safetensors":  # fail before importing torch
        raise BadInput(f"output {out}: the packed format is safetensors; use a .safetensors suffix")
    if method not in ("absmean", "twn", "bitdelta"):
        raise BadInput(f"--method {method!r}: expected one of absmean, twn, bitdelta")
    from genome.transforms import quantize_model

    rows = quantize_model(model, out, method=method, organs=organs, base=base, per_row=per_row)
    orig = sum(r["original_bytes"] for r in rows)
    packed = sum(r["packed_bytes"] for r in rows)
    summary = {"out": str(out), "method": method, "tensors": len(rows), "original_bytes": orig,
               "packed_bytes": packed, "ratio": orig / max(packed, 1),
               "mean_rel_error": sum(r["rel_error"] for r in rows) / max(len(rows), 1),
               "file_bytes": out.stat().st_size}
    if json_out:
        typer.echo(json.dumps({**summary, "rows": rows}))
        return
    table = Table(title=f"{method}: {len(rows)} tensors -> {out}")
    for col in ("name", "shape", "ratio", "rel error", "weight rel error"):
        table.add_column(col, justify="left" if col == "name" else "right")
    for r in rows:
        table.add_row(r["name"], "x".join(map(str, r["shape"])), f"{r['ratio']:.2f}", f"{r['rel_error']:.4f}",
                      f"{r['weight_rel_error']:.4f}")
    console = _console()
    console.print(table)
    console.print(f"quantised tensors: {_mb(orig)} MB -> {_mb(packed)} MB (ratio {summary['ratio']:.2f}), "
                  f"mean relative error {summary['mean_rel_error']:.4f}; file {_mb(summary['file_bytes'])} MB")


@app.command()
def merge(
    config: Path = typer.Argument(..., help="Merge config (mergekit YAML: models or slices, merge_method ...)."),
    out: Path = typer.Argument(..., help="Output: OUT.safetensors, OUT.gguf, or a folder (sharded HF folder)."),
    dtype: Optional[str] = typer.Option(None, help="Output float type: float32, float16 or bfloat16."),
    shard_size: float = typer.Option(5000.0, help="Largest shard of a folder output, in MB."),
    threads: int = typer.Option(1, help="Torch threads (the merge is memory-bound; 1 is fastest on shared cores)."),
    json_out: bool = _JSON,
) -> None:
    """Merge models with a mergekit-style config, streaming tensor by tensor.

    Methods: linear, slerp, task_arithmetic, ties, dare_ties, dare_linear, breadcrumbs,
    breadcrumbs_ties, model_stock, passthrough. Inputs: safetensors, HF folders, PyTorch, GGUF.
    """
    from genome.errors import BadInput
    from genome.recombine import config as configs

    cfg, paths = configs.load(config)  # config and plan are checked before torch is even imported
    if shard_size <= 0:
        raise BadInput(f"--shard-size must be positive, got {shard_size}")
    if threads < 1:
        raise BadInput(f"--threads must be at least 1, got {threads}")
    from genome.formats.atomic import check_new_output
    from genome.recombine.plan import check

    check_new_output(out, inputs=tuple(paths.values()))
    check(cfg, paths, configs.out_dtype(cfg, dtype))
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from genome.recombine.runner import merge as run

    show = not json_out
    with Progress(TextColumn("merging"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.description}"), console=_console(), disable=not show, transient=True) as bar:
        task = bar.add_task("", total=None)

        def tick(done: int, total: int, name: str) -> None:
            bar.update(task, completed=done, total=total, description=name)

        report = run(config, out, dtype=dtype, shard_bytes=int(shard_size * 1e6), progress=tick, threads=threads)
    if json_out:
        typer.echo(json.dumps(report.to_dict()))
        return
    _console().print(f"{report.method}: merged {report.merged} of {report.tensors} tensors "
                     f"({_mb(report.bytes)} MB, {report.layers} layers) into {report.out} ({report.kind}) "
                     f"in {report.seconds:.1f} s")


# ---- gene pool: `cogitans genome pool ...` and `cogitans genome dedup` (genome/pool/cli.py) -----
from genome.pool.cli import dedup as _dedup, pool_app as _pool_app  # noqa: E402 - typer only, stays light

app.add_typer(_pool_app, name="pool")
app.command("dedup")(_dedup)


@app.command()
def plan(
    a: Path = typer.Argument(..., help="Model A (the recipient, or the model to compress)."),
    b: Path = typer.Argument(..., help="Model B (the donor, the second parent, or A's base for compress)."),
    goal: str = typer.Option(..., help="merge_skills, capability_add, compress or repair."),
    base: Optional[Path] = typer.Option(None, help="The base both were fine-tuned from (task-vector methods)."),
    out: Optional[Path] = typer.Option(None, help="Plan folder to write (plan.json + merge.yaml or lora.yaml)."),
    run: bool = typer.Option(False, "--run", help="Execute the plan into OUT and log the outcome."),
    log: Optional[Path] = typer.Option(None, help="Outcome log (SQLite); default ~/.cogitans/breeding.sqlite."),
    json_out: bool = _JSON,
) -> None:
    """Choose a breeding strategy for two models, estimate it and write an executable plan.

    Lineage, overlap and modularity are measured on the weights; past outcomes in the log
    adjust the choice.
    """
    from genome.errors import BadInput

    if run and out is None:
        raise BadInput("--run needs --out: the plan folder receives the result")
    from genome.recombine.orchestrator import make_plan, run_plan
    from genome.recombine.outcomes import default_log

    if out is not None and out.exists() and any(out.iterdir()):
        raise BadInput(f"plan folder {out} already exists and is not empty")
    result = make_plan(a, b, goal, base=base, out_dir=out, log=log or default_log())
    if run:
        result["outcome"] = run_plan(out, log=log or default_log())
    if json_out:
        typer.echo(json.dumps(result, default=str))
        return
    console = _console()
    est = result["estimates"]
    console.print(f"goal {goal}: {result['strategy']} ({'proceed' if result['proceed'] else 'FLAGGED'})")
    console.print(result["rationale"])
    console.print(f"estimates: compute {est['compute_s']:.1f} s, inference x{est['inference_cost']:.2f}, "
                  f"benefit {est['benefit']:.2f}, forgetting risk {est['forgetting_risk']:.2f}")
    console.print("scores: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(result["scores"].items(),
                                                                            key=lambda kv: -kv[1])))
    if out is not None:
        console.print(f"plan: {out / 'plan.json'}, config: {out / result['config']}; run: {result['command']}")
    if run:
        o = result["outcome"]
        console.print(f"ran {o['strategy']} in {o['seconds']:.1f} s -> {o['out']}: benefit {o['benefit']:.2f}, "
                      f"forgetting {o['forgetting']:.2f} (logged)")
