from __future__ import annotations

import logging
from dataclasses import replace

import pytest
import torch
from torch.nn.functional import normalize

from experiments.spec import validate
from swarm.model import SwarmModel
from swarm.sharing import codec

SMALL = {
    "colony": {"count": 3, "capacity": 64, "initial_agents": 32},
    "brain": {"hidden": 32},
    "memory": {"capacity": 4000},
    "replication": {"threshold": 10},
    "environment": {"batch": 32},
}


def _model(steps: int, seed: int = 0, **sharing) -> SwarmModel:
    model = SwarmModel(validate({**SMALL, "sharing": {"enabled": True, **sharing}}), seed=seed)
    for _ in range(steps):
        model.step()
    return model


def test_shared_runs_are_deterministic_and_entries_arrive_compressed():
    a, b = _model(8), _model(8)
    drop = ("seconds",)
    assert {k: v for k, v in a.metrics.items() if k not in drop} == {k: v for k, v in b.metrics.items() if k not in drop}
    assert a.metrics["shared_entries"] == a.metrics["registry_size"] == 8 * 32  # each query's best answer
    assert a.metrics["shared_rejected"] == 0
    assert a.metrics["shared_ratio"] > 8  # D = 64: 512 raw bytes + ids against about 54 coded
    assert a.sharing.registry.audit() == []


def _fresh_batch(model: SwarmModel, n: int = 5):
    gen = torch.Generator().manual_seed(7)
    q = normalize(torch.randn(n, model.spec.brain.embed_dim, generator=gen), dim=-1)
    r = normalize(torch.randn(n, model.spec.brain.embed_dim, generator=gen), dim=-1)
    return model.sharing.pack(0, q, r, torch.arange(n), torch.full((n,), 0.5), model.steps)


def _nan_scale(b):
    return replace(b, entries=replace(b.entries, scale=b.entries.scale.clone().fill_(float("nan"))))


def _tampered_record(b):
    bits = b.entries.bits.clone()
    bits[0, 0, 0] ^= 1
    return replace(b, entries=replace(b.entries, bits=bits))


def _other_key(b):
    from swarm.sharing.batch import Identity

    return b.signed(Identity(b"someone else"))


def _narrow(b):
    e = b.entries
    return replace(b, entries=replace(e, bits=e.bits[:, :, :-1].clone(), width=e.width - 8))


BAD = {
    "bad signature": lambda b: replace(b, signature=b.signature[:-2] + ("00" if b.signature[-2:] != "00" else "11")),
    "bad proof": _tampered_record,
    "bad proof (root)": lambda b: replace(b, root="00" * 32),
    "unknown identity": _other_key,
    "NaN": _nan_scale,
    "width": _narrow,
    "declared width": lambda b: replace(b, width=b.width + 1),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_batches_are_rejected_logged_counted_and_store_nothing(name, caplog):
    model = _model(2)
    good = _fresh_batch(model)
    before = (model.memory.size, len(model.sharing.registry), model.metrics["shared_rejected"])
    with caplog.at_level(logging.WARNING, logger="swarm.sharing.exchange"):
        assert model.sharing.submit(BAD[name](good), model.steps) is None
    assert (model.memory.size, len(model.sharing.registry)) == before[:2]
    assert "rejected shared batch" in caplog.text
    assert model.sharing.metrics()["shared_rejected"] == before[2] + 1
    slots = model.sharing.submit(good, model.steps)  # the untouched batch goes through
    assert slots is not None and len(slots) == 5 and len(model.sharing.registry) == before[1] + 5


def test_rejections_reach_the_run_store(tmp_path):
    from experiments.store import RunStore

    model = _model(1)
    model.sharing.submit(_nan_scale(_fresh_batch(model)), model.steps)
    model.step()
    store = RunStore.create(tmp_path / "run.sqlite", name="t", spec_yaml="", seed=0, version="0", git_commit="", steps_total=2)
    store.write_step(model.steps, model.metrics, births=[], deaths=[])
    row = store.db.execute("SELECT shared_rejected, entries_voted_out FROM metrics").fetchone()
    assert row[0] == 1.0 and row[1] >= 0


def test_bitdelta_against_registry_references_keeps_entries_close():
    model = _model(6)
    q = model.memory.query[model.memory.valid][:200]
    r = model.memory.response[model.memory.valid][:200]
    ref = model.sharing._references(q)
    rq, rr = model.sharing._ref_vectors(ref)
    packed = codec.encode(q, r, rq, rr, ref)
    dq, dr = codec.decode(packed, rq, rr)
    zq, zr = codec.decode(codec.encode(q, r, 0 * q, 0 * r, torch.full_like(ref, -1)), 0 * q, 0 * r)
    near, far = (dq * q).sum(1).mean(), (zq * q).sum(1).mean()
    assert near > far > 0.7  # the reference makes the delta small; signs alone keep cosine ~0.8
    assert (dr * r).sum(1).mean() > 0.7


def test_bitdelta_ratio_at_512_floats_is_above_25():
    gen = torch.Generator().manual_seed(0)
    x = normalize(torch.randn(64, 512, generator=gen), dim=-1)
    packed = codec.encode(x, x, 0 * x, 0 * x, torch.full((64,), -1))
    assert packed.ratio >= 25
    assert packed.nbytes == 64 * (2 * (64 + 4) + 4)
