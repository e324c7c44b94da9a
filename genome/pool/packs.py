"""Pack files: blob payloads appended one after another, found by (pack, offset, length).

A payload is stored raw or as a zstd frame (`encode_blob`). Its BLAKE3 digest is kept in the
index; reading checks it, so a changed or truncated payload is caught on read. A pack is written
under a temporary name and renamed into place before the index rows that point into it are
committed (see `genome.pool.store`).
"""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import accumulate, chain, repeat
from pathlib import Path

import numpy as np
import zstandard

from genome.pool.codecs import RAW, decode_blob, encode_blob
from genome.pool.gene import content_digest
from genome.pool.store import OBJECTS, PoolCorrupt

#: where a payload is stored: (pack id, offset, stored length, payload size, codec).
Location = tuple[int, int, int, int, int]


class PackWriter:
    """Appends blobs to a new pack under a temporary name; `finish` renames it into place.

    Blobs are keyed by their 32-byte digest; a digest already in this pack is not written twice.
    `add` encodes and appends at once; `add_run` queues blobs that a background thread encodes
    (zstd releases the GIL) and appends, in the order they were queued, so hashing and index work
    go on meanwhile. Queued blobs are handed over `_BATCH` bytes at a time (a hand-over wakes
    the thread, which then wants the GIL). `wait`, `finish`, `read` and the next `add` wait for
    the queue; `blobs` is complete only after one of them.
    """

    _FLUSH = 1 << 22  # bytes buffered by `add` before a write
    _BATCH = 1 << 23  # bytes queued by `add_run` before a background job is started

    def __init__(self, path: Path) -> None:
        self.name = f"pack-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:12]}.pack"
        self.final = Path(path) / OBJECTS / self.name
        self.tmp = Path(path) / OBJECTS / f".{self.name}.tmp"
        self.fh = open(self.tmp, "w+b", buffering=0)
        self.offset = 0
        self.blobs: dict[bytes, tuple[int, int, int, int]] = {}  # digest -> (offset, length, size, codec)
        self.digests: set[bytes] = set()  # every digest added or queued
        self._buf: list[bytes | memoryview] = []  # appended by `add`, not yet written
        self._buffered = 0
        self._pending: dict[int, list[tuple[list[bytes], memoryview, int]]] = {}  # codec -> runs not started
        self._pending_bytes: dict[int, int] = {}
        self._jobs: list[Future] = []
        self._pool: ThreadPoolExecutor | None = None

    def __contains__(self, digest: bytes) -> bool:
        return digest in self.digests

    def add(self, digest: bytes, payload: bytes | memoryview, codec: int, stored: bytes | None = None) -> int:
        """Append a payload (unless this pack already holds it). Returns stored bytes added."""
        if digest in self:
            return 0
        data = stored if stored is not None else encode_blob(payload, codec)
        self._append(digest, data, len(payload), codec)
        return len(data)

    def add_stored(self, digest: bytes, stored: bytes, size: int, codec: int) -> None:
        """Append already-encoded bytes (compact copies blobs without recompressing them)."""
        if digest not in self:
            self._append(digest, stored, size, codec)

    def add_run(self, digests: Sequence[bytes], run: memoryview, stride: int, codec: int) -> None:
        """Queue new blobs (distinct, none already in this pack) that lie back to back in `run`:
        blob k is ``run[k * stride:(k + 1) * stride]``, the last one may be shorter (consecutive
        blocks of a tensor). Raw, a run is written as one buffer.

        `run` (e.g. a view of a memory-mapped model) must stay valid until `finish`.
        """
        if not digests:
            return
        self._pending.setdefault(codec, []).append((list(digests), memoryview(run).cast("B"), stride))
        self._pending_bytes[codec] = self._pending_bytes.get(codec, 0) + len(run)
        self.digests.update(digests)
        if self._pending_bytes[codec] >= self._BATCH:
            self._start(codec)

    def _start(self, codec: int) -> None:
        """Hand the runs queued under `codec` to the background thread."""
        runs = self._pending.pop(codec)
        del self._pending_bytes[codec]
        self._write_buffer()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="pack")
        prev = self._jobs[-1] if self._jobs else None
        self._jobs.append(self._pool.submit(self._job, runs, codec, prev))

    def _job(self, runs: list[tuple[list[bytes], memoryview, int]], codec: int, prev: Future | None) -> None:
        """Encode (in parallel with the previous job), then append after it. Per-blob work stays
        in C-level iteration: this thread runs while others hash, and holds the GIL little."""
        sizes = [[stride] * (len(digests) - 1) + [len(run) - stride * (len(digests) - 1)]
                 for digests, run, stride in runs]
        if codec == RAW:
            chunks = [run for _, run, _ in runs]
            lengths = sizes
        else:
            chunks = [encode_blob(run[k * stride:(k + 1) * stride], codec)
                      for digests, run, stride in runs for k in range(len(digests))]
            lengths = [list(map(len, chunks))]
        if prev is not None:
            prev.result()  # appends stay in queue order (jobs start in order: no deadlock)
        flat = list(chain.from_iterable(lengths))
        offsets = list(accumulate(flat, initial=self.offset))
        _reserve(self.fh.fileno(), offsets[0], offsets[-1] - offsets[0])
        _write_all(self.fh.fileno(), chunks)
        digests = chain.from_iterable(d for d, _, _ in runs)
        self.blobs.update(zip(digests, zip(offsets, flat, chain.from_iterable(sizes), repeat(codec))))
        self.offset = offsets[-1]

    def flush(self) -> None:
        """Start appending every queued blob now (without waiting for it)."""
        for codec in list(self._pending):
            self._start(codec)

    def wait(self) -> None:
        """Wait for every queued blob (re-raising the first failure); `blobs` is then complete."""
        self.flush()
        jobs, self._jobs = self._jobs, []
        for job in jobs:
            job.result()

    def _append(self, digest: bytes, data: bytes | memoryview, size: int, codec: int) -> None:
        self.wait()
        data = memoryview(data).cast("B")
        self.digests.add(digest)
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
        self.wait()
        return self.offset

    def read(self, digest: bytes) -> bytes:
        """A payload added in this session (for comparisons before the commit)."""
        self.wait()
        self._write_buffer()
        offset, length, size, codec = self.blobs[digest]
        return decode_blob(os.pread(self.fh.fileno(), length, offset), codec, size)

    def finish(self, durable: bool = False) -> str | None:
        """Append what is queued, close and rename into place; None (and nothing kept) if no blob
        was added."""
        try:
            self.wait()
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
        self._jobs, self._buf, self._pending, self._pending_bytes = [], [], {}, {}
        if not self.fh.closed:
            self.fh.close()
        self.tmp.unlink(missing_ok=True)

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _reserve(fd: int, offset: int, length: int) -> None:
    """Allocate a range before writing it: ext4 then skips per-page delayed allocation (a third
    less kernel time for a large append). Best effort: some file systems cannot."""
    if length > 1 << 20 and hasattr(os, "posix_fallocate"):
        try:
            os.posix_fallocate(fd, offset, length)
        except OSError:
            pass


