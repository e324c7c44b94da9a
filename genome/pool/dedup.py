"""Ingest a model into a pool with four-level dedup, recording what collapsed where.

Each tensor is cut into blocks (`genome.pool.levels.plan`); each block goes down the cascade and
stops at the first level that finds it in the pool (or earlier in the same ingest):

- L1 exact bytes: the block references the existing gene.
- L2 canonical values (dtype-independent): references the existing gene; export re-encodes the
  values in the tensor's dtype, which gives back the exact bytes. A 2-D tensor whose rows or
  columns are a permutation of a stored tensor's (a layout change: hidden units reordered) is
  stored as that tensor's genes plus the permutation; its blocks count as L2.
- L3 behaviour on probe inputs: the block becomes a gene stored as a lossless XOR delta against
  the matching gene (kept only if smaller than the block itself).
- L4 MinHash LSH over the block's signed ternary positions: candidates of the same shape are
  checked for exact Jaccard and cosine against the domain's threshold, then by shadow execution
  (the layer's output change on probes with the candidate in place, within `shadow_tol`). A
  passing block is stored as a lossless delta, or with `lossy`, replaced by the candidate (export
  then reports the measured error per tensor). A block that passes the thresholds but fails the
  shadow execution is kept as REQUIRES_VERIFICATION.
- Otherwise a new gene; with `deltas`, stored as a delta against its closest gene (the block at
  the same place in the last model with the same tensor, or an L4 candidate) when that is smaller.

Exact-level ingest (``max_level=1`` without deltas) takes a bulk path (`genome.pool.exact`):
per tensor, one BLAKE3 hash per block of the memory-mapped bytes, the hits from the index, the
new genes as columns, and their blobs appended on a background thread.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import blake3
import numpy as np

from genome.errors import BadInput
from genome.formats.base import TensorInfo
from genome.minhash import MinHasher, jaccard, signed_shingles, ternary
from genome.pool import levels as lv
from genome.pool.codecs import ZSTD, ZSTD_SHUFFLE4, choose_codec, encode_blob
from genome.pool.gene import Gene, GeneStatus, gene_ids
from genome.pool.index import PoolIndex
from genome.pool.options import DedupOptions, IngestReport
from genome.pool.permutation import Permutations
from genome.pool.session import ModelRecord, Session

_MARGIN = 0.15  # L4: skip exact checks of candidates whose estimated Jaccard is this far below the threshold
_NEAR = 0.5  # L4 candidates at least this similar (estimated) are tried as delta bases


def default_name(path: Path) -> str:
    """A model's name in the pool: its folder's name, or its file's stem (the folder's for model.*)."""
    path = Path(path).resolve()
    if path.is_file() and path.stem in ("model", "pytorch_model", "consolidated"):
        return path.parent.name
    return path.stem if path.is_file() else path.name


def _metadata_json(metadata: dict[str, Any]) -> dict[str, list[Any]]:
    def plain(v: Any) -> Any:
        if isinstance(v, np.ndarray):
            return v.tolist()
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v
    return {k: [plain(e.value), e.type, e.sub_type] for k, e in metadata.items()}


class WeightIngest:
    """The cascade over one model's tensors (see the module docstring)."""

    def __init__(self, pool: Any, session: Session, opts: DedupOptions, reader: Any, name: str) -> None:
        self.pool, self.session, self.opts, self.reader, self.name = pool, session, opts, reader, name
        cfg = pool.config
        self.block = int(cfg["block"])
        self.universe = 2 * self.block
        self.hasher = MinHasher(int(cfg["num_perm"]), int(cfg["minhash_seed"]))
        self.index = PoolIndex(pool.db, "weights", opts.max_level, int(cfg["bands"]), int(cfg["rows"]))
        self.report = IngestReport(name=name, kind="weights")
        self.record = ModelRecord(name, "weights", str(reader.path), reader.format, reader.arch,
                                  _metadata_json(reader.metadata))
        self.permutations = Permutations(pool, load=opts.max_level >= 2)
        self._tried: set[tuple[str, str]] = set()  # (base, gene) delta attempts already made

    def run(self) -> tuple[ModelRecord, IngestReport]:
        from genome.pool.exact import ExactIngest
        from genome.taxonomy import classify_model

        t0 = time.perf_counter()
        infos = self.reader.tensors()
        taxa = classify_model((i.name, i.canonical) for i in infos)
        plans = [lv.plan(info, self.block) for info in infos]
        self.index.load_if_small(sum(p.count for p in plans))
        exact = ExactIngest(self) if self.opts.max_level == 1 else None
        try:
            for tidx, (info, plan) in enumerate(zip(infos, plans)):
                raw = np.ascontiguousarray(self.reader.raw(info.name)).reshape(-1)
                self.report.bytes_before += info.nbytes
                if exact is not None and not (self.opts.deltas and lv.numeric(info)):
                    exact.tensor(tidx, info, taxa[info.name], raw, plan)
                else:
                    self._tensor(tidx, info, taxa[info.name], raw, plan)
            if exact is not None:
                exact.finish()
        finally:
            if exact is not None:
                exact.close()
        self.report.seconds = time.perf_counter() - t0
        self.record.nbytes = self.report.bytes_before
        self.record.final_stats = self._final_stats  # the pack may still be being written
        return self.record, self.report

    def _final_stats(self, stored: int) -> dict[str, Any]:
        self.report.bytes_after = stored
        return self.report.as_dict()

    # ---- one tensor ------------------------------------------------------------------------
    def _tensor(self, tidx: int, info: TensorInfo, taxon: Any, raw: np.ndarray, plan: lv.BlockPlan) -> None:
        values = None
        if lv.numeric(info):
            values = lv.canonical(raw, info.dtype, info.shape).reshape(-1)
            if not lv.finite(values):
                bad = int((~np.isfinite(values)).sum())
                raise BadInput(f"{self.reader.path}: tensor {info.name!r} holds {bad} NaN or infinite value(s); "
                               f"nothing was added to the pool")
        n = plan.count
        ranges, shapes = plan.layout()
        view = memoryview(raw)
        digests = [blake3.blake3(view[a:b]).digest() for a, b in ranges]
        ids = gene_ids("weights", info.dtype, shapes, digests)
        self.index.prefetch(ids)
        ghash = [g.hex() for g in ids]
        idx, level = self.index, self.opts.max_level
        pending = [i for i in range(n) if ghash[i] not in idx]
        l2: list[str | None] = [None] * n
        l3: list[str | None] = [None] * n
        sigs: dict[int, tuple[np.ndarray, np.ndarray]] = {}

        def block_values(i: int) -> np.ndarray:
            lo, hi = plan.element_range(i)
            return values[lo:hi].reshape(shapes[i])

        if values is not None and level >= 2 and pending:
            same = info.dtype == "F32"  # canonical bytes are the stored bytes: reuse the digest
            for i in pending:
                l2[i] = lv.canonical_key(block_values(i), shapes[i], digests[i] if same else None)
            pending = [i for i in pending if l2[i] not in idx.l2]
        if values is not None and level >= 2 and len(info.shape) in (1, 2) and info.numel > 1:
            mat = values.reshape(info.shape if len(info.shape) == 2 else (-1, 1))  # a vector: permuted elements
            rowsigs, found = self.permutations.find(info.shape, mat, bool(pending),
                                                    axes=(0, 1) if len(info.shape) == 2 else (0,))
            self.record.rowsigs += [(sig, axis, tidx) for sig, axis in rowsigs]
            if found is not None:
                self._record_permuted(tidx, info, *found)
                return
        if values is not None and level >= 3 and pending:
            l3 = lv.behaviour_keys(values, plan, self.opts.l3_bits)
            pending = [i for i in pending if l3[i] not in idx.l3]
        if values is not None and level >= 4 and pending:
            found, shingles = lv.signatures([block_values(i) for i in pending], self.hasher, self.universe)
            sigs = {i: (found[k], shingles[k]) for k, i in enumerate(pending)}

        slot = self._same_slot(info) if values is not None and self.opts.deltas else {}
        codec, ratio = choose_codec(view[slice(*ranges[n // 2])], self.opts.compress_gain)
        err_sq = 0.0
        genes, levels = [], []
        for i in range(n):
            rep, lev = self._cascade(i, info, taxon, raw, ranges, shapes, digests, ghash, l2, l3, sigs,
                                     block_values if values is not None else None, slot, codec, ratio)
            if lev == 4 and self.opts.lossy and rep != ghash[i]:
                diff = block_values(i).astype(np.float64) - self.pool.values(rep, self.session)
                err_sq += float((diff * diff).sum())
            self.session.ref(rep)
            genes.append(rep)
            levels.append(lev)
            self.report.genes_in += 1
            if lev:
                self.report.collapsed[lev] += 1
        norm_sq = float(np.dot(values.astype(np.float64), values)) if err_sq > 0 else 0.0
        if err_sq > 0:
            self.report.lossy_tensors.append({"name": info.name, "rel_error": float(np.sqrt(err_sq / norm_sq))
                                              if norm_sq > 0 else 0.0})
        self.record.add_tensor(tidx, info.name, info.canonical, info.dtype, info.shape, info.nbytes, genes, levels,
                               err_sq=err_sq, norm_sq=norm_sq)

    def _cascade(self, i, info, taxon, raw, ranges, shapes, digests, ghash, l2, l3, sigs, block_values, slot,
                 codec, ratio) -> tuple[str, int]:
        """(gene the block references, level it collapsed at, 0 for a new gene)."""
        idx, g = self.index, ghash[i]
        if g in idx:
            return g, 1
        if l2[i] is not None and l2[i] in idx.l2:
            return idx.l2[l2[i]], 2
        meta = {"source": self.name, "tensor": info.name, "canonical": info.canonical, "block": i,
                "domain": taxon.domain, "subtype": taxon.subtype, "role": taxon.role}
        shape, block_raw = shapes[i], raw[ranges[i][0]:ranges[i][1]]
        full = max(1, int(block_raw.nbytes / ratio))
        sig, shingles = sigs.get(i, (None, None))
        keys = {"l2": l2[i], "l3": l3[i], "sig": sig}
        status, tried = GeneStatus.ACTIVE, []
        if block_values is not None:
            v = block_values(i)
            rep = idx.l3.get(l3[i]) if l3[i] is not None else None
            if rep is not None and idx.shape.get(rep) == shape and self._delta_gene(g, v, rep, full, info, shape,
                                                                                     meta, keys, block_raw):
                self.report.level_deltas += 1
                return g, 3
            if sig is not None:
                match, verify, tried = self._l4(v, sig, shingles, shape, taxon.domain)
                if match is not None:
                    if self.opts.lossy:
                        return match, 4
                    if self._delta_gene(g, v, match, full, info, shape, meta, keys, block_raw):
                        self.report.level_deltas += 1
                        return g, 4
                if verify:
                    status = GeneStatus.REQUIRES_VERIFICATION
                    self.report.requires_verification += 1
            if self.opts.deltas:
                near = [c for c in [slot.get(i), *tried] if c is not None]
                if self._delta_gene(g, v, near, self.opts.delta_gain * full, info, shape, meta, keys, block_raw,
                                    status):
                    self.report.delta_genes += 1
                    return g, 0
        self.session.put_blob(digests[i].hex(), block_raw, codec)
        self._add(Gene(g, "weights", digests[i].hex(), info.dtype, shape, {}, meta, status=status), keys,
                  block_raw.nbytes)
        self.report.full_genes += 1
        return g, 0

    def _add(self, gene: Gene, keys: dict[str, Any], nbytes: int) -> None:
        for level, key in ((2, keys["l2"]), (3, keys["l3"])):
            if key is not None:
                gene.level_hashes[level] = key
        sig = keys["sig"]
        if sig is not None:
            gene.level_hashes[4] = sig.tobytes().hex()
        self.session.add_gene(gene, sig.tobytes() if sig is not None else None, nbytes)
        self.index.add(gene.hash, gene.shape, keys["l2"], keys["l3"], sig)

    def _delta_gene(self, g, v, bases, limit, info, shape, meta, keys, block_raw, status=GeneStatus.ACTIVE) -> bool:
        """Store gene `g` as the smallest XOR delta against one of `bases` if under `limit` bytes."""
        best = None
        for base in dict.fromkeys([bases] if isinstance(bases, str) else bases):
            if (base, g) in self._tried:
                continue
            self._tried.add((base, g))
            bv = self.pool.values(base, self.session)
            if bv.shape != v.shape or bv.dtype != v.dtype:
                continue
            delta = lv.xor_delta(v, bv)
            if not lv.delta_may_fit(delta, limit):
                continue
            stored = encode_blob(delta, ZSTD_SHUFFLE4, level=3)
            if len(stored) < limit and (best is None or len(stored) < len(best[2])):
                best = (base, delta, stored)
        if best is None:
            return False
        base, delta, stored = best
        blob = blake3.blake3(delta).hexdigest()
        added = self.session.put_blob(blob, delta, ZSTD_SHUFFLE4, stored)
        self.report.delta_bytes += added
        self._add(Gene(g, "weights", blob, info.dtype, shape, {}, meta, status=status, base=base), keys,
                  block_raw.nbytes)
        return True

    def _l4(self, v, sig, shingles, shape, domain) -> tuple[str | None, bool, list[str]]:
        """(verified match or None, whether a candidate passed the thresholds but not the shadow
        execution, close candidates for a delta).

        Candidates whose Jaccard estimated from the signatures is more than `_MARGIN` below the
        threshold are rejected without exact checks (with 100 permutations the estimate's standard
        deviation is at most 0.05, so a true match is lost with probability below 1e-3).
        """
        idx = self.index
        cands = sorted(c for c in idx.lsh.query(sig) if idx.shape.get(c) == shape)  # a set: sorted for one order
        if not cands:
            return None, False, []
        est = (idx.sigmat[[idx.sig_row[c] for c in cands]] == sig).mean(axis=1)
        order = np.argsort(-est, kind="stable")
        threshold, verify = self.opts.threshold_for(domain), False
        self.report.l4_candidates += len(cands)
        close = [cands[k] for k in order[: self.opts.max_candidates] if est[k] >= _NEAR]
        checked = 0
        for k in order:
            if est[k] < threshold - _MARGIN or checked >= self.opts.max_candidates:
                break
            checked += 1
            c = cands[k]
            cv = self.pool.values(c, self.session)
            if cv.dtype != v.dtype:
                continue
            j = jaccard(shingles, signed_shingles(ternary(cv)))
            if j < threshold or lv.cosine(v, cv) < threshold:
                continue
            if lv.shadow_error(v, cv) <= self.opts.shadow_tol:
                return c, False, close
            verify = True
        self.report.l4_rejected += len(cands)
        return None, verify, close

    def _same_slot(self, info: TensorInfo) -> dict[int, str]:
        """Block index -> gene of the same tensor (canonical name and shape) in the last model holding it."""
        row = self.pool.db.execute(
            "SELECT model, idx FROM tensors WHERE canonical = ? AND shape = ? AND perm IS NULL "
            "ORDER BY model DESC LIMIT 1", (info.canonical, json.dumps(list(info.shape)))).fetchone()
        if row is None:
            return {}
        return dict(enumerate(self.pool.tensor_genes(*row)))

    def _record_permuted(self, tidx, info, model, tensor, perm, axis) -> None:
        payload = perm.astype(np.int64).tobytes()
        blob = blake3.blake3(payload).hexdigest()
        self.session.put_blob(blob, payload, ZSTD, shared=True)
        genes = self.pool.tensor_genes(model, tensor)
        for g in genes:
            self.session.ref(g)
        self.report.genes_in += len(genes)
        self.report.collapsed[2] += len(genes)
        self.report.permuted_tensors += 1
        self.record.add_tensor(tidx, info.name, info.canonical, info.dtype, info.shape, info.nbytes, genes,
                               [2] * len(genes), perm=blob, axis=axis)
