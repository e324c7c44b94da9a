"""`PoolIndex`: the level keys of the genes a pool already holds, for an ingest to look blocks up in.

An ingest asks it, block by block, whether the pool (or the ingest so far) holds the block's gene
id (L1), canonical-values key (L2) or behaviour key (L3), and which genes' MinHash signatures
share an LSH band with the block's (L4 candidates, with the signature matrix to estimate their
Jaccard similarity). An exact-level ingest keeps it lazy: ids are looked up as they come, unless
the pool is small enough that reading every id at once is cheaper.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from genome.minhash import LSHIndex
from genome.pool import store


class PoolIndex:
    """Level keys of the genes already in the pool (of one kind), grown as the ingest goes.

    `l1` holds 32-byte gene ids; the other maps are keyed by level key and give hex gene ids.
    """

    def __init__(self, db: Any, kind: str, max_level: int, bands: int, rows: int) -> None:
        self.l1: set[bytes] = set()
        self.l2: dict[str, str] = {}
        self.l3: dict[str, str] = {}
        self.shape: dict[str, tuple[int, ...]] = {}
        self.sig_row: dict[str, int] = {}
        self.sigmat = np.zeros((0, 0), np.uint32)  # (rows, num_perm), grown by doubling
        self.lsh = LSHIndex(bands, rows)
        self.db, self.kind = db, kind
        self.lazy = max_level <= 1  # L1 only: look ids up as they come (`prefetch`), not the whole pool
        if self.lazy:
            return
        for h, l2, l3, shape, sig in db.execute("SELECT g.hash, g.l2, g.l3, m.shape, g.sig FROM genes g "
                                                "JOIN metas m ON m.id = g.meta WHERE m.kind = ?", (kind,)):
            self.add(h.hex(), tuple(json.loads(shape)), l2, l3 if max_level >= 3 else None,
                     np.frombuffer(sig, np.uint32) if sig is not None and max_level >= 4 else None)

    def __contains__(self, h: str) -> bool:
        """Whether gene `h` (hex) is in the pool or was added (call `prefetch` first if lazy)."""
        return bytes.fromhex(h) in self.l1

    def load_if_small(self, blocks: int) -> None:
        """Lazy index about to look up `blocks` ids: read every id of the pool at once instead
        when the pool has signed at most 4 x as many genes (one scan beats thousands of probes)."""
        if self.lazy and self.db.execute("SELECT COALESCE(SUM(count), 0) FROM batches").fetchone()[0] <= 4 * blocks:
            self.l1 = {r[0] for r in self.db.execute("SELECT g.hash FROM genes g JOIN metas m ON m.id = g.meta "
                                                     "WHERE m.kind = ?", (self.kind,))}
            self.lazy = False

    def prefetch(self, ids: list[bytes]) -> None:
        """Make `l1` answer for `ids` (lazy index: one query for those not seen yet)."""
        if self.lazy:
            unseen = [h for h in ids if h not in self.l1]
            if unseen:
                self.l1 |= store.existing(self.db, unseen, self.kind)

    def add(self, h: str, shape: tuple[int, ...], l2: str | None, l3: str | None, sig: np.ndarray | None) -> None:
        self.l1.add(bytes.fromhex(h))
        self.shape[h] = shape
        if l2 is not None:
            self.l2.setdefault(l2, h)
        if l3 is not None:
            self.l3.setdefault(l3, h)
        if sig is not None:
            n = len(self.sig_row)
            if n == len(self.sigmat):
                grown = np.zeros((max(1024, 2 * n), len(sig)), sig.dtype)
                if n:
                    grown[:n] = self.sigmat[:n]
                self.sigmat = grown
            self.sigmat[n] = sig
            self.sig_row[h] = n
            self.lsh.insert(h, sig)

