"""GenePool on tiny models: every dedup level, bit-identical export, lossy L4 errors, compact,
evolve, attestation and tamper detection."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from safetensors.torch import save_file

from genome.errors import BadInput
from genome.pool import (
    DedupOptions,
    GenePool,
    GeneStatus,
    IllegalTransition,
    PoolCorrupt,
    compact,
    merkle,
    verify,
)
from tests.genome.conftest import write_tiny_bert

BLOCK = 256  # small blocks: a (64, 64) tensor is 16 genes of (4, 64)


def _bf16_values(shape: tuple[int, ...], seed: int, scale: float = 0.05) -> torch.Tensor:
    """Random float32 values that BF16 holds exactly."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g) * scale).to(torch.bfloat16).float()


def _model(path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return path


@pytest.fixture
def base_tensors() -> dict[str, torch.Tensor]:
    return {"blk.0.attn_q.weight": _bf16_values((64, 64), 1), "blk.0.ffn_up.weight": _bf16_values((64, 64), 2),
            "blk.0.attn_norm.weight": (1 + _bf16_values((64,), 3, 0.1)).to(torch.bfloat16).float()}


def _same_tensors(a: Path, b: Path) -> bool:
    """Same names, dtypes, shapes and exact bytes."""
    from genome.formats import open_model

    with open_model(a) as x, open_model(b) as y:
        return [(i.name, i.dtype, i.shape) for i in x] == [(i.name, i.dtype, i.shape) for i in y] and all(
            np.array_equal(x.raw(n), y.raw(n)) for n in x.names())


def test_every_level_collapses_what_it_should_and_exports_bit_identical(tmp_path, base_tensors):
    pool = GenePool.init(tmp_path / "pool", block=BLOCK)
    up = base_tensors["blk.0.ffn_up.weight"]
    variants = {
        "base": base_tensors,
        "bf16": {k: v.to(torch.bfloat16) for k, v in base_tensors.items()},  # same values: L2
        "l3": {**base_tensors, "blk.0.ffn_up.weight": up * (1 + 1e-7)},  # rounding noise: same behaviour
        "l4": {**base_tensors, "blk.0.ffn_up.weight": up + 0.01 * up.abs().mean() * torch.randn(64, 64,
                                                                                                 generator=torch.Generator().manual_seed(9))},
        "permuted": {**base_tensors, "blk.0.ffn_up.weight": up[torch.randperm(64, generator=torch.Generator().manual_seed(4))]},
    }
    reports = {}
    for name, tensors in variants.items():
        reports[name] = pool.ingest(_model(tmp_path / f"{name}.safetensors", tensors))
    base, bf16, l3, l4, perm = (reports[n] for n in variants)
    assert base.genes_in == 33 and base.unique(4) == 33 and base.collapsed == {1: 0, 2: 0, 3: 0, 4: 0}
    assert bf16.unique(1) == 33 and bf16.unique(2) == 0 and bf16.bytes_after == 0  # dtype-independent
    assert l3.collapsed[1] == 17 and l3.collapsed[3] == 16 and l3.level_deltas == 16
    assert l4.collapsed[1] == 17 and l4.collapsed[4] == 16 and 0 < l4.bytes_after < 0.9 * up.numel() * 4
    assert perm.permuted_tensors == 1 and perm.collapsed[2] == 16 and perm.bytes_after < 1000
    for name in variants:  # lossless everywhere: bit-identical tensors back
        out = tmp_path / f"{name}-out.safetensors"
        result = pool.export(name, out)
        assert result["lossy"] == [] and _same_tensors(tmp_path / f"{name}.safetensors", out)
    assert verify(pool)["clean"]


def test_lossy_l4_replaces_blocks_and_reports_the_measured_error(tmp_path, base_tensors):
    pool = GenePool.init(tmp_path / "pool", block=BLOCK)
    pool.ingest(_model(tmp_path / "a.safetensors", base_tensors))
    up = base_tensors["blk.0.ffn_up.weight"]
    noisy = up + 0.01 * up.abs().mean() * torch.randn(64, 64, generator=torch.Generator().manual_seed(5))
    report = pool.ingest(_model(tmp_path / "b.safetensors", {**base_tensors, "blk.0.ffn_up.weight": noisy}),
                         options=DedupOptions(lossy=True))
    assert report.collapsed[4] == 16 and report.bytes_after == 0
    result = pool.export("b", tmp_path / "b-out.safetensors")
    true_error = float((noisy - up).norm() / noisy.norm())
    assert [t["name"] for t in result["lossy"]] == ["blk.0.ffn_up.weight"]
    assert result["lossy"][0]["rel_error"] == pytest.approx(true_error, rel=1e-3)
    out = load_file(str(tmp_path / "b-out.safetensors"))
    np.testing.assert_array_equal(out["blk.0.ffn_up.weight"], up.numpy())  # the substitute's values


def test_norm_weights_alike_in_ternary_need_verification(tmp_path, base_tensors):
    """LayerNorm gains near 1 are all +1 in ternary (Jaccard 1): the shadow execution keeps them apart."""
    pool = GenePool.init(tmp_path / "pool", block=BLOCK)
    pool.ingest(_model(tmp_path / "a.safetensors", base_tensors))
    other = {**base_tensors, "blk.0.attn_norm.weight": 1 + _bf16_values((64,), 11, 0.1)}
    report = pool.ingest(_model(tmp_path / "b.safetensors", other), options=DedupOptions(deltas=False))
    assert report.requires_verification == 1 and report.collapsed[4] == 0
    statuses = dict(pool.db.execute("SELECT status, COUNT(*) FROM genes GROUP BY status").fetchall())
    assert statuses["REQUIRES_VERIFICATION"] == 1
    h = pool.db.execute("SELECT hash FROM genes WHERE status = 'REQUIRES_VERIFICATION'").fetchone()[0].hex()
    assert pool.set_status(h, "ACTIVE").status is GeneStatus.ACTIVE


def test_reingest_is_all_l1_and_gguf_export_works(tmp_path):
    model = write_tiny_bert(tmp_path / "tb", hidden=64, inter=128)
    pool = GenePool.init(tmp_path / "pool", block=BLOCK)
    first = pool.ingest(model, name="a")
    again = pool.ingest(model, name="b", options=DedupOptions(max_level=1))
    assert first.genes_in == again.genes_in == again.collapsed[1] and again.bytes_after == 0
    assert pool.export("b", tmp_path / "b.gguf")["kind"] == "gguf"
    from genome.formats import open_model

    with open_model(model) as src, open_model(tmp_path / "b.gguf") as out:
        assert [i.name for i in src] == [i.name for i in out]
        assert all(np.array_equal(src.raw(n), out.raw(n)) for n in src.names())
    with pytest.raises(BadInput, match="already holds a model named 'a'"):
        pool.ingest(model, name="a")


def test_bulk_exact_ingest_writes_what_the_cascade_writes(tmp_path, base_tensors):
    """max_level=1 without deltas takes the bulk path; its genes, leaves, blobs and blocks are the
    rows the block-by-block cascade writes (repeated blocks within a tensor included), and they verify."""
    tensors = {**base_tensors, "blk.0.ffn_down.weight": torch.zeros((64, 64))}  # 16 identical blocks
    model = _model(tmp_path / "m.safetensors", tensors)
    rows = {}
    for label, opts in (("bulk", DedupOptions(max_level=1, deltas=False)), ("cascade", DedupOptions(max_level=1))):
        pool = GenePool.init(tmp_path / label, block=BLOCK)
        report = pool.ingest(model, name="m", options=opts)
        assert report.genes_in == 49 and report.full_genes == 34 and report.collapsed[1] == 15
        assert report.bytes_after == pool.db.execute("SELECT stored FROM models").fetchone()[0] > 0
        rows[label] = (
            sorted(pool.db.execute("SELECT hash, kind, blob, base, dtype, shape, nbytes, l2, l3, sig, json, block, "
                                   "version, parent, status, refs, length, size, codec FROM genes g "
                                   "JOIN metas m ON m.id = g.meta")),
            sorted(pool.ledger.leaves(1)),
            pool.blocks(1))
        again = pool.ingest(model, name="again", options=DedupOptions(max_level=1, deltas=False))
        assert again.collapsed[1] == 49 and again.bytes_after == 0
        assert verify(pool)["clean"]
        for h in pool.ledger.leaves_by_gene()[0]:
            pool.ledger.check_attestation(pool.gene(h))
        pool.export("again", tmp_path / f"{label}.safetensors")
        assert _same_tensors(model, tmp_path / f"{label}.safetensors")
        pool.close()
    assert rows["bulk"] == rows["cascade"]


def test_compact_frees_what_only_a_removed_model_used(tmp_path, base_tensors):
    pool = GenePool.init(tmp_path / "pool", block=BLOCK)
    pool.ingest(_model(tmp_path / "a.safetensors", base_tensors))
    other = {k: v + 1 for k, v in base_tensors.items()}
    pool.ingest(_model(tmp_path / "b.safetensors", other), options=DedupOptions(deltas=False, max_level=1))
    assert pool.db.execute("SELECT COUNT(*) FROM genes").fetchone()[0] == 66
    assert pool.remove("b") == 33
    result = compact(pool)
    assert result["genes_removed"] == 33 and result["blobs_removed"] == 33
    assert result["bytes_after"] < result["bytes_before"]
    assert len(list((tmp_path / "pool" / "objects").glob("pack-*.pack"))) == 1
    assert verify(pool)["clean"]
    pool.export("a", tmp_path / "a-out.safetensors")
    assert _same_tensors(tmp_path / "a.safetensors", tmp_path / "a-out.safetensors")


def test_evolve_repoints_models_and_keeps_the_version_chain(tmp_path, base_tensors):
    pool = GenePool.init(tmp_path / "pool", block=BLOCK)
    pool.ingest(_model(tmp_path / "a.safetensors", base_tensors))
    model, idx = pool.db.execute("SELECT model, idx FROM tensors WHERE name = 'blk.0.attn_norm.weight'").fetchone()
    [h] = pool.tensor_genes(model, idx)  # the norm gain (64,): one gene
    child = pool.evolve(h, np.full(64, 1.0, np.float32), reason="reset gain")
    parent = pool.gene(h)
    assert (child.version, child.parent_hash, parent.status) == (2, h, GeneStatus.DEPRECATED)
    assert child.refs == 1 and parent.refs == 1  # the model moved; the version holds its parent
    out = load_file(str(Path(pool.export("a", tmp_path / "a2.safetensors")["out"])))
    np.testing.assert_array_equal(out["blk.0.attn_norm.weight"], np.ones(64, np.float32))
    assert verify(pool)["clean"]
    with pytest.raises(IllegalTransition):
        pool.set_status(h, "ACTIVE")


def test_attestation_inclusion_proofs_and_key_file_mode(tmp_path, base_tensors):
    pool = GenePool.init(tmp_path / "pool", block=BLOCK)
    pool.ingest(_model(tmp_path / "a.safetensors", base_tensors))
    key = tmp_path / "pool" / "keys" / "ed25519.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    h = pool.db.execute("SELECT hash FROM genes LIMIT 1 OFFSET 5").fetchone()[0].hex()
    att = pool.ledger.attestation(pool.gene(h))
    assert att.verify(pool.gene(h).signed_fields())
    assert not att.verify(b"someone else's metadata")
    proof = pool.ledger.inclusion_proof(pool.gene(h))
    assert proof["root"] == pool.ledger.merkle_root()
    assert merkle.verify(bytes.fromhex(proof["leaf"]), proof["proof"], proof["root"])
    os.chmod(key, 0o644)
    with pytest.raises(BadInput, match="0600"):
        pool.ingest(_model(tmp_path / "c.safetensors", {"x.weight": torch.ones(3)}))


def _tamper_pack(pool_dir: Path, offset_from_end: int = 100) -> None:
    pack = next((pool_dir / "objects").glob("pack-*.pack"))
    data = bytearray(pack.read_bytes())
    data[-offset_from_end] ^= 0xFF
    pack.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["blob byte", "truncated pack", "signature", "gene metadata"])
