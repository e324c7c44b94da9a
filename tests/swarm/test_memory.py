from __future__ import annotations

import pytest
import torch
from torch.nn.functional import normalize

from swarm.memory import SharedMemory, _pack, _unpack
from swarm.params import MemoryParams


def make(capacity=1000, dim=32, **kw):
    return SharedMemory(MemoryParams(capacity=capacity, **kw), dim, torch.Generator().manual_seed(0))


def test_keys_are_32_bytes_and_pack_round_trips():
    mem = make()
    q = normalize(torch.randn(7, 32), dim=1)
    keys = mem.hash(q)
    assert keys.shape == (7, 32) and keys.dtype == torch.uint8
    bits = torch.rand(7, 256) > 0.5
    assert torch.equal(_unpack(_pack(bits)), bits)


def test_lookup_finds_the_stored_neighbour_and_ranks_by_similarity_times_fitness():
    mem = make()
    gen = torch.Generator().manual_seed(1)
    q = normalize(torch.randn(200, 32, generator=gen), dim=1)
    mem.store(q, -q, torch.arange(200), torch.full((200,), 0.5), step=1)
    near = normalize(q[:20] + 0.02 * torch.randn(20, 32, generator=gen), dim=1)
    hits = mem.lookup(near, k=3)
    assert hits.valid[:, 0].all()
    assert torch.equal(hits.agent_id[:, 0], torch.arange(20))
    torch.testing.assert_close(hits.response[:, 0], -q[:20])
    # a second, fitter answer to the same query wins the top slot
    mem.store(q[:1], q[:1], torch.tensor([999]), torch.tensor([0.9]), step=2)
    assert int(mem.lookup(near[:1], k=3).agent_id[0, 0]) == 999


def test_unrelated_queries_get_no_hits():
    mem = make(min_similarity=0.5)
    gen = torch.Generator().manual_seed(2)
    q = normalize(torch.randn(50, 32, generator=gen), dim=1)
    mem.store(q, q, torch.arange(50), torch.ones(50), step=0)
    far = -q[:10]
    assert not mem.lookup(far).valid.any()


def test_garbage_collection_keeps_capacity_and_evicts_low_retention_first():
    mem = make(capacity=100)
    gen = torch.Generator().manual_seed(3)
    q = normalize(torch.randn(100, 32, generator=gen), dim=1)
    fitness = torch.linspace(-1, 1, 100)
    mem.store(q, q, torch.arange(100), fitness, step=0)
    mem.store(q[:30], q[:30], torch.arange(100, 130), torch.ones(30), step=0)
    assert mem.size <= 100 and mem.evicted >= 30
    kept = set(mem.agent_id[mem.valid].tolist())
    assert set(range(100, 130)) <= kept  # the new entries
    assert not kept & set(range(30))  # the least fit old ones went first


def test_bands_times_rows_must_be_256():
    with pytest.raises(ValueError, match="256"):
        MemoryParams(bands=10, rows=10)
