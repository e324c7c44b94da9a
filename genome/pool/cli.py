"""`cogitans genome pool init|ingest|stats|verify|compact|export` and `cogitans genome dedup`.

Heavy imports (numpy, the pool) happen inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

pool_app = typer.Typer(help="A persistent gene pool: ingest models and source trees, verify, compact, export.",
                       no_args_is_help=True)

_JSON = typer.Option(False, "--json", help="Print one JSON object as the last line.")
_POOL = typer.Argument(..., help="Gene pool folder.")
_INPUTS = typer.Argument(..., help="Models (GGUF, safetensors, PyTorch, HF or organ folders) or Python source folders.")


def _console() -> Any:
    import sys

    from rich.console import Console

    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def _options(max_level: int, lossy: bool, deltas: bool, threshold: float, shadow_tol: float) -> Any:
    from genome.pool.options import DedupOptions

    return DedupOptions(max_level=max_level, lossy=lossy, deltas=deltas, threshold=threshold, shadow_tol=shadow_tol)


_MAX_LEVEL = typer.Option(4, "--max-level", help="Highest dedup level: 1 exact, 2 canonical, 3 behaviour, 4 LSH.")
_LOSSY = typer.Option(False, "--lossy", help="L4 matches replace blocks (error reported) instead of lossless deltas.")
_DELTAS = typer.Option(True, "--deltas/--no-deltas", help="Store new genes as deltas against their closest gene.")
_THRESHOLD = typer.Option(0.8, help="L4 Jaccard and cosine threshold (norm 0.7 and attention 0.9 stay domain-aware).")
_SHADOW = typer.Option(0.05, "--shadow-tol", help="L4: largest relative change of the layer's probe outputs.")


def input_kind(path: Path) -> str:
    """``weights`` for a model file or folder, ``code`` for Python sources; `BadInput` if missing."""
    from genome.errors import BadInput

    if not path.exists():
        raise BadInput(f"no such file or folder: {path}")
    if path.is_file():
        return "code" if path.suffix == ".py" else "weights"
    markers = ("manifest.json", "*.safetensors", "*.gguf", "*.bin", "*.pt", "*.pth")
    return "weights" if any(next(path.glob(m), None) for m in markers) else "code"


def _ingest(pool: Any, path: Path, name: str | None, opts: Any) -> Any:
    if input_kind(path) == "code":
        return pool.ingest_code(path, name=name, options=opts)
    return pool.ingest(path, name=name, options=opts)


def _mb(n: float) -> str:
    return f"{n / 1e6:.2f}"


def level_table(reports: list[Any], title: str) -> Any:
    """The per-level table: genes in, unique after L1..L4, deltas, bytes before/after, ratio."""
    from rich.table import Table

    from genome.pool.options import IngestReport

    table = Table(title=title)
    cols = ("input", "kind", "genes in", "unique L1", "unique L2", "unique L3", "unique L4", "delta genes",
            "delta MB", "MB before", "MB after", "ratio")
    for c in cols:
        table.add_column(c, justify="left" if c in ("input", "kind") else "right")
    total = IngestReport(name="total", kind="-")
    for r in [*reports, None]:
        if r is None:
            if len(reports) < 2:
                break
            r = total
        else:
            total.add(r)
        table.add_row(r.name, r.kind, str(r.genes_in), *(str(r.unique(k)) for k in (1, 2, 3, 4)),
                      str(r.delta_genes + r.level_deltas), _mb(r.delta_bytes), _mb(r.bytes_before),
                      _mb(r.bytes_after), f"{r.ratio:.2f}" if r.bytes_after else "all shared")
    return table


@pool_app.command("init")
def init(pool: Path = _POOL, block: int = typer.Option(4096, help="Elements per weight gene block."),
         json_out: bool = _JSON) -> None:
    """Create an empty gene pool with its Ed25519 signing key."""
    from genome.pool import GenePool

    with GenePool.init(pool, block=block) as p:
        from genome.pool.attest import public_key

        summary = {"pool": str(pool), "block": block, "public_key": public_key(p.path)}
    if json_out:
        typer.echo(json.dumps(summary))
    else:
        _console().print(f"created gene pool {pool} (block {block}, public key {summary['public_key'][:16]}...)")


@pool_app.command("ingest")
def ingest(pool: Path = _POOL, inputs: list[Path] = _INPUTS,
           name: str | None = typer.Option(None, help="Name in the pool (one input only; default: its file name)."),
           max_level: int = _MAX_LEVEL, lossy: bool = _LOSSY, deltas: bool = _DELTAS,
           threshold: float = _THRESHOLD, shadow_tol: float = _SHADOW, json_out: bool = _JSON) -> None:
    """Add models or source trees to the pool with four-level dedup."""
    from genome.errors import BadInput
    from genome.pool import GenePool

    if name is not None and len(inputs) > 1:
        raise BadInput("--name takes one input; give inputs one at a time to name them")
    opts = _options(max_level, lossy, deltas, threshold, shadow_tol)
    for path in inputs:
        input_kind(path)
    with GenePool(pool) as p:
        reports = [_ingest(p, path, name, opts) for path in inputs]
    if json_out:
        typer.echo(json.dumps({"pool": str(pool), "inputs": [r.as_dict() for r in reports]}))
        return
    _console().print(level_table(reports, f"ingested into {pool}"))


@pool_app.command("stats")
def stats(pool: Path = _POOL, json_out: bool = _JSON) -> None:
    """Genes, unique genes per level, bytes, statuses, roles, Merkle root."""
    from genome.pool import GenePool
    from genome.pool.maintenance import stats as run

    with GenePool(pool) as p:
        s = run(p)
    if json_out:
        typer.echo(json.dumps(s))
        return
    c = _console()
    c.print(f"gene pool {s['path']}: {len(s['models'])} model(s), {s['genes']} genes "
            f"({', '.join(f'{k} {v}' for k, v in s['genes_by_kind'].items())}), {s['delta_coded']} delta-coded")
    c.print(f"genes in {s['genes_in']}, unique after L1 {s['unique_l1']}, L2 {s['unique_l2']}, "
            f"L3 {s['unique_l3']}, L4 {s['unique_l4']}")
    c.print(f"bytes: {_mb(s['bytes_logical'])} MB of models held in {_mb(s['bytes_stored'])} MB "
            f"(ratio {s['ratio']:.2f}); {s['blobs']} blobs in {s['packs']} pack(s)")
    c.print("status: " + ", ".join(f"{k} {v}" for k, v in s["genes_by_status"].items()))
    c.print("role: " + ", ".join(f"{k} {v}" for k, v in sorted(s["genes_by_role"].items())))
    c.print(f"merkle root {s['merkle_root']}  ({s['batches']} signed batches)")


@pool_app.command("verify")
def verify(pool: Path = _POOL, json_out: bool = _JSON) -> None:
    """Check every blob hash, reference, count and signature; exit code 1 if anything is wrong."""
    from genome.pool import GenePool
    from genome.pool.maintenance import verify as run

    with GenePool(pool) as p:
        result = run(p)
    if json_out:
        typer.echo(json.dumps(result))
    else:
        c = _console()
        checked = result["checked"]
        c.print(f"{pool}: {'clean' if result['clean'] else 'PROBLEMS FOUND'} ({checked['blobs']} blobs, "
                f"{checked['genes']} genes, {checked['batches']} signed batches checked)")
        for e in result["errors"]:
            c.print(f"  error: {e}")
        for n in result["notes"]:
            c.print(f"  note: {n}")
    if not result["clean"]:
        raise typer.Exit(1)


@pool_app.command("compact")
def compact(pool: Path = _POOL, json_out: bool = _JSON) -> None:
    """Remove unreferenced genes and blobs and rewrite the pack files."""
    from genome.pool import GenePool
    from genome.pool.maintenance import compact as run

    with GenePool(pool) as p:
        result = run(p)
    if json_out:
        typer.echo(json.dumps(result))
    else:
        _console().print(f"compacted {pool}: {result['genes_removed']} genes and {result['blobs_removed']} blobs "
                         f"removed, {_mb(result['bytes_before'])} MB -> {_mb(result['bytes_after'])} MB")


@pool_app.command("remove")
def remove(pool: Path = _POOL, model: str = typer.Argument(..., help="Model name in the pool."),
           json_out: bool = _JSON) -> None:
    """Drop a model's references (run compact afterwards to free the genes only it used)."""
    from genome.pool import GenePool

    with GenePool(pool) as p:
        released = p.remove(model)
    if json_out:
        typer.echo(json.dumps({"model": model, "references_released": released}))
    else:
        _console().print(f"removed {model} from {pool} ({released} gene references released)")


