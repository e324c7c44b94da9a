"""The experience registry: an append-only log of shared entries under a SHA-256 Merkle tree.

Every accepted shared batch appends one record (bytes) per entry. Anyone holding the root can
check that a record is in the registry from its inclusion proof (`verify`), compare another
colony's root for a prefix of the log (`agrees_with`), and `audit` the stored records against
their leaf hashes: a changed byte in a stored record changes its leaf and is reported.

The tree is rebuilt lazily (once per append, O(n) hashes), and proofs then come from the cached
levels in O(log n) each.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from genome.pool import merkle

ALGO = "sha256"


class ExperienceRegistry:
    """Append-only records with SHA-256 leaves; `root`, `proof`, `verify`, `audit`."""

    def __init__(self) -> None:
        self._records: list[bytes] = []
        self._leaves: list[bytes] = []
        self._tree: list[list[bytes]] | None = None

    def __len__(self) -> int:
        return len(self._records)

    def append(self, records: Sequence[bytes]) -> range:
        """Append records; returns their indices."""
        start = len(self._records)
        self._records.extend(records)
        self._leaves.extend(merkle.leaf_hash(r, ALGO) for r in records)
        self._tree = None
        return range(start, len(self._records))

    def record(self, index: int) -> bytes:
        return self._records[index]

    def _levels(self) -> list[list[bytes]]:
        if self._tree is None:
            self._tree = merkle.levels(self._leaves, ALGO)
        return self._tree

    def root(self, count: int | None = None) -> str:
        """Hex root of the first `count` records (all of them by default)."""
        if count is None or count == len(self._leaves):
            return merkle.empty_root(ALGO) if not self._leaves else self._levels()[-1][0].hex()
        if not 0 <= count <= len(self._leaves):
            raise ValueError(f"registry holds {len(self._leaves)} records, asked for a root of {count}")
        return merkle.root(self._leaves[:count], ALGO)

    def proof(self, index: int) -> list[tuple[str, str]]:
        """Inclusion proof of record `index` against `root()`."""
        return merkle.proof_from_levels(self._levels(), index)

    @staticmethod
    def verify(record: bytes, proof: Sequence[tuple[str, str]], root: str) -> bool:
        """True if `record` with `proof` hashes up to `root`."""
        try:
            return merkle.verify(merkle.leaf_hash(record, ALGO), proof, root, ALGO)
        except (ValueError, TypeError):  # a malformed proof (bad hex, wrong shape) proves nothing
            return False

    def agrees_with(self, root: str, count: int) -> bool:
        """True if another colony's `root` over `count` records matches this log's prefix."""
        return 0 <= count <= len(self) and self.root(count) == root

    def audit(self) -> list[int]:
        """Indices of stored records that no longer hash to their leaf (tampered with)."""
        return [i for i, (r, leaf) in enumerate(zip(self._records, self._leaves, strict=True))
                if merkle.leaf_hash(r, ALGO) != leaf]

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Records and leaves as tensors (a checkpoint loads with `weights_only`).

        `data` (total bytes,) uint8 holds the records end to end, `lengths` (n,) int64 their sizes,
        `leaves` (n, 32) uint8 their stored leaf hashes: kept rather than recomputed on load, so
        `audit` still reports a record changed before the checkpoint.
        """
        lengths = torch.tensor([len(r) for r in self._records], dtype=torch.int64)
        data = _as_tensor(b"".join(self._records))
        leaves = _as_tensor(b"".join(self._leaves)).view(-1, 32)
        return {"data": data, "lengths": lengths, "leaves": leaves}

    def load_state_dict(self, d: dict[str, torch.Tensor]) -> None:
        lengths, data, leaves = d["lengths"], d["data"], d["leaves"]
        if int(lengths.sum()) != len(data) or leaves.shape != (len(lengths), 32):
            raise ValueError(f"registry state of {len(lengths)} records does not match its {len(data)} bytes "
                             f"and {tuple(leaves.shape)} leaves")
        raw = data.numpy().tobytes()
        ends = lengths.cumsum(0).tolist()
        self._records = [raw[a:b] for a, b in zip([0, *ends[:-1]], ends)]
        self._leaves = [bytes(row) for row in leaves.numpy()]
        self._tree = None


def _as_tensor(raw: bytes) -> torch.Tensor:
    """(len(raw),) uint8 copy of `raw` (empty allowed, unlike `torch.frombuffer`)."""
    return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8).copy())
