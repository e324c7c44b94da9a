"""Index rows of the exact-level bulk path: thousands of genes written by one SQL statement.

`executemany` binds every row from Python: 2-4 us a row here, with the GIL held. Instead, the
values that differ from gene to gene are laid out as one fixed-width record per gene (32-byte
id, 32-byte blob digest, integers as 16 ASCII characters) in a single BLOB parameter, and one
``INSERT ... SELECT`` over ``json_each`` reads them back with ``substr``: the whole insert runs
inside SQLite, without the GIL, so it overlaps the Merkle tree being built on another thread.
What the genes of a tensor share (kind, dtype, shape, metadata) is one `metas` row. Reference
counts of genes already in the pool are added the same way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np

from genome.pool.gene import SIGNED_PREFIX, common_digest


@dataclass
class BulkGenes:
    """New whole genes of one tensor (each stored as its exact bytes), as columns.

    Attributes:
        meta: canonical JSON of the metadata the tensor's genes share (all but the block index).
        ids, blobs, blocks: per new gene, its 32-byte id, content digest and block index.
        shape, last_shape, nbytes, last_nbytes: a block's shape and bytes; those of block `last`
            (the tensor's last block, which may be shorter).
    """

    kind: str
    dtype: str
    meta: str
    ids: list[bytes]
    blobs: list[bytes]
    blocks: list[int]
    shape: tuple[int, ...]
    last_shape: tuple[int, ...]
    nbytes: int
    last_nbytes: int
    last: int


_WIDTH = 16  # an integer: its sign ("-" or "0") and 15 digits, read back by CAST(... AS INTEGER)


def digits(values: np.ndarray) -> np.ndarray:
    """Integers (n, k), |v| < 10**15, as `_WIDTH`-character ASCII fields: uint8 (n, k * _WIDTH)."""
    v = np.asarray(values, np.int64).reshape(len(values), -1)
    rest = np.abs(v)
    if rest.size and rest.max() >= 10 ** (_WIDTH - 1):
        raise ValueError(f"{rest.max()} does not fit {_WIDTH - 1} digits")
    out = np.empty((*v.shape, _WIDTH), np.uint8)
    out[..., 0] = np.where(v < 0, ord("-"), ord("0"))
    for k in range(_WIDTH - 1, 0, -1):  # one scalar divisor a pass: numpy divides fast by a scalar
        rest, out[..., k] = np.divmod(rest, 10)
    out[..., 1:] += ord("0")
    return out.reshape(len(v), -1)


def _int(record: int, at: int) -> str:
    """SQL reading the integer at byte `at` of the current (`key`-th) record of width `record`."""
    return f"CAST(substr(:rec, {record} * key + {at + 1}, {_WIDTH}) AS INTEGER)"


def _counter(n: int) -> str:
    """A JSON array of n zeros: `json_each` over it yields keys 0..n-1."""
    return "[" + ",".join(["0"] * n) + "]"


_INTS = ("meta", "refs", "nbytes", "offset", "length", "codec")
_RECORD = 64 + _WIDTH * len(_INTS)
_COL = {f: _int(_RECORD, 64 + _WIDTH * i) for i, f in enumerate(_INTS)}
_INSERT = f"""
INSERT INTO genes (hash, meta, block, blob, base, nbytes, l2, l3, sig, version, parent, status, refs, batch, leaf,
                   pack, offset, length, size, codec)
SELECT substr(:rec, {_RECORD} * key + 1, 32), {_COL["meta"]}, value, substr(:rec, {_RECORD} * key + 33, 32), NULL,
       {_COL["nbytes"]}, NULL, NULL, NULL, 1, NULL, 'ACTIVE', {_COL["refs"]}, :batch, key, :pack, {_COL["offset"]},
       {_COL["length"]}, {_COL["nbytes"]}, {_COL["codec"]}
FROM json_each(:blocks)
"""  # json_each over the block indexes: key is the row (and leaf) number, value the block index


@dataclass
class Rows:
    """The new bulk genes of a batch in id order (inserting keys in order touches each B-tree page
    once). `signed_fields` gives what their Merkle leaves hash before the pack is complete;
    `records` needs each payload's place in the pack.
    """

    groups: Sequence[BulkGenes]
    metas: np.ndarray  # (n,) metas id of each gene
    ids: np.ndarray  # (n, 32) uint8
    blobs: list[bytes]  # content digests, in group order
    blocks: np.ndarray  # (n,) int64
    nbytes: np.ndarray  # (n,) int64
    common: np.ndarray  # (n, 32) uint8: `common_digest` of each gene's other signed fields
    order: np.ndarray  # group order -> id order

    @property
    def count(self) -> int:
        return len(self.order)


def rows(groups: Sequence[BulkGenes], metas: Sequence[tuple[int, int]]) -> Rows:
    """The bulk genes of `groups`; `metas` are the `metas` ids of each group: (its blocks, its
    last block)."""
    sizes = [len(g.ids) for g in groups]
    n = sum(sizes)
    ids = _packed([i for g in groups for i in g.ids]) if n else np.zeros((0, 32), np.uint8)
    blocks = np.fromiter(chain.from_iterable(g.blocks for g in groups), np.int64, n)
    last = blocks == np.repeat([g.last for g in groups], sizes).astype(np.int64)  # the last block: shorter?
    pick = 2 * np.repeat(np.arange(len(groups)), sizes) + last  # per gene: its group's (blocks, last block)
    commons = [common_digest(g.kind, g.dtype, ",".join(map(str, s)), "", g.meta)
               for g in groups for s in (g.shape, g.last_shape)]
    return Rows(groups, np.asarray(metas, np.int64).reshape(-1)[pick], ids, [b for g in groups for b in g.blobs],
                blocks, np.array([x for g in groups for x in (g.nbytes, g.last_nbytes)], np.int64)[pick],
                np.frombuffer(b"".join(commons), np.uint8).reshape(-1, 32)[pick] if n else np.zeros((0, 32), np.uint8),
                np.lexsort(ids.view(">u8").T[::-1]) if n else np.zeros(0, np.int64))


def signed_fields(r: Rows) -> np.ndarray:
    """uint8 (n, SIGNED_SIZE): each gene's `genome.pool.gene.signed_fields`, in id order."""
    n = r.count
    prefix = np.broadcast_to(np.frombuffer(SIGNED_PREFIX, np.uint8), (n, len(SIGNED_PREFIX)))
    out = np.concatenate([prefix, r.ids, _packed(r.blobs) if n else r.ids,
                          r.blocks.astype("<i8").view(np.uint8).reshape(n, 8), r.common], axis=1)
    return out[r.order]


def insert(db: Any, r: Rows, refs: Counter[bytes], locations: dict[bytes, tuple[int, int, int, int]], batch: int,
           pack: int) -> None:
    """Insert the rows as batch `batch` (leaf i = the i-th row in id order), their payloads at
    `locations` (digest -> offset, length, size, codec) in pack `pack`, taking their references
    out of `refs`: one statement, which SQLite runs without the GIL."""
    n = r.count
    if n == 0:
        return
    ints = np.empty((n, len(_INTS)), np.int64)
    ints[:, 0] = r.metas
    ints[:, 1] = [refs.pop(i, 0) for g in r.groups for i in g.ids]
    ints[:, 2] = r.nbytes
    ints[:, 3:] = np.fromiter(chain.from_iterable(map(locations.__getitem__, r.blobs)), np.int64,
                              4 * n).reshape(n, 4)[:, [0, 1, 3]]
    rec = np.concatenate([r.ids, _packed(r.blobs), digits(ints)], axis=1)[r.order]
    db.execute(_INSERT, {"rec": rec.tobytes(), "blocks": "[" + ",".join(map(str, r.blocks[r.order].tolist())) + "]",
                         "batch": batch, "pack": pack})


def add_refs(db: Any, refs: Counter[bytes]) -> None:
    """Add references to genes already in the pool (32-byte id -> count): one statement, in key
    order (twice as fast as random order: neighbouring rows share B-tree pages)."""
    todo = sorted((h, n) for h, n in refs.items() if n)
    if not todo:
        return
    width = 32 + _WIDTH
    rec = np.empty((len(todo), width), np.uint8)
    rec[:, :32] = _packed([h for h, _ in todo])
    rec[:, 32:] = digits(np.array([n for _, n in todo], np.int64)[:, None])
    db.execute(f"UPDATE genes SET refs = genes.refs + u.n FROM (SELECT substr(:rec, {width} * key + 1, 32) AS h, "
               f"{_int(width, 32)} AS n FROM json_each(:n)) AS u WHERE genes.hash = u.h",
               {"rec": rec.tobytes(), "n": _counter(len(todo))})


def _packed(digests: list[bytes]) -> np.ndarray:
    """32-byte digests as a (n, 32) uint8 array."""
    return np.frombuffer(b"".join(digests), np.uint8).reshape(len(digests), 32)


def shape_json(shape: tuple[int, ...]) -> str:
    """A block shape as the index stores it: ``[10,384]``."""
    return "[" + ",".join(map(str, shape)) + "]"