def _write_all(fd: int, chunks: Sequence[bytes | memoryview]) -> None:
    """Append byte buffers with as few system calls as possible (writev of up to 512 at once)."""
    for lo in range(0, len(chunks), 512):
        batch = chunks[lo:lo + 512]
        done = os.writev(fd, batch)
        if done != sum(map(len, batch)):  # a short write: finish the batch buffer by buffer
            todo = [memoryview(c).cast("B") for c in batch]
            i = 0
            while i < len(todo):
                while i < len(todo) and done >= todo[i].nbytes:
                    done -= todo[i].nbytes
                    i += 1
                if i < len(todo):
                    todo[i] = todo[i][done:]
                    done = os.writev(fd, todo[i:])


class PackReader:
    """Reads payloads from committed packs by location, checking each payload's BLAKE3 digest."""

    def __init__(self, path: Path, db: sqlite3.Connection) -> None:
        self.objects = Path(path) / OBJECTS
        self.db = db
        self._maps: dict[int, tuple[str, np.ndarray]] = {}

    def blob_location(self, digest: bytes) -> Location | None:
        """Where a shared blob (one the `blobs` table lists, e.g. a permutation) is stored."""
        return self.db.execute("SELECT pack, offset, length, size, codec FROM blobs WHERE hash = ?",
                               (digest,)).fetchone()

    def map(self, pack: int) -> tuple[str, np.ndarray]:
        """(file name, read-only byte map) of a committed pack."""
        entry = self._maps.get(pack)
        if entry is None:
            row = self.db.execute("SELECT name FROM packs WHERE id = ?", (pack,)).fetchone()
            if row is None:
                raise PoolCorrupt(f"pack {pack} is not in the index")
            file = self.objects / row[0]
            if not file.is_file():
                raise PoolCorrupt(f"pack file {file} is missing")
            m = np.memmap(file, mode="r", dtype=np.uint8) if file.stat().st_size else np.zeros(0, np.uint8)
            entry = self._maps[pack] = (row[0], m)
        return entry

    def stored(self, loc: Location) -> bytes:
        """The stored (encoded) bytes at a location; `PoolCorrupt` if the pack is too short."""
        pack, offset, length, _size, _codec = loc
        name, m = self.map(pack)
        if offset + length > len(m):
            raise PoolCorrupt(f"a blob in {name} is truncated: needs bytes {offset}-{offset + length}, "
                              f"the pack holds {len(m)}")
        return bytes(m[offset:offset + length])

    def read_at(self, digest: bytes, loc: Location, check: bool = True) -> bytes:
        """The payload with BLAKE3 digest `digest` stored at `loc`; `PoolCorrupt` if it is
        truncated, damaged or changed."""
        try:
            payload = decode_blob(self.stored(loc), loc[4], loc[3])
        except (zstandard.ZstdError, ValueError) as err:
            raise PoolCorrupt(f"blob {digest.hex()[:16]} in {self.map(loc[0])[0]} is damaged: {err}") from None
        except PoolCorrupt as err:
            raise PoolCorrupt(f"blob {digest.hex()[:16]}: {err}") from None
        if check and content_digest(payload) != digest:
            raise PoolCorrupt(f"blob {digest.hex()[:16]} in {self.map(loc[0])[0]} was changed on disk: its BLAKE3 "
                              f"hash no longer matches")
        return payload

    def read(self, digest: bytes) -> bytes:
        """The payload of a shared blob (see `blob_location`)."""
        loc = self.blob_location(digest)
        if loc is None:
            raise PoolCorrupt(f"blob {digest.hex()[:16]} is referenced but not in the index")
        return self.read_at(digest, loc)

    def close(self) -> None:
        self._maps.clear()
