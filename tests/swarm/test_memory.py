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


def reference_candidates(mem: SharedMemory, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The candidate table of the lookup before multi-probe (one bucket per band), kept as a reference."""
    b = len(queries)
    sorted_keys, order = mem._sorted_index()
    qbands = mem._band_values(mem._bits(queries)).T.contiguous()  # (bands, B)
    lo = torch.searchsorted(sorted_keys, qbands << 31)
    hi = torch.searchsorted(sorted_keys, (qbands << 31) | ((1 << 31) - 1), right=True)
    lo = torch.maximum(lo, hi - mem.p.max_bucket)
    counts = (hi - lo).flatten()
    total = int(counts.sum())
    starts = lo.flatten().repeat_interleave(counts)
    offset = torch.arange(total) - (torch.cumsum(counts, 0) - counts).repeat_interleave(counts)
    pair_band = torch.arange(mem.p.bands).repeat_interleave(b).repeat_interleave(counts)
    pair_query = torch.arange(b).repeat(mem.p.bands).repeat_interleave(counts)
    pair_entry = order[pair_band, starts + offset]
    n = len(mem.valid)
    pair = torch.unique(pair_query * n + pair_entry)
    pair_query, pair_entry = pair // n, pair % n
    group = torch.bincount(pair_query, minlength=b)
    column = torch.arange(len(pair)) - (torch.cumsum(group, 0) - group)[pair_query]
    entries = torch.zeros(b, int(group.max()) if total else 0, dtype=torch.long)
    present = torch.zeros_like(entries, dtype=torch.bool)
    entries[pair_query, column] = pair_entry
    present[pair_query, column] = True
    return entries, present


@pytest.mark.parametrize("max_bucket", [1, 4, 32])
def test_default_probes_give_the_same_candidates_as_before(max_bucket):
    mem = make(capacity=1500, dim=16, max_bucket=max_bucket)
    gen = torch.Generator().manual_seed(4)
    centres = normalize(torch.randn(30, 16, generator=gen), dim=1)
    for step in range(4):  # overfull: garbage collection frees and reuses slots
        q = normalize(centres[torch.randint(0, 30, (600,), generator=gen)] + 0.05 * torch.randn(600, 16, generator=gen), dim=1)
        mem.store(q, q, torch.arange(600) + 600 * step, torch.rand(600, generator=gen), step)
        ask = normalize(centres[torch.randint(0, 30, (200,), generator=gen)] + 0.05 * torch.randn(200, 16, generator=gen), dim=1)
        got, want = mem._candidates(ask), reference_candidates(mem, ask)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_multi_probe_finds_a_neighbour_whose_key_differs_in_every_band():
    gen = torch.Generator().manual_seed(5)
    single = make(dim=32, bands=8, rows=32, max_bucket=8, min_similarity=-1.0)
    multi = make(dim=32, bands=8, rows=32, max_bucket=8, min_similarity=-1.0, probes=32)
    x = normalize(torch.randn(1, 32, generator=gen), dim=1)
    near = normalize(x + 0.03 * torch.randn(4000, 32, generator=gen), dim=1)  # (4000, 32)
    differs = (_unpack(single.hash(near)) != _unpack(single.hash(x))).view(-1, 8, 32).any(2).all(1)
    y = near[differs][torch.argmax(near[differs] @ x[0])].unsqueeze(0)  # the closest such neighbour
    assert float(y @ x[0]) > 0.99  # a near neighbour, yet no band of its key equals the query's
    for mem in (single, multi):
        mem.store(y, y, torch.tensor([7]), torch.ones(1), step=0)
    assert not single.lookup(x, k=1).valid.any()
    hit = multi.lookup(x, k=1)
    assert bool(hit.valid[0, 0]) and int(hit.agent_id[0, 0]) == 7


def test_an_all_ones_32_bit_band_does_not_match_free_slots():
    mem = make(capacity=100, dim=32, bands=8, rows=32, min_similarity=-1.0)
    q = torch.linalg.pinv(mem.planes[:32]) @ torch.ones(32)  # positive on the first band's 32 planes
    q = normalize(q.unsqueeze(0), dim=1)
    assert bool(mem._bits(q)[0, :32].all())
    mem.store(-q, -q, torch.tensor([1]), torch.ones(1), step=0)  # 99 slots stay free
    assert not mem.lookup(q).valid.any()
