"""Dedup settings and the per-level report an ingest returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from genome.errors import BadInput

#: L4 thresholds by taxonomy domain (Jaccard and cosine must both reach it); others use `threshold`.
DOMAIN_THRESHOLDS = {"norm": 0.7, "attention": 0.9}


@dataclass(frozen=True)
class DedupOptions:
    """How far and how an ingest deduplicates.

    Attributes:
        max_level: highest level tried (1 exact bytes ... 4 MinHash LSH).
        lossy: an L4 match replaces the block (export reports the error) instead of a lossless delta.
        deltas: store a new gene as an XOR delta against its closest gene when that is smaller.
        threshold: L4 Jaccard and cosine threshold for domains not in `domain_thresholds`.
        domain_thresholds: per-domain L4 thresholds (norm 0.7, attention 0.9 by default).
        shadow_tol: largest relative change of the layer's probe outputs an L4 collapse may cause.
        l3_bits: significant bits the L3 probe outputs are rounded to.
        delta_gain: a closest-gene delta is kept if at most this share of the block's stored size.
        compress_gain: zstd is used for a tensor's blocks if a sample block shrinks by this factor
            (1.11: a saving of 10%; float32 weights save under 10% and are stored raw, bf16,
            sparse blocks and deltas save more).
        max_candidates: L4 candidates verified per block (most similar signatures first).
    """

    max_level: int = 4
    lossy: bool = False
    deltas: bool = True
    threshold: float = 0.8
    domain_thresholds: dict[str, float] = field(default_factory=lambda: dict(DOMAIN_THRESHOLDS))
    shadow_tol: float = 0.05
    l3_bits: int = 12
    delta_gain: float = 0.8
    compress_gain: float = 1.11
    max_candidates: int = 3

    def __post_init__(self) -> None:
        if self.max_level not in (1, 2, 3, 4):
            raise BadInput(f"max level {self.max_level}: expected 1, 2, 3 or 4")
        for name, value in [("threshold", self.threshold), *self.domain_thresholds.items()]:
            if not 0.0 < value <= 1.0:
                raise BadInput(f"L4 threshold {name}={value}: expected a value in (0, 1]")
        if not self.shadow_tol >= 0:
            raise BadInput(f"shadow tolerance {self.shadow_tol}: expected >= 0")
        if not 1 <= self.l3_bits <= 52:
            raise BadInput(f"L3 rounding {self.l3_bits} bits: expected 1 to 52")

    def threshold_for(self, domain: str) -> float:
        return self.domain_thresholds.get(domain, self.threshold)


@dataclass
class IngestReport:
    """What one ingest did, level by level.

    Attributes:
        genes_in: blocks (or functions) ingested.
        collapsed: level -> blocks that stopped at that level.
        level_deltas: L3/L4 collapses stored as lossless deltas (part of `collapsed`).
        delta_genes: new genes stored as a delta against their closest gene (not collapsed).
        delta_bytes: stored bytes of all deltas.
        full_genes: new genes stored whole.
        bytes_before: the input's tensor bytes; bytes_after: bytes the pool grew by.
    """

    name: str
    kind: str
    genes_in: int = 0
    collapsed: dict[int, int] = field(default_factory=lambda: {1: 0, 2: 0, 3: 0, 4: 0})
    level_deltas: int = 0
    delta_genes: int = 0
    delta_bytes: int = 0
    full_genes: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    requires_verification: int = 0
    l4_candidates: int = 0
    l4_rejected: int = 0
    permuted_tensors: int = 0
    lossy_tensors: list[dict[str, Any]] = field(default_factory=list)
    not_executed: int = 0
    seconds: float = 0.0

    def unique(self, level: int) -> int:
        """Genes left after collapsing at levels 1..level."""
        return self.genes_in - sum(self.collapsed[k] for k in range(1, level + 1))

    @property
    def ratio(self) -> float:
        """Bytes in over bytes the pool grew by (inf when nothing new was stored)."""
        return self.bytes_before / self.bytes_after if self.bytes_after else float("inf")

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["collapsed"] = {str(k): v for k, v in self.collapsed.items()}
        d.update({f"unique_l{k}": self.unique(k) for k in (1, 2, 3, 4)})
        d["ratio"] = self.ratio if self.bytes_after else None  # JSON has no infinity
        return d

    def add(self, other: IngestReport) -> None:
        """Accumulate another report into this one (for totals)."""
        for key in ("genes_in", "level_deltas", "delta_genes", "delta_bytes", "full_genes", "bytes_before",
                    "bytes_after", "requires_verification", "l4_candidates", "l4_rejected", "permuted_tensors",
                    "not_executed", "seconds"):
            setattr(self, key, getattr(self, key) + getattr(other, key))
        for k in self.collapsed:
            self.collapsed[k] += other.collapsed[k]
        self.lossy_tensors += other.lossy_tensors
