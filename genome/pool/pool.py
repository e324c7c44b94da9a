"""`GenePool`: a persistent, attested, deduplicated store of genes and the models built from them.

    pool = GenePool.init("my_pool")              # or GenePool("my_pool") to open
    report = pool.ingest("model.safetensors")    # four-level dedup, see genome.pool.dedup
    pool.export("model", "copy.safetensors")     # bit-identical unless lossy L4 was asked for

Reading a gene checks its blob's BLAKE3 hash, that the gene hashes to its id, and its attestation
(`pool.ledger`: the batch signature once per batch, then the gene's leaf), so tampering is caught
on read. Rebuilding tensors and models from genes is `genome.pool.rebuild`.
"""

from __future__ import annotations

import json
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from genome.errors import BadInput
from genome.pool import attest, store
from genome.pool.bulk import add_refs
from genome.pool.gene import (
    Gene,
    GeneStatus,
    check_transition,
    content_digest,
    gene_hash,
    join_block,
)
from genome.pool.ledger import Ledger
from genome.pool.levels import apply_delta, canonical, encode
from genome.pool.packs import PackReader

DEFAULT_CONFIG = {"block": 4096, "num_perm": 100, "bands": 20, "rows": 5, "minhash_seed": 1}
_GENE_COLUMNS = ("g.hash, m.kind, g.blob, g.base, m.dtype, m.shape, g.l2, g.l3, g.sig, m.json, g.block, g.version, "
                 "g.parent, g.status, g.refs, g.batch, g.leaf, g.pack, g.offset, g.length, g.size, g.codec")
_GENE_FROM = "genes g JOIN metas m ON m.id = g.meta"


