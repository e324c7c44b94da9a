"""`Ledger`: the signed record of an open pool's genes, batch by batch, and the pool-wide Merkle root.

Each ingest signs one batch (`genome.pool.attest`): the Merkle root of its new genes' leaves,
kept as one packed BLOB of 32-byte leaf hashes in `batches.leaves`. The ledger checks a gene's
fields against its signed leaf and a batch's leaves against its signed root (each once a session,
until `forget`), builds a gene's `Attestation`, and gives the Merkle root over all genes of the
pool (sorted by id) with inclusion proofs.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from genome.pool import attest, merkle, store
from genome.pool.gene import LEAF_FORMAT, Gene


class Ledger:
    """The batches, leaves and signatures of the pool at `path` whose index is `db`."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self.db, self.path = db, path
        self._batches: dict[int, str | None] = {}  # batch -> its problem (None: holds)
        self._formats: dict[int, int] = {}  # batch -> leaf format
        self._checked: set[str] = set()  # genes whose attestation was verified in this session

    def forget(self) -> None:
        """Drop what this session verified, so the next checks run afresh."""
        self._checked.clear()
        self._batches.clear()

    def leaf_format(self, batch: int) -> int:
        """The signed-field layout of a batch's genes (`LEAF_FORMAT` for an unknown batch)."""
        fmt = self._formats.get(batch)
        if fmt is None:
            row = self.db.execute("SELECT format FROM batches WHERE id = ?", (batch,)).fetchone()
            fmt = self._formats[batch] = row[0] if row else LEAF_FORMAT
        return fmt

    def leaves(self, batch: int) -> list[bytes]:
        """A batch's Merkle leaves, in order (none for an unknown batch)."""
        row = self.db.execute("SELECT leaves FROM batches WHERE id = ?", (batch,)).fetchone()
        return [] if row is None else store.split32(row[0])

    def attestation(self, g: Gene) -> attest.Attestation:
        """The gene's attestation: leaf, inclusion proof in its batch, the signed batch root."""
        batch, leaf = g.attestation
        root, signature, public, count, packed = self.db.execute(
            "SELECT root, signature, public_key, count, leaves FROM batches WHERE id = ?", (batch,)).fetchone()
        leaves = store.split32(packed)
        return attest.Attestation(g.hash, batch, leaf, leaves[leaf].hex(), tuple(merkle.proof(leaves, leaf)),
                                  root, count, signature, public)

    def batch_problem(self, batch: int) -> str | None:
        """Why a batch's attestation fails (its stored leaves no longer hash to its root, or the
        root's signature does not verify with the pool's key), None if it holds (cached)."""
        if batch not in self._batches:
            row = self.db.execute("SELECT root, signature, public_key, count, leaves FROM batches WHERE id = ?",
                                  (batch,)).fetchone()
            problem = "it is not in the index"
            if row is not None:
                root, signature, public, count, packed = row
                leaves = store.split32(packed)
                if len(leaves) != count or merkle.root(leaves) != root:
                    problem = "its leaves no longer hash to the signed root"
                elif public != attest.public_key(self.path) or not attest.check_signature(
                        public, batch, root, count, signature):
                    problem = "the signature does not verify with the pool's public key"
                else:
                    problem = None
            self._batches[batch] = problem
        return self._batches[batch]

    def check_attestation(self, g: Gene) -> None:
        """`PoolCorrupt` unless the gene's fields match its signed leaf in a valid batch."""
        if g.hash in self._checked:
            return
        batch, leaf = g.attestation
        row = self.db.execute("SELECT substr(leaves, 32 * ? + 1, 32) FROM batches WHERE id = ?", (leaf, batch)).fetchone()
        if row is None or merkle.leaf_hash(g.signed_fields()) != row[0]:
            raise store.PoolCorrupt(f"gene {g.hash[:16]}: its index row does not match what was signed "
                                    f"(batch {batch}, leaf {leaf}); the index was changed")
        problem = self.batch_problem(batch)
        if problem is not None:
            raise store.PoolCorrupt(f"gene {g.hash[:16]}: attestation batch {batch}: {problem}")
        self._checked.add(g.hash)

    # ---- pool-wide -------------------------------------------------------------------------
    def leaves_by_gene(self) -> tuple[list[str], list[bytes]]:
        """Every gene id (sorted) and its signed leaf hash."""
        batches = {b: packed for b, packed in self.db.execute("SELECT id, leaves FROM batches")}
        rows = self.db.execute("SELECT hash, batch, leaf FROM genes ORDER BY hash").fetchall()
        return [h.hex() for h, _, _ in rows], [batches.get(b, b"")[32 * i:32 * i + 32] for _, b, i in rows]

    def merkle_root(self) -> str:
        """Merkle root over all genes (sorted by id; leaf = the gene's signed leaf)."""
        return merkle.root(self.leaves_by_gene()[1])

    def inclusion_proof(self, g: Gene) -> dict[str, Any]:
        """Proof that gene `g` is in the pool's current Merkle root."""
        ids, leaves = self.leaves_by_gene()
        i = ids.index(g.hash)
        return {"gene": g.hash, "leaf": leaves[i].hex(), "index": i, "proof": merkle.proof(leaves, i),
                "root": merkle.root(leaves)}
