"""Signed batches of shared entries, and the checks a receiver runs before storing one.

A colony's identity is an Ed25519 key pair (the `cryptography` package). A batch holds N coded
entries (swarm/sharing/codec.py) with their authors' agent ids and fitness reports; its records
(one per entry) are the leaves of a SHA-256 Merkle tree, and the colony signs the header
(colony, sequence number, step, declared width, count, Merkle root): one signature covers every
entry, and the receiver recomputes the root from the records, so a changed record or root is a
bad proof and a changed header a bad signature.

`check` returns the reason a batch must be rejected (None when it is fine): bad proof, bad
signature, unknown identity, a width that does not match the declared or canonical one, NaN or
infinite values, references outside the usable part of the registry.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import torch

from genome.pool import merkle
from genome.pool.attest import signature_ok
from swarm.sharing.codec import PackedEntries
from swarm.sharing.registry import ALGO

_CONTEXT = b"cogitans-experience-batch-v1|"


class Identity:
    """A colony's Ed25519 key pair, made from 32 seed bytes (so a seeded run is reproducible)."""

    def __init__(self, seed: bytes):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        self._key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed).digest())
        self.public_key = self._key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()

    def sign(self, message: bytes) -> str:
        return self._key.sign(message).hex()


@dataclass(frozen=True)
class SharedBatch:
    """One colony's shared entries of one step. N entries; `fitness` (N,) float32, `agent_id` (N,) int64."""

    colony: int
    public_key: str
    seq: int
    step: int
    width: int  # declared canonical width of the entries
    entries: PackedEntries
    agent_id: torch.Tensor
    fitness: torch.Tensor
    root: str = ""
    signature: str = ""

    def records(self) -> list[bytes]:
        """One registry record per entry: who shared it, when, and its coded content."""
        head = f"{self.colony}|{self.seq}|{self.step}|{self.width}|".encode()
        return [head + i.to_bytes(4, "little") + self.entries.entry_bytes(i)
                + int(self.agent_id[i]).to_bytes(8, "little", signed=True)
                + self.fitness[i:i + 1].numpy().astype("<f4").tobytes() for i in range(len(self.entries))]

    def records_root(self) -> str:
        return merkle.root([merkle.leaf_hash(r, ALGO) for r in self.records()], ALGO)

    def message(self) -> bytes:
        return _CONTEXT + f"{self.colony}|{self.seq}|{self.step}|{self.width}|{len(self.entries)}|{self.root}".encode()

    @property
    def nbytes(self) -> int:
        """Bytes on the wire: coded entries, agent ids, float16 fitness, root, signature, header."""
        return self.entries.nbytes + 8 * len(self.agent_id) + 2 * len(self.fitness) + 32 + 64 + 32

    def signed(self, identity: Identity) -> SharedBatch:
        """This batch with its Merkle root and the identity's signature filled in."""
        rooted = replace(self, root=self.records_root(), public_key=identity.public_key)
        return replace(rooted, signature=identity.sign(rooted.message()))


def check(batch: SharedBatch, known_keys: dict[int, str], width: int, registry_size: int, window: int) -> str | None:
    """Why `batch` must be rejected, or None.

    Args:
        batch: the received batch.
        known_keys: colony -> registered public key (hex).
        width: the canonical width every shared entry must have.
        registry_size: records in the registry; references must be among the last `window`.
    """
    e, n = batch.entries, len(batch.entries)
    if batch.width != width:
        return f"declared width {batch.width} is not the canonical width {width}"
    if e.width != batch.width or e.bits.shape != (n, 2, -(-batch.width // 8)) or e.scale.shape != (n, 2):
        return f"entries of width {e.width} with bits {tuple(e.bits.shape)} do not match the declared width {batch.width}"
    if len(batch.agent_id) != n or len(batch.fitness) != n:
        return f"{n} entries but {len(batch.agent_id)} agent ids and {len(batch.fitness)} fitness values"
    if not (bool(torch.isfinite(e.scale).all()) and bool(torch.isfinite(batch.fitness).all())):
        return "NaN or infinite values in scales or fitness"
    if batch.records_root() != batch.root:
        return "bad proof: the records do not hash to the batch's Merkle root"
    if known_keys.get(batch.colony) != batch.public_key:
        return f"unknown identity for colony {batch.colony}"
    if not signature_ok(batch.public_key, batch.message(), batch.signature):
        return "bad signature"
    ok_ref = (e.ref == -1) | ((e.ref >= registry_size - window) & (e.ref < registry_size))
    if not bool(ok_ref.all()):
        return f"reference outside the usable registry records [{max(0, registry_size - window)}, {registry_size})"
    return None
