"""Genes: lifecycle transitions, evolve(), Merkle proofs, attestation."""

from __future__ import annotations

import numpy as np
import pytest

from genome.errors import BadInput
from genome.pool import merkle
from genome.pool.gene import (
    Gene,
    GeneStatus,
    IllegalTransition,
    content_digest,
    evolve,
    gene_hash,
)


def _gene(values: np.ndarray) -> Gene:
    d = content_digest(values)
    return Gene(gene_hash("weights", "F32", values.shape, d), "weights", d.hex(), "F32", values.shape,
                metadata={"tensor": "w", "block": 0})


def test_lifecycle_moves_forward_only():
    g = _gene(np.ones(4, np.float32))
    assert g.status is GeneStatus.ACTIVE
    g.transition("OPTIMIZED")
    g.transition(GeneStatus.DEPRECATED)
    with pytest.raises(IllegalTransition, match="DEPRECATED -> OPTIMIZED"):
        g.transition("OPTIMIZED")
    g.transition("ARCHIVED")
    for target in ("ACTIVE", "OPTIMIZED", "DEPRECATED", "ARCHIVED"):
        with pytest.raises(IllegalTransition, match="ARCHIVED is final|nothing"):
            g.transition(target)
    with pytest.raises(BadInput, match="unknown status"):
        _gene(np.zeros(2, np.float32)).transition("SHINY")
    rv = _gene(np.zeros(3, np.float32))
    rv.status = GeneStatus.REQUIRES_VERIFICATION
    rv.transition("ACTIVE")  # a reviewer accepts it
    assert rv.status is GeneStatus.ACTIVE


def test_evolve_chains_versions_and_deprecates_the_parent():
    parent = _gene(np.arange(6, dtype=np.float32).reshape(2, 3))
    child = evolve(parent, np.arange(6, dtype=np.float32).reshape(2, 3) + 1, reason="finetune")
    assert (child.version, child.parent_hash, child.status) == (2, parent.hash, GeneStatus.ACTIVE)
    assert parent.status is GeneStatus.DEPRECATED and child.hash != parent.hash
    assert child.metadata["reason"] == "finetune" and child.shape == (2, 3)
    grandchild = evolve(child, np.zeros((2, 3), np.float32))
    assert grandchild.version == 3 and grandchild.parent_hash == child.hash
    with pytest.raises(IllegalTransition):  # a deprecated gene cannot evolve again
        evolve(parent, np.ones((2, 3), np.float32))
    with pytest.raises(BadInput, match="identical"):
        evolve(grandchild, np.zeros((2, 3), np.float32))


def test_merkle_proofs_for_every_leaf_and_tamper_detection():
    for n in (1, 2, 5, 8, 13):
        leaves = [merkle.leaf_hash(f"gene-{i}".encode()) for i in range(n)]
        root = merkle.root(leaves)
        for i in range(n):
            assert merkle.verify(leaves[i], merkle.proof(leaves, i), root)
        assert not merkle.verify(merkle.leaf_hash(b"intruder"), merkle.proof(leaves, 0), root)
        if n > 1:
            assert not merkle.verify(leaves[0], merkle.proof(leaves, 1), root)
    assert merkle.root([]) == merkle.EMPTY_ROOT


def test_signed_fields_cover_metadata_but_not_status_or_refs():
    g = _gene(np.ones(4, np.float32))
    before = g.signed_fields()
    g.status, g.refs = GeneStatus.OPTIMIZED, 7
    assert g.signed_fields() == before  # lifecycle and counts change without re-signing
    g.metadata["tensor"] = "other"
    assert g.signed_fields() != before
