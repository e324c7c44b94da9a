"""The gene pool on disk: content-addressed blobs in pack files, an SQLite index, a writer lock.

Layout of a pool folder::

    pool.json            format tag and schema version
    index.sqlite         genes, models (tensors with their ordered gene lists), attestations
    objects/pack-*.pack  blobs (zstd frames or raw bytes) at offsets the index records
    keys/ed25519.key     the pool's signing key (mode 0600); keys/ed25519.pub
    lock                 held (flock) by the one writer

A gene's row holds where its payload is stored (pack, offset, length); the few payloads no gene
owns (permutations of a tensor) are listed in `blobs`. What the genes of a tensor share (kind,
dtype, shape, metadata) is one `metas` row. Hashes are 32-byte BLOBs; a tensor's genes are one
packed BLOB of their ids in block order, and a batch's Merkle leaves one packed BLOB, so an
ingest writes one narrow index row per new gene and a few per tensor. A payload's BLAKE3
digest is checked on every read, so a changed or truncated blob is caught on read.

Packs are written under a temporary name and renamed when complete; the index rows that point
into a pack are committed in one SQLite transaction after the rename. (A bulk ingest appends its
blobs on a background thread while the main thread hashes and fills the transaction; the rename
still comes before the COMMIT.) A writer killed at any point therefore leaves either nothing new
in the index, or a complete ingest; the files it may leave behind (a temporary pack, or a
complete pack nothing points to) are reported by verify and removed by the next writer.

Index schema 2 replaced schema 1 (hex keys, one row per block and per leaf); a schema-1 pool is
upgraded when it is opened (`genome.pool.migrate`).
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from genome.errors import BadInput

FORMAT_TAG = "cogitans-genepool"
SCHEMA_VERSION = 2
INDEX = "index.sqlite"
OBJECTS = "objects"

SCHEMA = """
CREATE TABLE config (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE packs (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, size INTEGER NOT NULL, created REAL NOT NULL);
CREATE TABLE blobs (
    hash BLOB PRIMARY KEY, pack INTEGER NOT NULL, offset INTEGER NOT NULL, length INTEGER NOT NULL,
    size INTEGER NOT NULL, codec INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE metas (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, dtype TEXT NOT NULL, shape TEXT NOT NULL, json TEXT NOT NULL);
CREATE TABLE genes (
    hash BLOB PRIMARY KEY, meta INTEGER NOT NULL, block INTEGER, blob BLOB NOT NULL, base BLOB,
    nbytes INTEGER NOT NULL, l2 TEXT, l3 TEXT, sig BLOB, version INTEGER NOT NULL, parent BLOB,
    status TEXT NOT NULL, refs INTEGER NOT NULL, batch INTEGER NOT NULL, leaf INTEGER NOT NULL,
    pack INTEGER NOT NULL, offset INTEGER NOT NULL, length INTEGER NOT NULL, size INTEGER NOT NULL,
    codec INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX genes_l2 ON genes (l2) WHERE l2 IS NOT NULL;
CREATE INDEX genes_l3 ON genes (l3) WHERE l3 IS NOT NULL;
CREATE INDEX genes_base ON genes (base) WHERE base IS NOT NULL;
CREATE TABLE models (
    id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, kind TEXT NOT NULL, source TEXT NOT NULL,
    format TEXT NOT NULL, arch TEXT, metadata TEXT NOT NULL, tensors INTEGER NOT NULL,
    nbytes INTEGER NOT NULL, stored INTEGER NOT NULL, stats TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE tensors (
    model INTEGER NOT NULL, idx INTEGER NOT NULL, name TEXT NOT NULL, canonical TEXT NOT NULL,
    dtype TEXT NOT NULL, shape TEXT NOT NULL, nbytes INTEGER NOT NULL, perm BLOB, perm_axis INTEGER,
    err_sq REAL NOT NULL DEFAULT 0, norm_sq REAL NOT NULL DEFAULT 0, genes BLOB NOT NULL, levels BLOB NOT NULL,
    PRIMARY KEY (model, idx));
CREATE INDEX tensors_canonical ON tensors (canonical, shape);
CREATE TABLE rowsigs (sig TEXT NOT NULL, axis INTEGER NOT NULL, model INTEGER NOT NULL, tensor INTEGER NOT NULL);
CREATE INDEX rowsigs_sig ON rowsigs (sig);
CREATE TABLE batches (
    id INTEGER PRIMARY KEY, root TEXT NOT NULL, signature TEXT NOT NULL, public_key TEXT NOT NULL,
    count INTEGER NOT NULL, created REAL NOT NULL, leaves BLOB NOT NULL, format INTEGER NOT NULL);
"""
# metas: what genes share (one row per tensor, and one for its last block if that is shorter): kind,
# dtype, block shape, metadata JSON without the block index, which is genes.block.
# tensors.genes: the tensor's gene ids in block order, 32 bytes each; tensors.levels: one byte per
# block (0 a new gene, 1-4 the level it collapsed at); batches.leaves: `count` 32-byte Merkle
# leaves; batches.format: the signed-field layout of its genes (`genome.pool.gene.LEAF_FORMAT`).


class PoolCorrupt(BadInput):
    """A blob, index row or signature that does not match what was stored."""


def is_pool(path: Path) -> bool:
    return (Path(path) / "pool.json").is_file() and (Path(path) / INDEX).is_file()


def create(path: Path, config: dict[str, object]) -> None:
    """Create an empty pool folder (absent or empty); `BadInput` otherwise."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise BadInput(f"pool folder {path} already exists and is not empty")
    if not path.parent.exists():
        raise BadInput(f"folder {path.parent} does not exist")
    path.mkdir(exist_ok=True)
    (path / OBJECTS).mkdir()
    db = sqlite3.connect(path / INDEX)
    with db:
        db.executescript(SCHEMA)
        db.executemany("INSERT INTO config VALUES (?, ?)", [(k, json.dumps(v)) for k, v in config.items()])
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    db.close()
    write_tag(path)


def write_tag(path: Path) -> None:
    """Write the pool folder's `pool.json` tag (format and current schema) atomically."""
    tmp = Path(path) / ".pool.json.tmp"
    tmp.write_text(json.dumps({"format": FORMAT_TAG, "schema": SCHEMA_VERSION}))
    os.replace(tmp, Path(path) / "pool.json")


def connect(path: Path) -> tuple[sqlite3.Connection, int]:
    """Open a pool's index after checking the folder; returns it and its schema version (an
    older one is upgraded by `genome.pool.migrate`, a newer one refused).

    The connection may be handed to a helper thread (never used by two threads at once): a bulk
    ingest runs its row inserts there while the main thread builds the Merkle tree.
    """
    path = Path(path)
    if not path.exists():
        raise BadInput(f"no gene pool at {path} (run `cogitans genome pool init {path}`)")
    if not is_pool(path):
        raise BadInput(f"{path} is not a gene pool (pool.json and {INDEX} expected)")
    try:
        tag = json.loads((path / "pool.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise PoolCorrupt(f"{path / 'pool.json'} is unreadable: {err}") from None
    if tag.get("format") != FORMAT_TAG:
        raise BadInput(f"{path / 'pool.json'}: format {tag.get('format')!r}, expected {FORMAT_TAG!r}")
    try:
        db = sqlite3.connect(path / INDEX, timeout=30, isolation_level=None, check_same_thread=False)
        version = db.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError as err:
        raise PoolCorrupt(f"{path / INDEX} is not a readable SQLite index: {err}") from None
    if version > SCHEMA_VERSION:
        db.close()
        raise BadInput(f"{path / INDEX} was written by a newer Cogitans (index schema {version}, this version "
                       f"reads up to {SCHEMA_VERSION}); upgrade cogitans to use this pool")
    if version < 1:
        db.close()
        raise PoolCorrupt(f"{path / INDEX} has no schema version; it is not a gene pool index")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")  # WAL: a commit survives a killed process; fsync at checkpoints
    db.execute("PRAGMA foreign_keys=OFF")
    db.execute("PRAGMA cache_size=-65536")  # 64 MiB: an ingest's random-key index inserts stay in memory
    return db, version


def existing(db: sqlite3.Connection, ids: Sequence[bytes], kind: str) -> set[bytes]:
    """The `ids` of genes of `kind` that the pool holds: one indexed query per 500 ids."""
    found: set[bytes] = set()
    for lo in range(0, len(ids), 500):
        chunk = list(ids[lo:lo + 500])
        marks = ",".join("?" * len(chunk))
        found.update(r[0] for r in db.execute(f"SELECT g.hash FROM genes g JOIN metas m ON m.id = g.meta "
                                              f"WHERE g.hash IN ({marks}) AND m.kind = ?", (*chunk, kind)))
    return found


def unhex(h: str | None) -> bytes | None:
    """A hex key as bytes (None stays None)."""
    return None if h is None else bytes.fromhex(h)


def split32(packed: bytes) -> list[bytes]:
    """A packed BLOB of 32-byte hashes as a list."""
    return [packed[i:i + 32] for i in range(0, len(packed), 32)]


def positions(packed: bytes, key: bytes) -> np.ndarray:
    """Indices of the 32-byte entries of `packed` equal to `key`."""
    ids = np.frombuffer(packed, np.uint8).reshape(-1, 32)
    return np.flatnonzero((ids == np.frombuffer(key, np.uint8)).all(axis=1))


def read_config(db: sqlite3.Connection) -> dict[str, object]:
    return {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM config")}


@contextmanager
def writer_lock(path: Path) -> Iterator[None]:
    """Exclusive writer lock on the pool; on entry, remove what an interrupted writer left."""
    fh = open(Path(path) / "lock", "a+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BadInput(f"gene pool {path} is busy: another ingest or compact holds its lock") from None
        yield
    finally:
        fh.close()


def leftovers(path: Path, db: sqlite3.Connection) -> tuple[list[Path], list[Path]]:
    """(temporary files, complete packs no index row points to) under objects/."""
    objects = Path(path) / OBJECTS
    known = {row[0] for row in db.execute("SELECT name FROM packs")}
    temps = sorted(p for p in objects.iterdir() if p.name.startswith("."))
    orphans = sorted(p for p in objects.glob("pack-*.pack") if p.name not in known)
    return temps, orphans


def remove_leftovers(path: Path, db: sqlite3.Connection) -> int:
    """Delete leftovers (call only while holding the writer lock). Returns files removed."""
    temps, orphans = leftovers(path, db)
    for p in temps + orphans:
        p.unlink(missing_ok=True)
    return len(temps) + len(orphans)
