"""Upgrade a schema-1 pool index to schema 2, in one transaction under the writer lock.

Schema 1 (`V1_SCHEMA`) keyed genes and blobs by 64-character hex, kept a `blobs` row for every
payload, a gene's metadata as JSON per gene, one `blocks` row per model block and one `leaves`
row per Merkle leaf. Schema 2 (`genome.pool.store.SCHEMA`) keeps 32-byte keys, a gene's payload
location in its own row, metadata once per tensor, a tensor's genes and a batch's leaves as one
packed BLOB each. No pack file changes. Genes signed under schema 1 keep their signatures: their
batches get leaf format 1, under which `Gene.signed_fields` gives the schema-1 layout.

A pool is upgraded the first time this version opens it; a failure leaves it at schema 1.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from genome.errors import BadInput
from genome.pool import store
from genome.pool.gene import metadata_json, split_block
from genome.pool.store import unhex as _raw

V1_SCHEMA = """
CREATE TABLE config (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE packs (name TEXT PRIMARY KEY, size INTEGER NOT NULL, created REAL NOT NULL);
CREATE TABLE blobs (
    hash TEXT PRIMARY KEY, pack TEXT NOT NULL, offset INTEGER NOT NULL, length INTEGER NOT NULL,
    size INTEGER NOT NULL, codec INTEGER NOT NULL);
CREATE INDEX blobs_pack ON blobs (pack);
CREATE TABLE genes (
    hash TEXT PRIMARY KEY, kind TEXT NOT NULL, blob TEXT NOT NULL, base TEXT, dtype TEXT NOT NULL,
    shape TEXT NOT NULL, nbytes INTEGER NOT NULL, l2 TEXT, l3 TEXT, sig BLOB, meta TEXT NOT NULL,
    version INTEGER NOT NULL, parent TEXT, status TEXT NOT NULL, refs INTEGER NOT NULL,
    created REAL NOT NULL, batch INTEGER NOT NULL, leaf INTEGER NOT NULL);
CREATE INDEX genes_l2 ON genes (l2);
CREATE INDEX genes_l3 ON genes (l3);
CREATE INDEX genes_base ON genes (base);
CREATE INDEX genes_batch ON genes (batch, leaf);
CREATE TABLE models (
    id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, kind TEXT NOT NULL, source TEXT NOT NULL,
    format TEXT NOT NULL, arch TEXT, metadata TEXT NOT NULL, tensors INTEGER NOT NULL,
    nbytes INTEGER NOT NULL, stored INTEGER NOT NULL, stats TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE tensors (
    model INTEGER NOT NULL, idx INTEGER NOT NULL, name TEXT NOT NULL, canonical TEXT NOT NULL,
    dtype TEXT NOT NULL, shape TEXT NOT NULL, nbytes INTEGER NOT NULL, perm TEXT, perm_axis INTEGER,
    err_sq REAL NOT NULL DEFAULT 0, norm_sq REAL NOT NULL DEFAULT 0, PRIMARY KEY (model, idx));
CREATE INDEX tensors_canonical ON tensors (canonical, shape);
CREATE TABLE blocks (
    model INTEGER NOT NULL, tensor INTEGER NOT NULL, idx INTEGER NOT NULL, gene TEXT NOT NULL,
    level INTEGER NOT NULL, PRIMARY KEY (model, tensor, idx));
CREATE INDEX blocks_gene ON blocks (gene);
CREATE TABLE rowsigs (sig TEXT NOT NULL, axis INTEGER NOT NULL, model INTEGER NOT NULL,
    tensor INTEGER NOT NULL);
CREATE INDEX rowsigs_sig ON rowsigs (sig);
CREATE TABLE leaves (batch INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL,
    PRIMARY KEY (batch, idx));
CREATE TABLE batches (
    id INTEGER PRIMARY KEY, root TEXT NOT NULL, signature TEXT NOT NULL, public_key TEXT NOT NULL,
    count INTEGER NOT NULL, created REAL NOT NULL);
"""

_KEPT = ("config", "models", "rowsigs")  # tables (and their indexes) schema 2 keeps as they are
_REBUILT = ("packs", "blobs", "genes", "tensors", "batches")  # tables whose layout changed
_DROPPED = ("blocks", "leaves")
_OLD_INDEXES = ("blobs_pack", "genes_l2", "genes_l3", "genes_base", "genes_batch", "tensors_canonical",
                "blocks_gene")


def statements(schema: str) -> list[str]:
    """The statements of a schema script (run one by one: `executescript` would commit)."""
    return [s.strip() for s in schema.split(";") if s.strip()]


def upgrade(path: Path, db: Any, version: int) -> None:
    """Bring an index at schema `version` up to `store.SCHEMA_VERSION` (only 1 is known)."""
    if version != 1:
        raise store.PoolCorrupt(f"{Path(path) / store.INDEX}: index schema {version} cannot be upgraded")
    try:
        _upgrade_v1(path, db)
    except (OSError, sqlite3.OperationalError) as err:
        raise BadInput(f"gene pool {path} has index schema 1 and this version upgrades it to "
                       f"{store.SCHEMA_VERSION} when it opens it, which failed: {err}") from None


def _upgrade_v1(path: Path, db: Any) -> None:
    with store.writer_lock(path):
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute("PRAGMA user_version").fetchone()[0] == 1:  # not upgraded by another process meanwhile
                _v1_to_v2(db)
                db.execute(f"PRAGMA user_version = {store.SCHEMA_VERSION}")
            db.execute("COMMIT")
        except ValueError as err:  # a hex key that is not hex: the index was damaged
            db.execute("ROLLBACK")
            raise store.PoolCorrupt(f"{Path(path) / store.INDEX}: cannot upgrade the index: {err}") from None
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
    store.write_tag(path)


def _v1_to_v2(db: Any) -> None:
    for name in _OLD_INDEXES:
        db.execute(f"DROP INDEX IF EXISTS {name}")
    for table in _REBUILT + _DROPPED:
        db.execute(f"ALTER TABLE {table} RENAME TO v1_{table}")
    for sql in statements(store.SCHEMA):
        words = sql.split()
        table = words[2] if words[1] == "TABLE" else words[4]  # CREATE TABLE t / CREATE INDEX i ON t
        if table not in _KEPT:
            db.execute(sql)
    db.execute("INSERT INTO packs (name, size, created) SELECT name, size, created FROM v1_packs ORDER BY rowid")
    pack_ids = dict(db.execute("SELECT name, id FROM packs"))
    locations = {h: (pack_ids.get(p, 0), o, ln, sz, c)  # pack 0: missing (verify reports it)
                 for h, p, o, ln, sz, c in db.execute("SELECT hash, pack, offset, length, size, codec FROM v1_blobs")}
    metas: dict[tuple[str, str, str, str], int] = {}
    genes = []
    for (h, kind, blob, base, dtype, shape, nbytes, l2, l3, sig, meta, version, parent, status, refs, batch,
         leaf) in db.execute("SELECT hash, kind, blob, base, dtype, shape, nbytes, l2, l3, sig, meta, version, parent, "
                             "status, refs, batch, leaf FROM v1_genes ORDER BY hash").fetchall():
        block, rest = split_block(json.loads(meta))
        key = (kind, dtype, shape, metadata_json(rest))
        if key not in metas:
            metas[key] = db.execute("INSERT INTO metas (kind, dtype, shape, json) VALUES (?, ?, ?, ?)", key).lastrowid
        genes.append((bytes.fromhex(h), metas[key], block, bytes.fromhex(blob), _raw(base), nbytes, l2, l3, sig,
                      version, _raw(parent), status, refs, batch, leaf, *locations.get(blob, (0, 0, 0, 0, 0))))
    db.executemany(f"INSERT INTO genes VALUES ({', '.join('?' * 20)})", genes)
    perms = {r[0] for r in db.execute("SELECT perm FROM v1_tensors WHERE perm IS NOT NULL")}
    db.executemany("INSERT INTO blobs VALUES (?, ?, ?, ?, ?, ?)",
                   [(bytes.fromhex(h), *locations[h]) for h in sorted(perms) if h in locations])
    blocks: dict[tuple[int, int], list[tuple[str, int]]] = {}
    for model, tensor, gene, level in db.execute("SELECT model, tensor, gene, level FROM v1_blocks "
                                                 "ORDER BY model, tensor, idx"):
        blocks.setdefault((model, tensor), []).append((gene, level))
    tensors = []
    for row in db.execute("SELECT model, idx, name, canonical, dtype, shape, nbytes, perm, perm_axis, err_sq, norm_sq "
                          "FROM v1_tensors").fetchall():
        listed = blocks.get((row[0], row[1]), [])
        tensors.append((*row[:7], _raw(row[7]), *row[8:], b"".join(bytes.fromhex(g) for g, _ in listed),
                        bytes(level for _, level in listed)))
    db.executemany(f"INSERT INTO tensors VALUES ({', '.join('?' * 13)})", tensors)
    leaves: dict[int, list[bytes]] = {}
    for batch, leaf in db.execute("SELECT batch, hash FROM v1_leaves ORDER BY batch, idx"):
        leaves.setdefault(batch, []).append(leaf)
    db.executemany("INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?, ?, 1)",
                   [(*row, b"".join(leaves.get(row[0], []))) for row in db.execute(
                       "SELECT id, root, signature, public_key, count, created FROM v1_batches").fetchall()])
    for table in _REBUILT + _DROPPED:
        db.execute(f"DROP TABLE v1_{table}")