def test_tampering_is_caught_on_read_and_by_verify(tmp_path, base_tensors, damage):
    src = _model(tmp_path / "a.safetensors", base_tensors)
    GenePool.init(tmp_path / "pool", block=BLOCK).ingest(src)
    if damage == "blob byte":
        _tamper_pack(tmp_path / "pool")
    elif damage == "truncated pack":
        pack = next((tmp_path / "pool" / "objects").glob("pack-*.pack"))
        pack.write_bytes(pack.read_bytes()[:-500])
    else:
        db = sqlite3.connect(tmp_path / "pool" / "index.sqlite")
        if damage == "signature":
            sig = db.execute("SELECT signature FROM batches").fetchone()[0]
            db.execute("UPDATE batches SET signature = ?", (("0" if sig[0] != "0" else "1") + sig[1:],))
        else:
            db.execute("UPDATE metas SET json = ? WHERE id = 1", (json.dumps({"source": "forged"}),))
        db.commit()
        db.close()
    pool = GenePool(tmp_path / "pool")
    result = verify(pool)
    assert not result["clean"] and result["errors"]
    with pytest.raises(PoolCorrupt):
        pool.export("a", tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()


def test_bad_inputs_leave_the_pool_unchanged(tmp_path, base_tensors):
    pool = GenePool.init(tmp_path / "pool", block=BLOCK)
    pool.ingest(_model(tmp_path / "a.safetensors", base_tensors))
    bad = {**base_tensors, "blk.1.ffn_up.weight": torch.tensor([1.0, float("nan"), 2.0])}
    with pytest.raises(BadInput, match="blk.1.ffn_up.weight.*NaN"):
        pool.ingest(_model(tmp_path / "nan.safetensors", bad))
    up = torch.full((64, 64), 2.0)
    up[63, 5] = float("inf")
    with pytest.raises(BadInput, match="blk.1.ffn_up.weight.* 1 NaN or infinite"):  # the bulk path checks too
        pool.ingest(_model(tmp_path / "inf.safetensors", {**base_tensors, "blk.1.ffn_up.weight": up}),
                    options=DedupOptions(max_level=1, deltas=False))
    assert pool.db.execute("SELECT COUNT(*) FROM models").fetchone()[0] == 1
    assert len(list((tmp_path / "pool" / "objects").iterdir())) == 1  # no half-written pack
    assert verify(pool)["clean"] and verify(pool)["notes"] == []
    pool.close()
    db = sqlite3.connect(tmp_path / "pool" / "index.sqlite")
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    with pytest.raises(BadInput, match="newer Cogitans"):
        GenePool(tmp_path / "pool")
    with pytest.raises(BadInput, match="not a gene pool"):
        GenePool(tmp_path)
    with pytest.raises(BadInput, match="not empty"):
        GenePool.init(tmp_path / "pool")


def test_quantised_gguf_is_deduplicated_on_exact_bytes_and_rebuilt(tmp_path):
    """Q8_0, TQ2_0 and Q4_K tensors are cut in whole rows of stored bytes (L1 only) and come back exact."""
    from genome.formats import open_model
    from tests.genome.test_gguf import write_fixture

    src = write_fixture(tmp_path / "q.gguf")
    pool = GenePool.init(tmp_path / "pool", block=BLOCK)
    first = pool.ingest(src, name="q")
    again = pool.ingest(src, name="q2")
    assert first.genes_in == again.collapsed[1] and again.bytes_after == 0
    pool.export("q2", tmp_path / "back.gguf")
    with open_model(src) as a, open_model(tmp_path / "back.gguf") as b:
        assert {i.dtype for i in a} >= {"Q8_0", "TQ2_0", "Q4_K"}
        assert [(i.name, i.dtype, i.shape) for i in a] == [(i.name, i.dtype, i.shape) for i in b]
        assert all(np.array_equal(a.raw(n), b.raw(n)) for n in a.names())
    assert verify(pool)["clean"]
