"""The gene pool on disk: content-addressed blobs in pack files, an SQLite index, a writer lock.

Layout of a pool folder::

    pool.json            format tag and schema version
    index.sqlite         genes, blobs, models (ordered gene lists), references, attestations
    objects/pack-*.pack  blobs (zstd frames or raw bytes) at offsets the index records
    keys/ed25519.key     the pool's signing key (mode 0600); keys/ed25519.pub
    lock                 held (flock) by the one writer

A blob is addressed by the BLAKE3 hash of its uncompressed payload; reading one checks that hash,
so a changed or truncated blob is caught on read. Packs are written under a temporary name and
renamed when complete; the index rows that point into a pack are committed in one SQLite
transaction after the rename. (A bulk ingest compresses and appends its blobs on a background
thread, in order, while the main thread hashes and fills the transaction; the rename still comes
before the COMMIT.) A writer killed at any point therefore leaves either nothing new in
the index, or a complete ingest; the files it may leave behind (a temporary pack, or a complete
pack nothing points to) are reported by verify and removed by the next writer.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import blake3
import numpy as np
import zstandard

from genome.errors import BadInput

FORMAT_TAG = "cogitans-genepool"
SCHEMA_VERSION = 1
INDEX = "index.sqlite"
OBJECTS = "objects"

#: blob codecs: raw bytes, zstd, zstd over 4-byte-lane byte planes (float32 bit patterns).
RAW, ZSTD, ZSTD_SHUFFLE4 = 0, 1, 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS config (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS packs (name TEXT PRIMARY KEY, size INTEGER NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS blobs (
    hash TEXT PRIMARY KEY, pack TEXT NOT NULL, offset INTEGER NOT NULL, length INTEGER NOT NULL,
    size INTEGER NOT NULL, codec INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS blobs_pack ON blobs (pack);
CREATE TABLE IF NOT EXISTS genes (
    hash TEXT PRIMARY KEY, kind TEXT NOT NULL, blob TEXT NOT NULL, base TEXT, dtype TEXT NOT NULL,
    shape TEXT NOT NULL, nbytes INTEGER NOT NULL, l2 TEXT, l3 TEXT, sig BLOB, meta TEXT NOT NULL,
    version INTEGER NOT NULL, parent TEXT, status TEXT NOT NULL, refs INTEGER NOT NULL,
    created REAL NOT NULL, batch INTEGER NOT NULL, leaf INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS genes_l2 ON genes (l2);
CREATE INDEX IF NOT EXISTS genes_l3 ON genes (l3);
CREATE INDEX IF NOT EXISTS genes_base ON genes (base);
CREATE INDEX IF NOT EXISTS genes_batch ON genes (batch, leaf);
CREATE TABLE IF NOT EXISTS models (
    id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, kind TEXT NOT NULL, source TEXT NOT NULL,
    format TEXT NOT NULL, arch TEXT, metadata TEXT NOT NULL, tensors INTEGER NOT NULL,
    nbytes INTEGER NOT NULL, stored INTEGER NOT NULL, stats TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tensors (
    model INTEGER NOT NULL, idx INTEGER NOT NULL, name TEXT NOT NULL, canonical TEXT NOT NULL,
    dtype TEXT NOT NULL, shape TEXT NOT NULL, nbytes INTEGER NOT NULL, perm TEXT, perm_axis INTEGER,
    err_sq REAL NOT NULL DEFAULT 0, norm_sq REAL NOT NULL DEFAULT 0, PRIMARY KEY (model, idx));
CREATE INDEX IF NOT EXISTS tensors_canonical ON tensors (canonical, shape);
CREATE TABLE IF NOT EXISTS blocks (
    model INTEGER NOT NULL, tensor INTEGER NOT NULL, idx INTEGER NOT NULL, gene TEXT NOT NULL,
    level INTEGER NOT NULL, PRIMARY KEY (model, tensor, idx));
CREATE INDEX IF NOT EXISTS blocks_gene ON blocks (gene);
CREATE TABLE IF NOT EXISTS rowsigs (sig TEXT NOT NULL, axis INTEGER NOT NULL, model INTEGER NOT NULL,
    tensor INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS rowsigs_sig ON rowsigs (sig);
CREATE TABLE IF NOT EXISTS leaves (batch INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL,
    PRIMARY KEY (batch, idx));
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY, root TEXT NOT NULL, signature TEXT NOT NULL, public_key TEXT NOT NULL,
    count INTEGER NOT NULL, created REAL NOT NULL);
"""


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
    tmp = path / ".pool.json.tmp"
    tmp.write_text(json.dumps({"format": FORMAT_TAG, "schema": SCHEMA_VERSION}))
    os.replace(tmp, path / "pool.json")


def connect(path: Path) -> sqlite3.Connection:
    """Open a pool's index after checking the folder and schema version."""
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
        db = sqlite3.connect(path / INDEX, timeout=30, isolation_level=None)
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
    return db


