"""A pool written with index schema 1 opens, is upgraded to schema 2 in place, verifies clean,
exports bit-identically and takes new ingests; its genes keep their schema-1 signatures."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from genome.formats import open_model
from genome.pool import (
    DedupOptions,
    GenePool,
    PoolCorrupt,
    attest,
    merkle,
    store,
    verify,
)
from genome.pool.gene import Gene, content_digest, gene_hash, metadata_json
from genome.pool.levels import plan
from genome.pool.migrate import V1_SCHEMA, statements
from genome.pool.pool import DEFAULT_CONFIG

BLOCK = 256


def _model(path: Path) -> Path:
    g = torch.Generator().manual_seed(0)
    save_file({"blk.0.attn_q.weight": torch.randn(64, 64, generator=g),
               "blk.0.ffn_up.weight": torch.zeros(32, 64),  # 8 identical blocks: one gene, 8 references
               "blk.0.attn_norm.weight": torch.randn(64, generator=g).to(torch.bfloat16)}, str(path))
    return path


def _v1_pool(path: Path, model: Path, name: str = "m") -> None:
    """`model` in a schema-1 pool, every block a whole raw gene, rows as version 1 wrote them."""
    path.mkdir()
    (path / "objects").mkdir()
    attest.create_keys(path)
    genes: dict[str, list] = {}
    blobs, blocks, tensors, data = {}, [], [], bytearray()
    with open_model(model) as reader:
        for t, info in enumerate(reader.tensors()):
            raw, p = np.asarray(reader.raw(info.name)).reshape(-1), plan(info, BLOCK)
            for i in range(p.count):
                a, b = p.byte_range(i)
                payload = raw[a:b].tobytes()
                digest = content_digest(payload)
                h = gene_hash("weights", info.dtype, p.shape(i), digest)
                level = 1 if h in genes else 0
                if not level:
                    meta = {"source": name, "tensor": info.name, "canonical": info.canonical, "block": i}
                    genes[h] = [h, "weights", digest.hex(), None, info.dtype, json.dumps(list(p.shape(i))),
                                len(payload), None, None, None, metadata_json(meta), 1, None, "ACTIVE", 0]
                    blobs[digest.hex()] = ("pack-v1.pack", len(data), len(payload), len(payload), 0)
                    data += payload
                genes[h][14] += 1
                blocks.append((1, t, i, h, level))
            tensors.append((1, t, info.name, info.canonical, info.dtype, json.dumps(list(info.shape)), info.nbytes,
                            None, None, 0.0, 0.0))
    (path / "objects" / "pack-v1.pack").write_bytes(bytes(data))
    rows = sorted(genes.values())
    leaves = [merkle.leaf_hash(Gene(h, kind, blob, dtype, tuple(json.loads(shape)), {}, json.loads(meta),
                                    leaf_format=1).signed_fields())
              for h, kind, blob, _base, dtype, shape, _n, _l2, _l3, _sig, meta, *_ in rows]
    root, signature = attest.sign_batch(path, 1, leaves)
    db = sqlite3.connect(path / store.INDEX)
    with db:
        for sql in statements(V1_SCHEMA):
            db.execute(sql)
        db.executemany("INSERT INTO config VALUES (?, ?)",
                       [(k, json.dumps(v)) for k, v in {**DEFAULT_CONFIG, "block": BLOCK}.items()])
        db.execute("INSERT INTO packs VALUES ('pack-v1.pack', ?, 0)", (len(data),))
        db.executemany("INSERT INTO blobs VALUES (?, ?, ?, ?, ?, ?)", [(h, *loc) for h, loc in blobs.items()])
        db.executemany("INSERT INTO genes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 1, ?)",
                       [(*r, i) for i, r in enumerate(rows)])
        db.executemany("INSERT INTO leaves VALUES (1, ?, ?)", list(enumerate(leaves)))
        db.execute("INSERT INTO batches VALUES (1, ?, ?, ?, ?, 0)", (root, signature, attest.public_key(path), len(rows)))
        db.execute("INSERT INTO models VALUES (1, ?, 'weights', ?, 'safetensors', NULL, '{}', ?, ?, ?, '{}', 0)",
                   (name, str(model), len(tensors), sum(t[6] for t in tensors), len(data)))
        db.executemany("INSERT INTO tensors VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", tensors)
        db.executemany("INSERT INTO blocks VALUES (?, ?, ?, ?, ?)", blocks)
        db.execute("PRAGMA user_version = 1")
    db.close()
    (path / "pool.json").write_text(json.dumps({"format": store.FORMAT_TAG, "schema": 1}))


def _same_tensors(a: Path, b: Path) -> bool:
    with open_model(a) as x, open_model(b) as y:
        return [(i.name, i.dtype, i.shape) for i in x] == [(i.name, i.dtype, i.shape) for i in y] and all(
            np.array_equal(x.raw(n), y.raw(n)) for n in x.names())


def test_a_schema_1_pool_is_upgraded_verifies_and_exports_bit_identically(tmp_path):
    model = _model(tmp_path / "m.safetensors")
    _v1_pool(tmp_path / "pool", model)
    pool = GenePool(tmp_path / "pool")
    assert pool.db.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION
    assert json.loads((tmp_path / "pool" / "pool.json").read_text())["schema"] == store.SCHEMA_VERSION
    assert {r[0] for r in pool.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")} >= {"metas", "genes"}
    assert not {"blocks", "leaves"} & {r[0] for r in pool.db.execute("SELECT name FROM sqlite_master")}
    result = verify(pool)
    assert result["clean"], result["errors"]
    assert result["checked"]["genes"] == 16 + 1 + 1  # the 8 zero blocks are one gene
    pool.export("m", tmp_path / "out.safetensors")
    assert _same_tensors(model, tmp_path / "out.safetensors")
    h = pool.blocks(1)[0][2]
    g = pool.gene(h)
    assert g.leaf_format == 1 and g.metadata["block"] == 0 and pool.ledger.attestation(g).verify(g.signed_fields())
    # a new ingest beside the upgraded genes: all hits, then a new model with new genes of format 2
    again = pool.ingest(model, name="again", options=DedupOptions(max_level=1, deltas=False))
    assert again.collapsed[1] == again.genes_in == 25 and again.bytes_after == 0
    save_file({"x.weight": torch.ones(300)}, str(tmp_path / "x.safetensors"))
    pool.ingest(tmp_path / "x.safetensors", name="x", options=DedupOptions(max_level=1, deltas=False))
    assert verify(pool)["clean"]
    assert pool.gene(pool.blocks(3)[0][2]).leaf_format == 2
    pool.close()
    GenePool(tmp_path / "pool").close()  # opening an upgraded pool again changes nothing


def test_a_damaged_schema_1_pool_is_left_as_it_was(tmp_path):
    model = _model(tmp_path / "m.safetensors")
    _v1_pool(tmp_path / "pool", model)
    db = sqlite3.connect(tmp_path / "pool" / store.INDEX)
    db.execute("UPDATE genes SET hash = 'not hex' WHERE rowid = 1")
    db.commit()
    db.close()
    with pytest.raises(PoolCorrupt, match="cannot upgrade"):
        GenePool(tmp_path / "pool")
    db = sqlite3.connect(tmp_path / "pool" / store.INDEX)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    assert db.execute("SELECT COUNT(*) FROM blocks").fetchone()[0] == 25
    db.close()
