"""The exact-level (L1) bulk path of an ingest: ``max_level=1`` without deltas.

Per tensor: one BLAKE3 digest per block of the memory-mapped bytes, one 32-byte gene id per
block, the hits from the index, the new genes' payloads queued for the background pack writer,
and the new genes handed to the session as columns (`genome.pool.bulk.BulkGenes`). No per-gene
Python object is built: a gene's digest is its blob's digest, the input of its id and of its
Merkle leaf. The NaN/Inf check of a tensor's values and the zstd probe that picks its codec run
on a worker thread meanwhile; `finish` raises for the first tensor that failed the check, before
anything is committed.

Threads: blake3 releases the GIL for each block (2 KiB and more) but only for ~5 us, so two
threads hashing blocks spend their time handing the GIL back and forth; the work given to the
other threads is what holds no GIL for long (a tensor's NaN/Inf sum, pack writes, the index
insert at commit).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from itertools import pairwise
from typing import Any

import blake3
import numpy as np

from genome.errors import BadInput
from genome.formats.base import TensorInfo
from genome.pool import levels as lv
from genome.pool.bulk import BulkGenes
from genome.pool.codecs import choose_codec
from genome.pool.gene import gene_ids, metadata_json


class ExactIngest:
    """The bulk path over the tensors of one model (see the module docstring)."""

    def __init__(self, ingest: Any) -> None:
        self.ingest = ingest  # the `WeightIngest`: session, index, report, record, options
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="finite")
        self.checks: list[tuple[TensorInfo, np.ndarray, Future]] = []

    def finish(self) -> None:
        """Wait for the NaN/Inf checks; `BadInput` naming the first tensor that failed."""
        for info, raw, check in self.checks:
            if not check.result()[0]:
                bad = int((~np.isfinite(lv.canonical(raw, info.dtype, info.shape))).sum())
                raise BadInput(f"{self.ingest.reader.path}: tensor {info.name!r} holds {bad} NaN or infinite "
                               f"value(s); nothing was added to the pool")

    def close(self) -> None:
        self.worker.shutdown(wait=True, cancel_futures=True)

    def tensor(self, tidx: int, info: TensorInfo, taxon: Any, raw: np.ndarray, plan: lv.BlockPlan) -> None:
        """Ingest one tensor: every block references the gene with its id, or is a new gene."""
        w = self.ingest
        session, report = w.session, w.report
        n = plan.count
        end = plan.total * plan.row_bytes
        stride = max(1, plan.byte_range(0)[1])  # a whole block's bytes (the last block may be shorter)
        view = memoryview(raw)[:end]
        mid = n // 2
        probe = self.worker.submit(_probe, raw, info.dtype, view[mid * stride:(mid + 1) * stride],
                                   w.opts.compress_gain)
        self.checks.append((info, raw, probe))
        digests = [blake3.blake3(view[a:a + stride]).digest() for a in range(0, n * stride, stride)]
        shape, last_shape = plan.shape(0), plan.shape(n - 1)
        ids = gene_ids("weights", info.dtype, [shape] * (n - 1) + [last_shape], digests)
        index = w.index
        index.prefetch(ids)
        l1 = index.l1
        first: dict[bytes, int] = {}  # new gene -> its first block (a repeat within the tensor is an L1 hit)
        for i, g in enumerate(ids):
            if g not in l1 and g not in first:
                first[g] = i
        levels = bytearray(b"\x01") * n
        if first:
            new = list(first.values())
            blobs = [digests[i] for i in new]
            stored = session.writer.digests
            fresh: dict[bytes, int] = {}  # payloads this session's pack does not hold yet
            for d, i in zip(blobs, new):
                if d not in stored and d not in fresh:
                    fresh[d] = i
            if fresh:
                codec = probe.result()[1]
                at, keys = list(fresh.values()), list(fresh)
                cuts = [0, *(k + 1 for k in range(len(at) - 1) if at[k + 1] != at[k] + 1), len(at)]
                for lo, hi in pairwise(cuts):  # runs of consecutive blocks: one buffer each
                    session.queue_run(keys[lo:hi], view[at[lo] * stride:(at[hi - 1] + 1) * stride], stride, codec)
            meta = metadata_json({"source": w.name, "tensor": info.name, "canonical": info.canonical,
                                  "domain": taxon.domain, "subtype": taxon.subtype, "role": taxon.role})
            session.add_bulk(BulkGenes("weights", info.dtype, meta, list(first), blobs, new, shape, last_shape,
                                       min(stride, end), end - (n - 1) * stride, n - 1))
            l1.update(first)
            for i in new:
                levels[i] = 0
        session.refs.update(ids)
        w.record.add_tensor(tidx, info.name, info.canonical, info.dtype, info.shape, info.nbytes, b"".join(ids),
                            levels)
        report.genes_in += n
        report.collapsed[1] += n - len(first)
        report.full_genes += len(first)


def _probe(raw: np.ndarray, dtype: str, sample: memoryview, gain: float) -> tuple[bool, int]:
    """(whether a tensor's values are all finite, the codec for its blocks): numpy's sum and zstd
    hold no GIL, so this runs beside the hashing."""
    return lv.finite_bytes(raw, dtype), choose_codec(sample, gain)[0]