def existing(db: sqlite3.Connection, table: str, hashes: Sequence[str], where: str = "",
             params: tuple = ()) -> set[str]:
    """The `hashes` that `table` (genes or blobs) holds: one indexed query per 500 keys."""
    found: set[str] = set()
    for lo in range(0, len(hashes), 500):
        chunk = list(hashes[lo:lo + 500])
        marks = ",".join("?" * len(chunk))
        found.update(r[0] for r in db.execute(f"SELECT hash FROM {table} WHERE hash IN ({marks}){where}",
                                              (*chunk, *params)))
    return found


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


# ---- codecs --------------------------------------------------------------------------------
def encode_blob(payload: bytes | memoryview, codec: int, level: int = 1) -> bytes:
    """Stored bytes of a payload under `codec`."""
    if codec == RAW:
        return bytes(payload)
    if codec == ZSTD_SHUFFLE4:
        arr = np.frombuffer(payload, np.uint8)
        if len(arr) % 4:
            raise ValueError("ZSTD_SHUFFLE4 needs a payload of whole 4-byte lanes")
        payload = np.ascontiguousarray(arr.reshape(-1, 4).T).tobytes()
    return _compressor(level).compress(payload)


_LOCAL = threading.local()  # a ZstdCompressor must not be shared between threads


def _compressor(level: int) -> zstandard.ZstdCompressor:
    cache = getattr(_LOCAL, "compressors", None)
    if cache is None:
        cache = _LOCAL.compressors = {}
    c = cache.get(level)
    if c is None:
        c = cache[level] = zstandard.ZstdCompressor(level=level)
    return c


def decode_blob(stored: bytes, codec: int, size: int) -> bytes:
    """Inverse of `encode_blob`; raises zstandard.ZstdError or ValueError on damage."""
    if codec == RAW:
        return stored
    data = zstandard.ZstdDecompressor().decompress(stored, max_output_size=size)
    if len(data) != size:
        raise ValueError(f"decompressed {len(data)} bytes, expected {size}")
    if codec == ZSTD_SHUFFLE4:
        data = np.ascontiguousarray(np.frombuffer(data, np.uint8).reshape(4, -1).T).tobytes()
    return data


def blob_hash(payload: bytes | memoryview) -> str:
    return blake3.blake3(payload).hexdigest()


