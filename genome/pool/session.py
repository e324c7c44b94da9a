"""One write to the pool: new blobs go to a fresh pack, new rows wait in memory, and `commit`
signs the new genes and writes every row in one SQLite transaction.

Nothing a session does is visible until `commit` returns; `abort` (or a killed process) leaves
at most a temporary pack file, which the next writer removes.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from genome.pool import attest, merkle
from genome.pool.gene import Gene, metadata_json
from genome.pool.store import RAW, PackWriter, encode_blob


@dataclass
class NewGene:
    gene: Gene
    sig: bytes | None = None
    nbytes: int = 0


@dataclass
class ModelRecord:
    """A model (or source tree) being ingested: its row, tensors and block references."""

    name: str
    kind: str
    source: str
    format: str
    arch: str | None
    metadata: dict[str, Any]
    tensors: list[tuple] = field(default_factory=list)  # (idx, name, canonical, dtype, shape, nbytes, perm, axis, err, norm)
    blocks: list[tuple] = field(default_factory=list)  # (tensor idx, block idx, gene, level)
    rowsigs: list[tuple[str, int, int]] = field(default_factory=list)  # (sig, axis, tensor idx)
    nbytes: int = 0
    stats: dict[str, Any] = field(default_factory=dict)


class Session:
    """Pending writes of one ingest (or evolve). Use while holding the pool's writer lock."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.writer = PackWriter(pool.path)
        self.new: dict[str, NewGene] = {}
        self.extra_refs: Counter[str] = Counter()
        self.known_blobs: set[str] = {row[0] for row in pool.db.execute("SELECT hash FROM blobs")}
        self.stored = 0

    # ---- blobs ---------------------------------------------------------------------------
    def put_blob(self, digest: str, payload: bytes | memoryview | np.ndarray, codec: int,
                 stored: bytes | None = None) -> int:
        """Store a payload unless the pool or this session has it. Returns stored bytes added."""
        if digest in self.known_blobs or digest in self.writer.blobs:
            return 0
        if isinstance(payload, np.ndarray):
            payload = memoryview(np.ascontiguousarray(payload).reshape(-1).view(np.uint8))
        if stored is None and codec == RAW:
            stored = payload  # written as is: no copy
        added = self.writer.add(digest, payload, codec, stored if stored is not None else encode_blob(payload, codec))
        self.stored += added
        return added

    def payload(self, digest: str) -> bytes:
        """A blob's payload from this session or the pool."""
        if digest in self.writer.blobs:
            return self.writer.read(digest)
        return self.pool.reader.read(digest)

    # ---- genes ---------------------------------------------------------------------------
    def add_gene(self, gene: Gene, sig: bytes | None = None, nbytes: int = 0) -> None:
        self.new[gene.hash] = NewGene(gene, sig, nbytes)
        if gene.base is not None:
            self.ref(gene.base)

    def ref(self, gene_hash: str, n: int = 1) -> None:
        """Add `n` references to a gene (new in this session or already in the pool)."""
        if gene_hash in self.new:
            self.new[gene_hash].gene.refs += n
        else:
            self.extra_refs[gene_hash] += n

    def gene(self, gene_hash: str) -> Gene | None:
        entry = self.new.get(gene_hash)
        return entry.gene if entry else None

    # ---- commit --------------------------------------------------------------------------
    def commit(self, model: ModelRecord | None = None, moves: list[tuple[str, str]] | None = None,
               statuses: list[tuple[str, str]] | None = None, durable: bool = False) -> int | None:
        """Make everything visible at once; returns the new model id (if any).

        Args:
            model: the model to record, with its tensors and block references.
            moves: (old gene, new gene) pairs whose block references are repointed (evolve).
            statuses: (gene, new status) of existing genes (already checked against the lifecycle).
            durable: fsync the pack before the index commit (survives power loss, not only a kill).
        """
        db = self.pool.db
        pack = self.writer.finish(durable=durable)
        now = time.time()
        try:
            db.execute("BEGIN IMMEDIATE")
            if pack is not None:
                db.execute("INSERT INTO packs VALUES (?, ?, ?)", (pack, self.writer.offset, now))
                db.executemany("INSERT OR IGNORE INTO blobs VALUES (?, ?, ?, ?, ?, ?)",
                               [(h, pack, o, ln, sz, c) for h, (o, ln, sz, c) in self.writer.blobs.items()])
            if self.new:
                self._insert_genes(db, now)
            db.executemany("UPDATE genes SET refs = refs + ? WHERE hash = ?",
                           [(n, h) for h, n in self.extra_refs.items()])
            model_id = self._insert_model(db, model, now) if model is not None else None
            for old, new in moves or []:
                db.execute("UPDATE blocks SET gene = ? WHERE gene = ?", (new, old))
            db.executemany("UPDATE genes SET status = ? WHERE hash = ?", [(s, h) for h, s in statuses or []])
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return model_id

    def _insert_genes(self, db: Any, now: float) -> None:
        batch = (db.execute("SELECT COALESCE(MAX(id), 0) FROM batches").fetchone()[0]) + 1
        entries = list(self.new.values())
        metas = [metadata_json(e.gene.metadata) for e in entries]
        leaves = [merkle.leaf_hash(e.gene.signed_fields(m)) for e, m in zip(entries, metas)]
        root, signature = attest.sign_batch(self.pool.path, batch, leaves)
        db.execute("INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?)",
                   (batch, root, signature, attest.public_key(self.pool.path), len(leaves), now))
        db.executemany("INSERT INTO leaves VALUES (?, ?, ?)", [(batch, i, leaf) for i, leaf in enumerate(leaves)])
        rows = []
        for i, e in enumerate(entries):
            g = e.gene
            rows.append((g.hash, g.kind, g.blob, g.base, g.dtype, "[" + ",".join(map(str, g.shape)) + "]", e.nbytes,
                         g.level_hashes.get(2), g.level_hashes.get(3), e.sig,
                         metas[i], g.version, g.parent_hash, g.status.value,
                         g.refs, now, batch, i))
        db.executemany("INSERT INTO genes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def _insert_model(self, db: Any, m: ModelRecord, now: float) -> int:
        cur = db.execute(
            "INSERT INTO models (name, kind, source, format, arch, metadata, tensors, nbytes, stored, stats, created) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (m.name, m.kind, m.source, m.format, m.arch, json.dumps(m.metadata), len(m.tensors), m.nbytes,
             self.stored, json.dumps(m.stats), now))
        mid = int(cur.lastrowid)
        db.executemany("INSERT INTO tensors VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       [(mid, *t) for t in m.tensors])
        db.executemany("INSERT INTO blocks VALUES (?, ?, ?, ?, ?)", [(mid, *b) for b in m.blocks])
        db.executemany("INSERT INTO rowsigs VALUES (?, ?, ?, ?)", [(s, a, mid, t) for s, a, t in m.rowsigs])
        return mid

    def abort(self) -> None:
        self.writer.abort()