@pool_app.command("export")
def export(pool: Path = _POOL, model: str = typer.Argument(..., help="Model name in the pool."),
           out: Path = typer.Argument(..., help="OUT.safetensors, OUT.gguf, or a folder (organ folder)."),
           json_out: bool = _JSON) -> None:
    """Rebuild a model from its genes (bit-identical unless it was ingested with --lossy)."""
    from genome.pool import GenePool

    with GenePool(pool) as p:
        result = p.export(model, out)
    if json_out:
        typer.echo(json.dumps(result))
        return
    c = _console()
    c.print(f"exported {model} ({result['tensors']} tensors, {_mb(result['bytes'])} MB) to {out} ({result['kind']})")
    for t in result["lossy"]:
        c.print(f"  lossy L4: {t['name']} relative error {t['rel_error']:.2e}")


def dedup(inputs: list[Path] = _INPUTS,
          pool: Path | None = typer.Option(None, help="Pool to ingest into (created if absent); "
                                                         "default: a temporary pool, deleted afterwards."),
          max_level: int = _MAX_LEVEL, lossy: bool = _LOSSY, deltas: bool = _DELTAS, threshold: float = _THRESHOLD,
          shadow_tol: float = _SHADOW, block: int = typer.Option(4096, help="Block size of a new pool."),
          json_out: bool = _JSON) -> None:
    """Deduplicate models or source trees against each other: a per-level table.

    Columns: genes in, unique after L1, L2, L3, L4, lossless-delta genes and bytes, bytes before
    and after, ratio. Inputs go in the order given; each is compared with everything before it.
    """
    import tempfile

    from genome.pool import GenePool
    from genome.pool.dedup import default_name
    from genome.pool.store import is_pool

    opts = _options(max_level, lossy, deltas, threshold, shadow_tol)
    for path in inputs:
        input_kind(path)
    with tempfile.TemporaryDirectory(prefix="cogitans-pool-") as tmp:
        target = pool if pool is not None else Path(tmp) / "pool"
        p = GenePool(target) if is_pool(target) else GenePool.init(target, block=block)
        with p:
            taken = {r[0] for r in p.db.execute("SELECT name FROM models")}
            reports = []
            for path in inputs:
                name, k = default_name(path), 2
                while name in taken:
                    name, k = f"{default_name(path)}-{k}", k + 1
                taken.add(name)
                reports.append(_ingest(p, path, name, opts))
    if json_out:
        from genome.pool.options import IngestReport

        total = IngestReport(name="total", kind="-")
        for r in reports:
            total.add(r)
        typer.echo(json.dumps({"pool": str(pool) if pool else None, "inputs": [r.as_dict() for r in reports],
                               "total": total.as_dict()}))
        return
    _console().print(level_table(reports, f"dedup by level (max level {max_level}, "
                                          f"{'lossy' if lossy else 'lossless'} L4)"))
