"""One write to the pool: new blobs go to a fresh pack, new rows wait in memory, and `commit`
signs the new genes and writes every row in one SQLite transaction.

New genes come as `Gene` objects (`add_gene`) or, on the bulk ingest path, as ready index rows
(`add_rows`) with their signed leaf hashes; both are signed together as one batch.

Nothing a session does is visible until `commit` returns; `abort` (or a killed process) leaves
at most a temporary pack file, which the next writer removes.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from genome.pool import attest, merkle, store
from genome.pool.gene import Gene, GeneStatus, metadata_json
from genome.pool.store import RAW, PackWriter, encode_blob

#: columns of a bulk gene row (`Session.add_rows`), the genes table's minus created, batch, leaf.
ROW_FIELDS = ("hash", "kind", "blob", "base", "dtype", "shape", "nbytes", "l2", "l3", "sig", "meta", "version",
              "parent", "status", "refs")
_REFS = ROW_FIELDS.index("refs")


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
    #: if set, called at commit with the bytes the pack grew by; returns the final `stats`.
    final_stats: Callable[[int], dict[str, Any]] | None = None


class Session:
    """Pending writes of one ingest (or evolve). Use while holding the pool's writer lock."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.writer = PackWriter(pool.path)
        self.new: dict[str, NewGene] = {}
        self.rows: dict[str, list[Any]] = {}  # bulk genes: hash -> [*ROW_FIELDS, leaf]
        self.extra_refs: Counter[str] = Counter()

    @property
    def stored(self) -> int:
        """Stored bytes added to the pack so far (waits for queued blobs)."""
        return self.writer.written()

    # ---- blobs ---------------------------------------------------------------------------
    def new_blobs(self, digests: Sequence[str]) -> list[str]:
        """The digests (distinct, in order) that neither the pool nor this session stores yet."""
        fresh = [d for d in dict.fromkeys(digests) if d not in self.writer]
        if fresh:
            known = store.existing(self.pool.db, "blobs", fresh)
            fresh = [d for d in fresh if d not in known]
        return fresh

    def queue_blobs(self, digests: Sequence[str], payloads: Sequence[memoryview], codec: int) -> None:
        """Store new payloads (from `new_blobs`) in the background; see `PackWriter.add_many`."""
        self.writer.add_many(digests, payloads, codec)

    def put_blob(self, digest: str, payload: bytes | memoryview | np.ndarray, codec: int,
                 stored: bytes | None = None) -> int:
        """Store a payload unless the pool or this session has it. Returns stored bytes added."""
        if digest in self.writer or store.existing(self.pool.db, "blobs", [digest]):
            return 0
        if isinstance(payload, np.ndarray):
            payload = memoryview(np.ascontiguousarray(payload).reshape(-1).view(np.uint8))
        if stored is None and codec == RAW:
            stored = payload  # written as is: no copy
        return self.writer.add(digest, payload, codec, stored if stored is not None else encode_blob(payload, codec))

    def payload(self, digest: str) -> bytes:
        """A blob's payload from this session or the pool."""
        if digest in self.writer:
            return self.writer.read(digest)
        return self.pool.reader.read(digest)

    # ---- genes ---------------------------------------------------------------------------
    def add_gene(self, gene: Gene, sig: bytes | None = None, nbytes: int = 0) -> None:
        self.new[gene.hash] = NewGene(gene, sig, nbytes)
        if gene.base is not None:
            self.ref(gene.base)

    def add_rows(self, rows: Sequence[list[Any]]) -> None:
        """New genes as index rows: lists of `ROW_FIELDS` values plus the gene's signed leaf hash
        (`merkle.leaf_hash(gene.signed_fields(...))`); refs start at the row's value."""
        for row in rows:
            self.rows[row[0]] = row

    def ref(self, gene_hash: str, n: int = 1) -> None:
        """Add `n` references to a gene (new in this session or already in the pool)."""
        if gene_hash in self.new:
            self.new[gene_hash].gene.refs += n
        elif gene_hash in self.rows:
            self.rows[gene_hash][_REFS] += n
        else:
            self.extra_refs[gene_hash] += n

    def refs(self, counts: dict[str, int]) -> None:
        """`ref` for many genes at once (gene -> references)."""
        for h, n in counts.items():
            self.ref(h, n)

    def gene(self, gene_hash: str) -> Gene | None:
        entry = self.new.get(gene_hash)
        if entry is not None:
            return entry.gene
        row = self.rows.get(gene_hash)
        if row is None:
            return None
        h, kind, blob, base, dtype, shape, _nb, l2, l3, sig, meta, version, parent, status, refs = row[:_REFS + 1]
        levels = {k: v for k, v in ((2, l2), (3, l3), (4, sig.hex() if sig else None)) if v}
        return Gene(h, kind, blob, dtype, tuple(json.loads(shape)), levels, json.loads(meta), version, parent,
                    GeneStatus(status), refs, base)

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
        now = time.time()
        try:
            db.execute("BEGIN IMMEDIATE")
            if self.new or self.rows:
                self._insert_genes(db, now)
            db.executemany("UPDATE genes SET refs = refs + ? WHERE hash = ?",
                           [(self.extra_refs[h], h) for h in sorted(self.extra_refs)])
            model_id = self._insert_model(db, model, now) if model is not None else None
            for old, new in moves or []:
                db.execute("UPDATE blocks SET gene = ? WHERE gene = ?", (new, old))
            db.executemany("UPDATE genes SET status = ? WHERE hash = ?", [(s, h) for h, s in statuses or []])
            # The pack is complete and in place before anything that points into it is committed;
            # the rows above were written while queued blobs were still being appended.
            pack = self.writer.finish(durable=durable)
            if pack is not None:
                db.execute("INSERT INTO packs VALUES (?, ?, ?)", (pack, self.writer.offset, now))
                db.executemany("INSERT OR IGNORE INTO blobs VALUES (?, ?, ?, ?, ?, ?)",
                               [(h, pack, *self.writer.blobs[h]) for h in sorted(self.writer.blobs)])
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

    def _insert_genes(self, db: Any, now: float) -> None:
        """Sign the new genes as one batch and insert them, in hash order (leaf i = i-th smallest
        hash): B-tree inserts in key order touch each index page once."""
        batch = (db.execute("SELECT COALESCE(MAX(id), 0) FROM batches").fetchone()[0]) + 1
        rows = list(self.rows.values())
        for e in self.new.values():
            g = e.gene
            meta = metadata_json(g.metadata)
            rows.append([g.hash, g.kind, g.blob, g.base, g.dtype, "[" + ",".join(map(str, g.shape)) + "]", e.nbytes,
                         g.level_hashes.get(2), g.level_hashes.get(3), e.sig, meta, g.version, g.parent_hash,
                         g.status.value, g.refs, merkle.leaf_hash(g.signed_fields(meta))])
        rows.sort(key=lambda r: r[0])
        leaves = [r[_REFS + 1] for r in rows]
        root, signature = attest.sign_batch(self.pool.path, batch, leaves)
        db.execute("INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?)",
                   (batch, root, signature, attest.public_key(self.pool.path), len(leaves), now))
        db.executemany("INSERT INTO leaves VALUES (?, ?, ?)", [(batch, i, leaf) for i, leaf in enumerate(leaves)])
        db.executemany("INSERT INTO genes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       [(*r[:_REFS + 1], now, batch, i) for i, r in enumerate(rows)])

    def _insert_model(self, db: Any, m: ModelRecord, now: float) -> int:
        cur = db.execute(
            "INSERT INTO models (name, kind, source, format, arch, metadata, tensors, nbytes, stored, stats, created) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (m.name, m.kind, m.source, m.format, m.arch, json.dumps(m.metadata), len(m.tensors), m.nbytes,
             0, "{}", now))  # stored bytes and stats: set by `commit` once the pack is complete
        mid = int(cur.lastrowid)
        db.executemany("INSERT INTO tensors VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       [(mid, *t) for t in m.tensors])
        db.executemany("INSERT INTO blocks VALUES (?, ?, ?, ?, ?)", [(mid, *b) for b in m.blocks])
        db.executemany("INSERT INTO rowsigs VALUES (?, ?, ?, ?)", [(s, a, mid, t) for s, a, t in m.rowsigs])
        return mid

    def abort(self) -> None:
        self.writer.abort()