class PackWriter:
    """Appends blobs to a new pack under a temporary name; `finish` renames it into place.

    `add` encodes and appends at once; `add_many` queues a batch that a background thread encodes
    (zstd releases the GIL) and appends, batches in the order they were queued, so hashing and
    index work go on meanwhile. `finish`, `read`, `written` and the next `add` wait for the queue;
    `blobs` is complete only after one of them.
    """

    _FLUSH = 1 << 22  # bytes buffered by `add` before a write

    def __init__(self, path: Path) -> None:
        self.name = f"pack-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:12]}.pack"
        self.final = Path(path) / OBJECTS / self.name
        self.tmp = Path(path) / OBJECTS / f".{self.name}.tmp"
        self.fh = open(self.tmp, "w+b", buffering=0)
        self.offset = 0
        self.blobs: dict[str, tuple[int, int, int, int]] = {}  # hash -> (offset, length, size, codec)
        self._buf: list[bytes | memoryview] = []  # appended by `add`, not yet written
        self._buffered = 0
        self._queued: set[str] = set()  # digests of batches queued by `add_many`
        self._jobs: list[Future] = []
        self._pool: ThreadPoolExecutor | None = None

    def __contains__(self, digest: str) -> bool:
        return digest in self.blobs or digest in self._queued

    def add(self, digest: str, payload: bytes | memoryview, codec: int, stored: bytes | None = None) -> int:
        """Append a payload (unless this pack already holds it). Returns stored bytes added."""
        if digest in self:
            return 0
        data = stored if stored is not None else encode_blob(payload, codec)
        self._append(digest, data, len(payload), codec)
        return len(data)

    def add_stored(self, digest: str, stored: bytes, size: int, codec: int) -> None:
        """Append already-encoded bytes (compact copies blobs without recompressing them)."""
        if digest not in self:
            self._append(digest, stored, size, codec)

    def add_many(self, digests: Sequence[str], payloads: Sequence[bytes | memoryview], codec: int) -> None:
        """Queue new blobs (distinct, none already in this pack) for encoding and appending.

        The payloads (e.g. views of a memory-mapped model) must stay valid until `finish`.
        """
        if not digests:
            return
        self._write_buffer()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="pack")
        prev = self._jobs[-1] if self._jobs else None
        self._jobs.append(self._pool.submit(self._job, list(digests), list(payloads), codec, prev))
        self._queued.update(digests)

    def _job(self, digests: list[str], payloads: list, codec: int, prev: Future | None) -> None:
        stored = payloads if codec == RAW else [encode_blob(p, codec) for p in payloads]
        if prev is not None:
            prev.result()  # appends stay in queue order (jobs start in order: no deadlock)
        offset = self.offset
        for d, p, data in zip(digests, payloads, stored):
            self.blobs[d] = (offset, len(data), len(p), codec)
            offset += len(data)
        _write_all(self.fh.fileno(), stored)
        self.offset = offset

    def _wait(self) -> None:
        """Wait for every queued batch (re-raising the first failure)."""
        jobs, self._jobs = self._jobs, []
        for job in jobs:
            job.result()
        self._queued.clear()

    def _append(self, digest: str, data: bytes | memoryview, size: int, codec: int) -> None:
        self._wait()
        self.blobs[digest] = (self.offset, len(data), size, codec)
        self.offset += len(data)
        self._buf.append(data)
        self._buffered += len(data)
        if self._buffered >= self._FLUSH:
            self._write_buffer()

    def _write_buffer(self) -> None:
        if self._buf:
            _write_all(self.fh.fileno(), self._buf)
            self._buf, self._buffered = [], 0

    def written(self) -> int:
        """Bytes in the pack once everything queued is appended (waits for the queue)."""
        self._wait()
        return self.offset

    def read(self, digest: str) -> bytes:
        """A payload added in this session (for comparisons before the commit)."""
        self._wait()
        self._write_buffer()
        offset, length, size, codec = self.blobs[digest]
        return decode_blob(os.pread(self.fh.fileno(), length, offset), codec, size)

    def finish(self, durable: bool = False) -> str | None:
        """Append what is queued, close and rename into place; None (and nothing kept) if no blob
        was added."""
        try:
            self._wait()
            self._write_buffer()
            if durable:
                os.fsync(self.fh.fileno())
        except BaseException:
            self.abort()
            raise
        self._shutdown()
        self.fh.close()
        if not self.blobs:
            self.tmp.unlink(missing_ok=True)
            return None
        os.replace(self.tmp, self.final)
        return self.name

    def abort(self) -> None:
        for job in self._jobs:
            job.cancel()
        self._shutdown()
        self._jobs, self._buf = [], []
        if not self.fh.closed:
            self.fh.close()
        self.tmp.unlink(missing_ok=True)

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _write_all(fd: int, chunks: Sequence[bytes | memoryview]) -> None:
    """Append chunks with as few system calls as possible (writev of up to 512 buffers)."""
    todo = [memoryview(c).cast("B") for c in chunks if len(c)]
    i = 0
    while i < len(todo):
        done = os.writev(fd, todo[i:i + 512])
        while i < len(todo) and done >= todo[i].nbytes:
            done -= todo[i].nbytes
            i += 1
        if done:  # a short write ended inside a chunk
            todo[i] = todo[i][done:]


class PackReader:
    """Reads blobs by hash from committed packs, checking each payload's BLAKE3 hash."""

    def __init__(self, path: Path, db: sqlite3.Connection) -> None:
        self.objects = Path(path) / OBJECTS
        self.db = db
        self._maps: dict[str, np.ndarray] = {}

    def location(self, digest: str) -> tuple[str, int, int, int, int] | None:
        return self.db.execute("SELECT pack, offset, length, size, codec FROM blobs WHERE hash = ?",
                               (digest,)).fetchone()

    def _map(self, pack: str) -> np.ndarray:
        m = self._maps.get(pack)
        if m is None:
            file = self.objects / pack
            if not file.is_file():
                raise PoolCorrupt(f"pack file {file} is missing")
            m = np.memmap(file, mode="r", dtype=np.uint8) if file.stat().st_size else np.zeros(0, np.uint8)
            self._maps[pack] = m
        return m

    def read(self, digest: str, check: bool = True) -> bytes:
        """The payload of blob `digest`; `PoolCorrupt` if missing, truncated or changed."""
        loc = self.location(digest)
        if loc is None:
            raise PoolCorrupt(f"blob {digest[:16]} is referenced but not in the index")
        pack, offset, length, size, codec = loc
        m = self._map(pack)
        if offset + length > len(m):
            raise PoolCorrupt(f"blob {digest[:16]} in {pack} is truncated: needs bytes {offset}-{offset + length}, "
                              f"the pack holds {len(m)}")
        try:
            payload = decode_blob(bytes(m[offset:offset + length]), codec, size)
        except (zstandard.ZstdError, ValueError) as err:
            raise PoolCorrupt(f"blob {digest[:16]} in {pack} is damaged: {err}") from None
        if check and blob_hash(payload) != digest:
            raise PoolCorrupt(f"blob {digest[:16]} in {pack} was changed on disk: its BLAKE3 hash no longer matches")
        return payload

    def close(self) -> None:
        self._maps.clear()
