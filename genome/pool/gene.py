"""A gene: one unit of parameters (a weight block or a whole small tensor) or of code.

A gene is identified by its content hash (L1). It records the hashes it was deduplicated on
(L2 canonical form, L3 behaviour, L4 MinHash signature), metadata (source model, tensor, block
index, taxonomy, shape, dtype), a version chained to its parent, a lifecycle status, a reference
count and, once stored in a pool, an attestation.

Lifecycle: ACTIVE -> OPTIMIZED -> DEPRECATED -> ARCHIVED, forward only (a step may be skipped:
`evolve` deprecates an ACTIVE parent directly). REQUIRES_VERIFICATION marks a gene kept because an
L4 near-duplicate passed the similarity thresholds but failed shadow execution; a reviewer moves
it on to ACTIVE (or retires it). Any other move raises `IllegalTransition`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

import blake3
import numpy as np

from genome.errors import BadInput


class GeneStatus(str, Enum):
    ACTIVE = "ACTIVE"
    OPTIMIZED = "OPTIMIZED"
    DEPRECATED = "DEPRECATED"
    ARCHIVED = "ARCHIVED"
    REQUIRES_VERIFICATION = "REQUIRES_VERIFICATION"


#: status -> statuses it may move to.
TRANSITIONS: dict[GeneStatus, frozenset[GeneStatus]] = {
    GeneStatus.ACTIVE: frozenset({GeneStatus.OPTIMIZED, GeneStatus.DEPRECATED, GeneStatus.ARCHIVED}),
    GeneStatus.OPTIMIZED: frozenset({GeneStatus.DEPRECATED, GeneStatus.ARCHIVED}),
    GeneStatus.DEPRECATED: frozenset({GeneStatus.ARCHIVED}),
    GeneStatus.ARCHIVED: frozenset(),
    GeneStatus.REQUIRES_VERIFICATION: frozenset({GeneStatus.ACTIVE, GeneStatus.DEPRECATED, GeneStatus.ARCHIVED}),
}


class IllegalTransition(BadInput):
    """A lifecycle move the table above does not allow (ARCHIVED -> ACTIVE, ...)."""


def check_transition(old: GeneStatus | str, new: GeneStatus | str, what: str = "gene") -> GeneStatus:
    """The new status, or `IllegalTransition` naming both ends."""
    try:
        old_s, new_s = GeneStatus(old), GeneStatus(new)
    except ValueError:
        raise BadInput(f"{what}: unknown status {new!r}; expected one of "
                       f"{', '.join(s.value for s in GeneStatus)}") from None
    if new_s not in TRANSITIONS[old_s]:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[old_s])) or "nothing (final)"
        raise IllegalTransition(f"{what}: illegal status change {old_s.value} -> {new_s.value} "
                                f"(from {old_s.value} allowed: {allowed})")
    return new_s


def gene_hash(kind: str, dtype: str, shape: tuple[int, ...], digest: bytes) -> str:
    """A gene's id: BLAKE3 of its kind, dtype, shape and the BLAKE3 digest of its exact bytes (hex)."""
    return blake3.blake3(_head(kind, dtype, shape) + digest).hexdigest()


def gene_ids(kind: str, dtype: str, shapes: list[tuple[int, ...]], digests: list[bytes]) -> list[bytes]:
    """`gene_hash` of many blocks of one tensor as 32-byte ids (one prefix per run of equal shapes:
    a tensor's blocks share a shape but for the last)."""
    out: list[bytes] = []
    lo = 0
    while lo < len(shapes):
        hi = lo + 1
        while hi < len(shapes) and shapes[hi] == shapes[lo]:
            hi += 1
        head = _head(kind, dtype, shapes[lo])
        out += [blake3.blake3(head + d).digest() for d in digests[lo:hi]]
        lo = hi
    return out


def _head(kind: str, dtype: str, shape: tuple[int, ...]) -> bytes:
    return f"{kind}|{dtype}|{','.join(map(str, shape))}|".encode()


def content_digest(data: bytes | memoryview | np.ndarray) -> bytes:
    """BLAKE3 digest (32 bytes) of exact bytes."""
    if isinstance(data, np.ndarray):
        data = memoryview(np.ascontiguousarray(data).reshape(-1).view(np.uint8))
    return blake3.blake3(data).digest()


