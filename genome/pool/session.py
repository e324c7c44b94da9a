"""One write to the pool: new blobs go to a fresh pack, new rows wait in memory, and `commit`
signs the new genes and writes every row in one SQLite transaction.

New genes come as `Gene` objects (`add_gene`) or, on the bulk ingest path, as a tensor's columns
(`add_bulk`); both are signed together as one batch. Every gene row records where in the new
pack its payload is.

Nothing a session does is visible until `commit` returns; `abort` (or a killed process) leaves
at most a temporary pack file, which the next writer removes.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from genome.pool import attest, bulk, merkle
from genome.pool.codecs import RAW, encode_blob
from genome.pool.gene import LEAF_FORMAT, Gene, metadata_json, split_block
from genome.pool.packs import PackWriter
from genome.pool.store import unhex as _raw


@dataclass
class NewGene:
    gene: Gene
    sig: bytes | None = None
    nbytes: int = 0


@dataclass
class ModelRecord:
    """A model (or source tree) being ingested: its row, tensors and their genes."""

    name: str
    kind: str
    source: str
    format: str
    arch: str | None
    metadata: dict[str, Any]
    #: (idx, name, canonical, dtype, shape JSON, nbytes, perm digest, perm axis, err_sq, norm_sq,
    #: gene ids packed in block order, level of each block as one byte)
    tensors: list[tuple] = field(default_factory=list)
    rowsigs: list[tuple[str, int, int]] = field(default_factory=list)  # (sig, axis, tensor idx)
    nbytes: int = 0
    stats: dict[str, Any] = field(default_factory=dict)
    #: if set, called at commit with the bytes the pack grew by; returns the final `stats`.
    final_stats: Callable[[int], dict[str, Any]] | None = None

    def add_tensor(self, idx: int, name: str, canonical: str, dtype: str, shape: Sequence[int], nbytes: int,
                   genes: Sequence[str] | bytes, levels: Sequence[int] | bytes, perm: str | None = None,
                   axis: int | None = None, err_sq: float = 0.0, norm_sq: float = 0.0) -> None:
        """Record a tensor and the gene of each of its blocks (hex ids, or 32-byte ids packed)."""
        packed = genes if isinstance(genes, bytes) else b"".join(bytes.fromhex(g) for g in genes)
        self.tensors.append((idx, name, canonical, dtype, json.dumps(list(shape)), nbytes,
                             None if perm is None else bytes.fromhex(perm), axis, err_sq, norm_sq, packed,
                             bytes(levels)))


class Session:
    """Pending writes of one ingest (or evolve). Use while holding the pool's writer lock."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.writer = PackWriter(pool.path)
        self.new: dict[str, NewGene] = {}
        self.bulk: list[bulk.BulkGenes] = []
        self.refs: Counter[bytes] = Counter()  # 32-byte id -> references (bulk genes and genes in the pool)
        self.shared: set[bytes] = set()  # payloads no gene owns (listed in the `blobs` table)

    @property
    def stored(self) -> int:
        """Stored bytes added to the pack so far (waits for queued blobs)."""
        return self.writer.written()

    # ---- blobs ---------------------------------------------------------------------------
    def put_blob(self, digest: str, payload: bytes | memoryview | np.ndarray, codec: int,
                 stored: bytes | None = None, shared: bool = False) -> int:
        """Store a gene's payload unless this session has it; with `shared`, a payload no gene
        owns, unless the pool has it too. Returns stored bytes added."""
        key = bytes.fromhex(digest)
        if shared:
            self.shared.add(key)
            if key not in self.writer and self.pool.reader.blob_location(key) is not None:
                return 0
        if key in self.writer:
            return 0
        if isinstance(payload, np.ndarray):
            payload = memoryview(np.ascontiguousarray(payload).reshape(-1).view(np.uint8))
        if stored is None and codec == RAW:
            stored = payload  # written as is: no copy
        return self.writer.add(key, payload, codec, stored if stored is not None else encode_blob(payload, codec))

    def queue_run(self, digests: Sequence[bytes], run: memoryview, stride: int, codec: int) -> None:
        """Store new payloads (none in this session yet) in the background; see `PackWriter.add_run`."""
        self.writer.add_run(digests, run, stride, codec)

    def payload(self, digest: str) -> bytes:
        """A payload stored in this session."""
        return self.writer.read(bytes.fromhex(digest))

    # ---- genes ---------------------------------------------------------------------------
    def add_gene(self, gene: Gene, sig: bytes | None = None, nbytes: int = 0) -> None:
        self.new[gene.hash] = NewGene(gene, sig, nbytes)
        if gene.base is not None:
            self.ref(gene.base)

    def add_bulk(self, genes: bulk.BulkGenes) -> None:
        """New whole genes of one tensor; their payloads must be in this session's pack."""
        self.bulk.append(genes)

    def ref(self, gene_hash: str, n: int = 1) -> None:
        """Add `n` references to a gene (new in this session or already in the pool)."""
        if gene_hash in self.new:
            self.new[gene_hash].gene.refs += n
        else:
            self.refs[bytes.fromhex(gene_hash)] += n

    def gene(self, gene_hash: str) -> Gene | None:
        """A gene added with `add_gene` (bulk genes are only read back once committed)."""
        entry = self.new.get(gene_hash)
        return None if entry is None else entry.gene

    # ---- commit --------------------------------------------------------------------------
    def commit(self, model: ModelRecord | None = None, moves: list[tuple[str, str]] | None = None,
               statuses: list[tuple[str, str]] | None = None, durable: bool = False) -> int | None:
        """Make everything visible at once; returns the new model id (if any).

        Args:
            model: the model to record, with its tensors and their genes.
            moves: (old gene, new gene) pairs whose block references are repointed (evolve).
            statuses: (gene, new status) of existing genes (already checked against the lifecycle).
            durable: fsync the pack before the index commit (survives power loss, not only a kill).
        """
        db = self.pool.db
        now = time.time()
        try:
            db.execute("BEGIN IMMEDIATE")
            pack_id = db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM packs").fetchone()[0]
            if self.new or self.bulk:
                self._insert_genes(db, pack_id, now)
            bulk.add_refs(db, self.refs)
            model_id = self._insert_model(db, model, now) if model is not None else None
            for old, new in moves or []:
                self.pool.repoint(bytes.fromhex(old), bytes.fromhex(new))
            db.executemany("UPDATE genes SET status = ? WHERE hash = ?",
                           [(s, bytes.fromhex(h)) for h, s in statuses or []])
            # The pack is complete and in place before anything that points into it is committed;
            # the rows above were written while queued blobs were still being appended.
            pack = self.writer.finish(durable=durable)
            if pack is not None:
                db.execute("INSERT INTO packs VALUES (?, ?, ?, ?)", (pack_id, pack, self.writer.offset, now))
                db.executemany("INSERT OR IGNORE INTO blobs VALUES (?, ?, ?, ?, ?, ?)",
                               [(h, pack_id, *self.writer.blobs[h]) for h in sorted(self.shared)
                                if h in self.writer.blobs])
            if model_id is not None:
                if model.final_stats is not None:
                    model.stats = model.final_stats(self.writer.offset)
                db.execute("UPDATE models SET stored = ?, stats = ? WHERE id = ?",
                           (self.writer.offset, json.dumps(model.stats), model_id))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            self.writer.abort()
            raise
        return model_id

    def _insert_genes(self, db: Any, pack: int, now: float) -> None:
        """Sign the new genes as one batch and insert them (bulk genes first, in id order: leaf i
        is the i-th).

        The bulk rows go in as one statement on a helper thread, which SQLite runs without the
        GIL, while this thread hashes the batch's leaves and Merkle tree.
        """
        self.writer.flush()  # appends the last payloads while this thread prepares the rows
        batch = db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM batches").fetchone()[0]
        metas: dict[tuple[str, str, str, str], int] = {}

        def meta_id(kind: str, dtype: str, shape: tuple[int, ...], meta_json: str) -> int:
            key = (kind, dtype, bulk.shape_json(shape), meta_json)
            if key not in metas:
                metas[key] = db.execute("INSERT INTO metas (kind, dtype, shape, json) VALUES (?, ?, ?, ?)",
                                        key).lastrowid
            return metas[key]

        rows = bulk.rows(self.bulk, [(meta_id(g.kind, g.dtype, g.shape, g.meta), meta_id(g.kind, g.dtype, g.last_shape,
                                                                                          g.meta)) for g in self.bulk])
        self.writer.wait()  # every payload's place in the pack is known
        locations = self.writer.blobs
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="index") as helper:
            done = helper.submit(bulk.insert, db, rows, self.refs, locations, batch, pack)
            leaves = merkle.leaf_hashes(bulk.signed_fields(rows)) + [merkle.leaf_hash(e.gene.signed_fields())
                                                                      for e in self.new.values()]
            root, signature = attest.sign_batch(self.pool.path, batch, leaves)
            done.result()
        genes = []
        for k, e in enumerate(self.new.values()):
            g = e.gene
            g.refs += self.refs.pop(bytes.fromhex(g.hash), 0)
            block, rest = split_block(g.metadata)
            blob = bytes.fromhex(g.blob)
            genes.append((bytes.fromhex(g.hash), meta_id(g.kind, g.dtype, g.shape, metadata_json(rest)), block, blob,
                          _raw(g.base), e.nbytes, g.level_hashes.get(2), g.level_hashes.get(3), e.sig, g.version,
                          _raw(g.parent_hash), g.status.value, g.refs, batch, rows.count + k, pack, *locations[blob]))
        db.executemany(f"INSERT INTO genes VALUES ({', '.join('?' * 20)})", genes)
        db.execute("INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (batch, root, signature, attest.public_key(self.pool.path), len(leaves), now, b"".join(leaves),
                    LEAF_FORMAT))

    def _insert_model(self, db: Any, m: ModelRecord, now: float) -> int:
        cur = db.execute(
            "INSERT INTO models (name, kind, source, format, arch, metadata, tensors, nbytes, stored, stats, created) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (m.name, m.kind, m.source, m.format, m.arch, json.dumps(m.metadata), len(m.tensors), m.nbytes,
             0, "{}", now))  # stored bytes and stats: set by `commit` once the pack is complete
        mid = int(cur.lastrowid)
        db.executemany(f"INSERT INTO tensors VALUES ({', '.join('?' * 13)})", [(mid, *t) for t in m.tensors])
        db.executemany("INSERT INTO rowsigs VALUES (?, ?, ?, ?)", [(s, a, mid, t) for s, a, t in m.rowsigs])
        return mid

    def abort(self) -> None:
        self.writer.abort()

