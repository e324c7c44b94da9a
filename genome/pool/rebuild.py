"""Rebuilding a stored model from its genes: a tensor's values, its exact bytes, the whole model.

A tensor is its genes' blocks, concatenated in block order and reshaped to its shape; a tensor
stored as a permutation of another's genes (see `genome.pool.dedup`) then has its rows or
columns taken in the stored order. Its exact bytes are its genes' stored bytes when they are all
whole blocks of its own dtype, otherwise its values re-encoded in its dtype. `export` writes
every tensor of a model this way into a model file or organ folder. `GenePool.export` is the
public entry point.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genome.errors import BadInput
from genome.pool import store
from genome.pool.levels import encode

if TYPE_CHECKING:
    from genome.pool.pool import GenePool


def _tensor_row(pool: GenePool, model: int, tensor: int) -> tuple:
    """(dtype, shape json, perm blob id or None, perm axis, nbytes, packed gene ids) of a tensor."""
    row = pool.db.execute("SELECT dtype, shape, perm, perm_axis, nbytes, genes FROM tensors WHERE model = ? AND idx = ?",
                          (model, tensor)).fetchone()
    if row is None:
        raise store.PoolCorrupt(f"model {model} has no tensor {tensor}")
    return row


def tensor_values(pool: GenePool, model: int, tensor: int) -> np.ndarray:
    """A numeric tensor's canonical values rebuilt from its genes, in its own shape."""
    return _values(pool, _tensor_row(pool, model, tensor))


def _values(pool: GenePool, row: tuple) -> np.ndarray:
    _, shape, perm, axis, _, packed = row
    parts = [pool.values(g.hex()).reshape(-1) for g in store.split32(packed)]
    flat = np.concatenate(parts) if len(parts) > 1 else parts[0].reshape(-1)
    vals = flat.reshape(json.loads(shape))
    if perm is not None:
        order = np.frombuffer(pool.reader.read(perm), np.int64)
        vals = np.take(vals, order, axis=axis)
    return vals


def tensor_bytes(pool: GenePool, model: int, tensor: int) -> np.ndarray:
    """A tensor's exact stored bytes rebuilt from its genes: uint8 (nbytes,)."""
    row = _tensor_row(pool, model, tensor)
    dtype, _, perm, _, nbytes, packed = row
    genes = [pool.gene(g.hex()) for g in store.split32(packed)]
    if perm is None and all(g.dtype == dtype and g.base is None for g in genes):
        out = np.frombuffer(b"".join(pool.exact_bytes(g.hash) for g in genes), np.uint8)
    else:
        out = encode(_values(pool, row), dtype)
    if out.nbytes != nbytes:
        raise store.PoolCorrupt(f"tensor {tensor} of model {model}: rebuilt {out.nbytes} bytes, expected {nbytes}")
    return out


def export(pool: GenePool, name: str, out: str | Path) -> dict[str, Any]:
    """Rebuild model `name` into OUT.safetensors, OUT.gguf or an organ folder.

    Returns:
        {"out", "kind", "tensors", "bytes", "lossy": [{"name", "rel_error"} per tensor whose
        blocks were collapsed at L4 without a delta]}.
    """
    from genome.formats.atomic import check_new_output
    from genome.formats.base import MetaEntry, TensorInfo
    from genome.formats.detect import output_kind, write_model

    mid, kind, _source, _fmt, arch, meta = pool.model_row(name)
    if kind != "weights":
        raise BadInput(f"model {name!r} is a {kind} source tree; only weight models can be exported")
    output_kind(Path(out))
    check_new_output(Path(out))
    tensors = pool.db.execute("SELECT idx, name, canonical, dtype, shape, nbytes, err_sq, norm_sq FROM tensors "
                              "WHERE model = ? ORDER BY idx", (mid,)).fetchall()
    items = [(TensorInfo(n, tuple(json.loads(s)), d, nb, c), lambda i=i: tensor_bytes(pool, mid, i))
             for i, n, c, d, s, nb, _, _ in tensors]
    metadata = {k: MetaEntry(*v) for k, v in json.loads(meta).items()}
    written = write_model(Path(out), items, metadata, arch, {"pool": str(pool.path), "model": name})
    lossy = [{"name": n, "rel_error": float(np.sqrt(e / nsq)) if nsq > 0 else 0.0}
             for _, n, _, _, _, _, e, nsq in tensors if e > 0]
    return {"out": str(out), "kind": written, "tensors": len(tensors),
            "bytes": sum(t[5] for t in tensors), "lossy": lossy}