@dataclass
class Gene:
    """One gene.

    Attributes:
        hash: content hash (L1 id), see `gene_hash`.
        kind: ``weights`` or ``code``.
        blob: hash of the stored payload (the exact bytes, or a delta against `base`).
        dtype: storage type of the exact bytes (``F32``, ``BF16``, ``Q4_K``, ``py`` for code).
        shape: block shape (``()`` for code).
        level_hashes: level (2, 3) -> hash; 4 -> hex of the MinHash signature (weights only).
        metadata: source model, tensor, canonical name, block index, domain, subtype, role ...
        version: 1 for an ingested gene; parent's version + 1 for an evolved one.
        parent_hash: the gene this one evolved from.
        status: lifecycle status.
        refs: references held by models, delta genes and evolved children.
        base: for a delta-coded gene, the gene the delta applies to.
        attestation: set by the pool: (batch, leaf index).
        location: set by the pool: where its payload is stored (`genome.pool.packs.Location`).
        leaf_format: layout of its signed fields (`LEAF_FORMAT`; 1 for genes signed before
            index schema 2).
    """

    hash: str
    kind: str
    blob: str
    dtype: str
    shape: tuple[int, ...]
    level_hashes: dict[int, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    version: int = 1
    parent_hash: str | None = None
    status: GeneStatus = GeneStatus.ACTIVE
    refs: int = 0
    base: str | None = None
    attestation: Any = None
    location: Any = None
    leaf_format: int = 2

    def transition(self, new: GeneStatus | str) -> None:
        """Move to `new`; `IllegalTransition` if the lifecycle forbids it."""
        self.status = check_transition(self.status, new, f"gene {self.hash[:12]}")

    def signed_fields(self) -> bytes:
        """The immutable part of the gene that attestations sign (see `signed_fields`)."""
        levels = ",".join(f"{k}={v}" for k, v in sorted(self.level_hashes.items()))
        shape = ",".join(map(str, self.shape))
        if self.leaf_format == 1:
            return "\0".join(("gene-v1", self.hash, self.kind, self.blob, self.dtype, shape, levels,
                              metadata_json(self.metadata), str(self.version), self.parent_hash or "",
                              self.base or "")).encode()
        block, rest = split_block(self.metadata)
        return signed_fields(bytes.fromhex(self.hash), bytes.fromhex(self.blob), block,
                             common_digest(self.kind, self.dtype, shape, levels, metadata_json(rest), self.version,
                                           self.parent_hash, self.base))


#: The signed fields of a gene (format 2) are fixed-width, so a batch's leaves can be laid out as
#: one array: this prefix, the gene id, its blob's digest, its block index (int64 LE, -1 for
#: none) and `common_digest` of every other field, which the blocks of a tensor share.
SIGNED_PREFIX = b"gene-v2\0"
SIGNED_SIZE = len(SIGNED_PREFIX) + 32 + 32 + 8 + 32
LEAF_FORMAT = 2


def signed_fields(gene_id: bytes, blob: bytes, block: int | None, common: bytes) -> bytes:
    """`Gene.signed_fields` from plain values: `SIGNED_SIZE` bytes."""
    return SIGNED_PREFIX + gene_id + blob + (-1 if block is None else block).to_bytes(8, "little", signed=True) + common


def common_digest(kind: str, dtype: str, shape: str, levels: str, meta_json: str, version: int = 1,
                  parent: str | None = None, base: str | None = None) -> bytes:
    """BLAKE3 of a gene's signed fields other than its id, blob and block index.

    Args:
        shape: comma-joined dimensions (``"10,384"``); levels: ``"2=...,3=..."`` sorted by level;
        meta_json: canonical JSON of the metadata without its block index (`split_block`).
    """
    fields = ("gene-v2", kind, dtype, shape, levels, meta_json, str(version), parent or "", base or "")
    return blake3.blake3("\0".join(fields).encode()).digest()


def split_block(metadata: dict[str, Any]) -> tuple[int | None, dict[str, Any]]:
    """(block index, the rest of the metadata): the index keeps the block index in its own column
    and the rest once per tensor. Only a non-negative int ``block`` is split off, so the split is
    one-to-one."""
    block = metadata.get("block")
    if type(block) is int and block >= 0:
        return block, {k: v for k, v in metadata.items() if k != "block"}
    return None, metadata


def join_block(block: int | None, rest: dict[str, Any]) -> dict[str, Any]:
    """Inverse of `split_block`."""
    return rest if block is None else {"block": block, **rest}


def metadata_json(metadata: dict[str, Any]) -> str:
    """Canonical JSON of gene metadata (sorted keys, no spaces)."""
    return json.dumps(metadata, sort_keys=True, separators=(",", ":"), default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def evolve(gene: Gene, new_data: bytes | np.ndarray, reason: str = "", dtype: str | None = None) -> Gene:
    """A new version of `gene` holding `new_data`; the parent becomes DEPRECATED.

    Args:
        gene: the parent (ACTIVE or OPTIMIZED; anything else raises `IllegalTransition`).
        new_data: the new exact bytes (or an array, taken as its bytes).
        reason: why, kept in the child's metadata.
        dtype: storage type of `new_data` (default: the parent's).

    Returns:
        The child: version + 1, parent_hash = gene.hash, status ACTIVE, refs 0, no attestation.
    """
    shape = tuple(new_data.shape) if isinstance(new_data, np.ndarray) and gene.kind == "weights" else gene.shape
    digest = content_digest(new_data if isinstance(new_data, np.ndarray) else memoryview(new_data))
    new_dtype = dtype or gene.dtype
    child_hash = gene_hash(gene.kind, new_dtype, shape, digest)
    if child_hash == gene.hash:
        raise BadInput(f"gene {gene.hash[:12]}: evolve() needs different data (the new data is identical)")
    gene.transition(GeneStatus.DEPRECATED)
    meta = {**gene.metadata, "evolved_from": gene.hash, "reason": reason}
    return replace(gene, hash=child_hash, blob=digest.hex(), dtype=new_dtype, shape=shape, level_hashes={},
                   metadata=meta, version=gene.version + 1, parent_hash=gene.hash, status=GeneStatus.ACTIVE,
                   refs=0, base=None, attestation=None, location=None, leaf_format=LEAF_FORMAT)