class GenePool:
    """An open gene pool folder (see `genome.pool.store` for the layout)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.db, version = store.connect(self.path)
        if version < store.SCHEMA_VERSION:
            from genome.pool.migrate import upgrade

            try:
                upgrade(self.path, self.db, version)
            except BaseException:
                self.db.close()
                raise
        self.config = {**DEFAULT_CONFIG, **store.read_config(self.db)}
        self.reader = PackReader(self.path, self.db)
        self.ledger = Ledger(self.db, self.path)  # batches, signatures, the pool-wide Merkle root
        self._genes: dict[str, Gene] = {}  # read cache; cleared by every write
        self._values: OrderedDict[str, np.ndarray] = OrderedDict()

    @classmethod
    def init(cls, path: str | Path, **config: Any) -> GenePool:
        """Create a pool (folder absent or empty) with its signing keys, and open it."""
        unknown = set(config) - set(DEFAULT_CONFIG)
        if unknown:
            raise BadInput(f"unknown pool setting(s): {', '.join(sorted(unknown))}")
        cfg = {**DEFAULT_CONFIG, **config}
        if not 16 <= int(cfg["block"]) <= 1 << 20:
            raise BadInput(f"block size {cfg['block']}: expected 16 to 1048576 elements")
        if int(cfg["bands"]) * int(cfg["rows"]) > int(cfg["num_perm"]):
            raise BadInput(f"bands x rows = {cfg['bands']} x {cfg['rows']} exceeds num_perm={cfg['num_perm']}")
        store.create(Path(path), cfg)
        attest.create_keys(Path(path))
        return cls(path)

    def close(self) -> None:
        self.reader.close()
        self.db.close()

    def __enter__(self) -> GenePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- genes -----------------------------------------------------------------------------
    def gene(self, h: str) -> Gene:
        """The gene with id (or unique id prefix) `h`, attestation attached."""
        cached = self._genes.get(h)
        if cached is not None:
            return cached
        row = None
        try:
            key = bytes.fromhex(h) if len(h) % 2 == 0 else None
        except ValueError:
            raise BadInput(f"gene {h!r} is not a hex gene id") from None
        if key is not None and len(key) == 32:
            row = self.db.execute(f"SELECT {_GENE_COLUMNS} FROM {_GENE_FROM} WHERE g.hash = ?", (key,)).fetchone()
        elif 4 <= len(h) < 64:  # a unique prefix: the ids from h000... up to h fff...
            lo, hi = bytes.fromhex(h.ljust(64, "0")), bytes.fromhex(h.ljust(64, "f"))
            rows = self.db.execute(f"SELECT {_GENE_COLUMNS} FROM {_GENE_FROM} WHERE g.hash BETWEEN ? AND ? LIMIT 2",
                                   (lo, hi)).fetchall()
            row = rows[0] if len(rows) == 1 else None
        if row is None:
            raise BadInput(f"gene {h!r} is not in pool {self.path}")
        return self._gene(row)

    def _gene(self, row: tuple) -> Gene:
        (h, kind, blob, base, dtype, shape, l2, l3, sig, meta, block, version, parent, status, refs, batch, leaf,
         *location) = row
        levels = {k: v for k, v in ((2, l2), (3, l3), (4, sig.hex() if sig else None)) if v}
        g = Gene(h.hex(), kind, blob.hex(), dtype, tuple(json.loads(shape)), levels, join_block(block, json.loads(meta)),
                 version, parent.hex() if parent else None, GeneStatus(status), refs, base.hex() if base else None)
        g.attestation = (batch, leaf)
        g.location = tuple(location)
        g.leaf_format = self.ledger.leaf_format(batch)
        if len(self._genes) > 4096:
            self._genes.clear()
        self._genes[g.hash] = g
        return g

    def exact_bytes(self, h: str, session: Any = None) -> bytes:
        """A gene's exact stored bytes, fully checked (blob hash, gene hash, attestation)."""
        g = session.gene(h) if session is not None else None
        checked = g is None  # read from the pool: `read_at` checks the payload against g.blob
        if g is not None:
            payload = session.payload(g.blob)
        else:
            g = self.gene(h)
            self.ledger.check_attestation(g)
            payload = self.reader.read_at(bytes.fromhex(g.blob), g.location, check=True)
        if g.base is None:
            data = payload
            digest = bytes.fromhex(g.blob) if checked else content_digest(data)
        else:
            base = self.values(g.base, session)
            data = encode(apply_delta(base, payload), g.dtype).tobytes()
            digest = content_digest(data)
        if gene_hash(g.kind, g.dtype, g.shape, digest) != g.hash:
            raise store.PoolCorrupt(f"gene {g.hash[:16]}: its data no longer hashes to its id")
        return data

    def values(self, h: str, session: Any = None) -> np.ndarray:
        """A numeric gene's canonical values (float32, or float64 when needed), block-shaped."""
        cached = self._values.get(h)
        if cached is not None:
            self._values.move_to_end(h)
            return cached
        g = (session.gene(h) if session is not None else None) or self.gene(h)
        data = np.frombuffer(self.exact_bytes(h, session), np.uint8)
        vals = canonical(data, g.dtype, g.shape)
        self._values[h] = vals
        if len(self._values) > 512:
            self._values.popitem(last=False)
        return vals

    def set_status(self, h: str, status: str) -> Gene:
        """Move a gene along its lifecycle; `IllegalTransition` for a forbidden move."""
        with store.writer_lock(self.path):
            g = self.gene(h)
            new = check_transition(g.status, status, f"gene {g.hash[:12]}")
            self.db.execute("UPDATE genes SET status = ? WHERE hash = ?", (new.value, bytes.fromhex(g.hash)))
            self._genes.clear()
            g.status = new
        return g

    def evolve(self, h: str, new_values: np.ndarray, reason: str = "", repoint: bool = True) -> Gene:
        """A new version of a weight gene (same shape and dtype), chained to it; the parent is
        DEPRECATED and, with `repoint`, every model block that used it uses the new version."""
        from genome.pool.codecs import ZSTD
        from genome.pool.gene import evolve as evolve_gene
        from genome.pool.session import Session

        with store.writer_lock(self.path):
            parent = self.gene(h)
            if parent.kind != "weights":
                raise BadInput(f"gene {h[:12]} is {parent.kind}; evolve() takes weight genes")
            if tuple(np.shape(new_values)) != parent.shape:
                raise BadInput(f"gene {h[:12]} has shape {list(parent.shape)}, new values have {list(np.shape(new_values))}")
            data = encode(np.asarray(new_values, np.float32), parent.dtype)
            child = evolve_gene(parent, data, reason)
            session = Session(self)
            try:
                session.put_blob(child.blob, data, ZSTD)
                session.add_gene(child, nbytes=data.nbytes)
                session.ref(parent.hash)  # a version holds its parent (rollback stays possible)
                moved = self.uses(parent.hash) if repoint else 0
                session.ref(child.hash, moved)
                session.ref(parent.hash, -moved)
                session.commit(moves=[(parent.hash, child.hash)] if moved else None,
                               statuses=[(parent.hash, parent.status.value)])
            except BaseException:
                session.abort()
                raise
        self._values.pop(h, None)
        self._genes.clear()
        return self.gene(child.hash)

    # ---- ingest ----------------------------------------------------------------------------
    def ingest(self, model: str | Path, name: str | None = None, options: Any = None) -> Any:
        """Add a model (any format `genome.formats.open_model` reads) with four-level dedup.

        Returns:
            The `IngestReport` (per-level counts and bytes). Nothing is visible in the pool
            until the whole model is in; a failure or a kill leaves the pool as it was.
        """
        from genome.formats import open_model
        from genome.pool.dedup import WeightIngest, default_name
        from genome.pool.options import DedupOptions

        opts = options or DedupOptions()
        name = name or default_name(Path(model))
        self._check_name(name)
        with open_model(model) as reader:
            return self._write(name, lambda session: WeightIngest(self, session, opts, reader, name).run())

    def ingest_code(self, source: str | Path, name: str | None = None, options: Any = None) -> Any:
        """Add every Python function of a source tree as code genes (L1 source, L2 bytecode,
        L3 execution trace); returns the `IngestReport`."""
        from genome.pool.code_genes import CodeIngest
        from genome.pool.dedup import default_name
        from genome.pool.options import DedupOptions

        opts = options or DedupOptions()
        name = name or default_name(Path(source))
        self._check_name(name)
        return self._write(name, lambda session: CodeIngest(self, session, opts, Path(source), name).run())

    def _check_name(self, name: str) -> None:
        if not name or "/" in name:
            raise BadInput(f"model name {name!r}: expected a non-empty name without '/'")
        if self.db.execute("SELECT 1 FROM models WHERE name = ?", (name,)).fetchone():
            raise BadInput(f"pool {self.path} already holds a model named {name!r}; pass another --name")

    def _write(self, name: str, build: Any) -> Any:
        from genome.pool.session import Session

        with store.writer_lock(self.path):
            store.remove_leftovers(self.path, self.db)
            self._check_name(name)
            session = Session(self)
            try:
                record, report = build(session)
                session.commit(record)
            except BaseException:
                session.abort()
                self._values.clear()
                raise
            finally:
                self._genes.clear()
        return report

    def remove(self, name: str) -> int:
        """Drop a model (its genes lose the references it held; `compact` then frees them).

        Returns:
            The number of gene references released.
        """
        with store.writer_lock(self.path):
            mid = self.model_row(name)[0]
            counts = Counter(g for (packed,) in self.db.execute("SELECT genes FROM tensors WHERE model = ?", (mid,))
                             for g in store.split32(packed))
            self.db.execute("BEGIN IMMEDIATE")
            try:
                add_refs(self.db, Counter({g: -n for g, n in counts.items()}))
                for table in ("tensors", "rowsigs"):
                    self.db.execute(f"DELETE FROM {table} WHERE model = ?", (mid,))
                self.db.execute("DELETE FROM models WHERE id = ?", (mid,))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self._genes.clear()
        return sum(counts.values())

    # ---- models ----------------------------------------------------------------------------
    def model_row(self, name: str) -> tuple:
        row = self.db.execute("SELECT id, kind, source, format, arch, metadata FROM models WHERE name = ?",
                              (name,)).fetchone()
        if row is None:
            names = [r[0] for r in self.db.execute("SELECT name FROM models ORDER BY id")]
            raise BadInput(f"pool {self.path} has no model {name!r} (models: {', '.join(names) or 'none'})")
        return row

    def tensor_genes(self, model: int, tensor: int) -> list[str]:
        """The gene (hex id) of each block of a tensor, in block order."""
        row = self.db.execute("SELECT genes FROM tensors WHERE model = ? AND idx = ?", (model, tensor)).fetchone()
        return [] if row is None else [g.hex() for g in store.split32(row[0])]

    def blocks(self, model: int) -> list[tuple[int, int, str, int]]:
        """(tensor, block, gene hex id, level it collapsed at: 0 new, 1-4) of every block of a model."""
        out = []
        for idx, packed, levels in self.db.execute("SELECT idx, genes, levels FROM tensors WHERE model = ? ORDER BY idx",
                                                   (model,)):
            out += [(idx, i, g.hex(), lev) for i, (g, lev) in enumerate(zip(store.split32(packed), levels))]
        return out

    def uses(self, h: str) -> int:
        """How many model blocks use gene `h`."""
        key = bytes.fromhex(h)
        return sum(store.positions(packed, key).size for (packed,) in self.db.execute(
            "SELECT genes FROM tensors WHERE instr(genes, ?) > 0", (key,)))

    def repoint(self, old: bytes, new: bytes) -> None:
        """Make every model block that uses gene `old` use gene `new` (inside the caller's
        transaction; references are the caller's to move)."""
        rows = self.db.execute("SELECT model, idx, genes FROM tensors WHERE instr(genes, ?) > 0", (old,)).fetchall()
        for model, idx, packed in rows:
            ids = np.frombuffer(packed, np.uint8).reshape(-1, 32).copy()
            ids[store.positions(packed, old)] = np.frombuffer(new, np.uint8)
            self.db.execute("UPDATE tensors SET genes = ? WHERE model = ? AND idx = ?", (ids.tobytes(), model, idx))

    def export(self, name: str, out: str | Path) -> dict[str, Any]:
        """Rebuild model `name` into OUT.safetensors, OUT.gguf or an organ folder (see `genome.pool.rebuild.export`)."""
        from genome.pool.rebuild import export

        return export(self, name, out)
