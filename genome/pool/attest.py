"""Attestation: Ed25519 signatures (the `cryptography` package) over gene hash + metadata.

Each ingest signs one batch: the Merkle root of its new genes' leaves, where a gene's leaf is the
hash of its immutable fields (`Gene.signed_fields`: hash, kind, blob, dtype, shape, level hashes,
metadata, version, parent, delta base). A gene's attestation is the batch signature plus its
Merkle inclusion proof, so one signature covers thousands of genes (an Ed25519 signature costs
about 40 us here; a gene-by-gene signature would dominate the ingest) while every gene can
still be checked alone. The leaf hashes are kept, so a batch stays verifiable after `compact`
removed some of its genes.

Keys live in the pool: ``keys/ed25519.key`` (raw 32-byte private key, mode 0600) and
``keys/ed25519.pub`` (hex public key).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from genome.errors import BadInput
from genome.pool import merkle

KEY_FILE = Path("keys") / "ed25519.key"
PUB_FILE = Path("keys") / "ed25519.pub"
_CONTEXT = b"cogitans-genepool-batch-v1|"


def create_keys(pool: Path) -> str:
    """Generate the pool's key pair; returns the public key (hex)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    folder = Path(pool) / "keys"
    folder.mkdir(mode=0o700, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    fd = os.open(Path(pool) / KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(raw)
    pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()
    (Path(pool) / PUB_FILE).write_text(pub + "\n")
    return pub


def public_key(pool: Path) -> str:
    """The pool's public key (hex)."""
    try:
        return (Path(pool) / PUB_FILE).read_text().strip()
    except OSError:
        raise BadInput(f"gene pool {pool} has no public key ({PUB_FILE})") from None


def _private(pool: Path):  # -> Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = Path(pool) / KEY_FILE
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        raw = path.read_bytes()
    except OSError:
        raise BadInput(f"gene pool {pool} has no private key ({KEY_FILE}); it cannot sign new genes") from None
    if mode & 0o077:
        raise BadInput(f"private key {path} has mode {oct(mode)}; it must be readable by its owner only (0600)")
    if len(raw) != 32:
        raise BadInput(f"private key {path} holds {len(raw)} bytes, expected 32")
    return Ed25519PrivateKey.from_private_bytes(raw)


def batch_message(batch: int, root: str, count: int) -> bytes:
    return _CONTEXT + f"{batch}|{count}|{root}".encode()


def sign_batch(pool: Path, batch: int, leaves: list[bytes]) -> tuple[str, str]:
    """(Merkle root hex, signature hex) of a batch of leaves."""
    root = merkle.root(leaves)
    return root, _private(pool).sign(batch_message(batch, root, len(leaves))).hex()


def signature_ok(public_hex: str, message: bytes, signature_hex: str) -> bool:
    """True if `signature_hex` is the Ed25519 signature of `message` by the key `public_hex`."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex)).verify(bytes.fromhex(signature_hex), message)
        return True
    except (InvalidSignature, ValueError):
        return False


def check_signature(public_hex: str, batch: int, root: str, count: int, signature_hex: str) -> bool:
    """True if `signature_hex` is the key's signature of this batch."""
    return signature_ok(public_hex, batch_message(batch, root, count), signature_hex)


@dataclass(frozen=True)
class Attestation:
    """A gene's attestation: its leaf, the inclusion proof, and the signed batch root."""

    gene: str
    batch: int
    leaf_index: int
    leaf: str
    proof: tuple[tuple[str, str], ...]
    root: str
    count: int
    signature: str
    public_key: str

    def verify(self, signed_fields: bytes | None = None) -> bool:
        """True if the proof leads to the signed root (and `signed_fields` give this leaf)."""
        leaf = bytes.fromhex(self.leaf)
        if signed_fields is not None and merkle.leaf_hash(signed_fields) != leaf:
            return False
        return merkle.verify(leaf, self.proof, self.root) and check_signature(
            self.public_key, self.batch, self.root, self.count, self.signature)
