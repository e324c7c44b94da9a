"""The consistent-hash ring and the sharded, replicated memory, in-process (no Ray)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from swarm.dht import DistributedMemory, LocalTransport
from swarm.memory import SharedMemory
from swarm.params import BackendParams, MemoryParams
from swarm.ring import Ring, key_positions
from swarm.shard import MemoryShard

DIM = 16


def make(shards=4, replication=3, capacity=4000, vnodes=64, seed=0, probes=0):
    params = MemoryParams(capacity=capacity, max_bucket=64, min_similarity=0.0, probes=probes)
    backend = BackendParams(name="ray", shards=shards, replication=replication, virtual_nodes=vnodes)
    transport = LocalTransport()

    def spawn(s, cap, planes):
        return MemoryShard(s, params, DIM, planes, cap)

    return DistributedMemory(params, DIM, torch.Generator().manual_seed(seed), backend, spawn, transport), params


def fill(mem, n, seed=1, step=0, equal=False):
    g = torch.Generator().manual_seed(seed)
    q = torch.nn.functional.normalize(torch.randn(n, DIM, generator=g), dim=1)
    fit = torch.ones(n) if equal else torch.rand(n, generator=g)
    mem.store(q, q.flip(1), torch.arange(n), fit, step)
    return q, fit


def test_ring_places_every_key_on_r_distinct_shards_evenly():
    ring = Ring.build(range(5), vnodes=64, replication=3)
    keys = torch.randint(0, 256, (20000, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    reps = ring.replicas(keys)  # (N, 3)
    assert reps.shape == (20000, 3)
    assert all(len(set(r)) == 3 for r in reps[:500].tolist())
    share = torch.bincount(reps[:, 0], minlength=5).float() / len(keys)
    assert share.min() > 0.12 and share.max() < 0.28  # about 1/5 each with 64 virtual nodes
    # similar LSH codes (one bit apart) still spread over the ring
    near = keys[:1].repeat(64, 1)
    near[torch.arange(64), torch.arange(64) % 32] ^= (1 << (torch.arange(64) // 32)).to(torch.uint8)
    assert len(np.unique(key_positions(near))) == 64


def test_ring_change_moves_about_one_nth_of_the_copies():
    ring = Ring.build(range(4), vnodes=64, replication=3)
    keys = torch.randint(0, 256, (20000, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(4))
    before, after = ring.replicas(keys), ring.with_shard(4).replicas(keys)
    new_copies = sum(int((after[:, j:j + 1] != before).all(1).sum()) for j in range(3))
    fraction = new_copies / before.numel()
    assert 0.5 / 5 < fraction < 2.0 / 5  # about 1/N of the stored copies, N = 5 shards after the join
    assert set(after[(after != before).any(1)].flatten().tolist()) >= {4}


@pytest.mark.parametrize("probes", [0, 8])  # shards run SharedMemory's lookup, multi-probe included
def test_every_entry_lands_on_its_replicas_and_lookup_matches_one_memory(probes):
    mem, params = make(probes=probes)
    q, fit = fill(mem, 1500)
    counts = mem.replica_counts()
    assert len(counts) == 1500 and set(counts.values()) == {3}
    assert mem.size == 1500
    # the same entries in one SharedMemory give the same best hits
    single = SharedMemory(params, DIM, torch.Generator().manual_seed(0))
    assert torch.equal(single.planes, mem.planes)
    single.store(q, q.flip(1), torch.arange(1500), fit, 0)
    probe = torch.nn.functional.normalize(q[:50] + 0.05 * torch.randn(50, DIM, generator=torch.Generator().manual_seed(2)), dim=1)
    a, b = mem.lookup(probe), single.lookup(probe)
    assert a.valid.any(1).all()
    assert torch.equal(a.agent_id[:, 0], b.agent_id[:, 0])


def test_killed_shard_leaves_every_key_readable_and_rereplicated():
    mem, _ = make(shards=5)
    q, _ = fill(mem, 1000, equal=True)  # equal fitness: a stored query's best hit is its own entry
    mem.transport.kill(2)
    hits = mem.lookup(q, k=1)  # the dead shard fails this call: the ring repairs itself
    assert mem.faults and mem.faults[0]["kind"] == "shard_lost" and mem.faults[0]["shard"] == 2
    assert 2 not in mem.handles and len(mem.handles) == 5  # replaced by a fresh shard
    assert hits.valid[:, 0].all()
    assert torch.equal(hits.agent_id[:, 0], torch.arange(1000))  # every key still found
    counts = mem.replica_counts()
    assert len(counts) == 1000 and set(counts.values()) == {3}


def test_adding_a_shard_moves_only_its_share_and_garbage_collection_runs_per_shard():
    mem, _ = make(shards=4)
    fill(mem, 2000)
    moved = mem.add_shard()
    fraction = moved / (2000 * 3)
    assert 0.5 / 5 < fraction < 2.0 / 5
    counts = mem.replica_counts()
    assert len(counts) == 2000 and set(counts.values()) == {3}
    held = {s: len(h.uids()) for s, h in mem.handles.items()}
    assert held[4] == moved  # the newcomer got exactly the copies that moved
    # overfill: every shard evicts on its own, the memory stays bounded
    small, _ = make(shards=4, capacity=300)
    for step in range(5):
        fill(small, 200, seed=step + 10, step=step)
    assert small.evicted > 0
    assert all(int(h.valid.sum()) <= h.p.capacity for h in small.handles.values())


def test_eviction_count_only_grows_and_survives_a_lost_shard_and_a_restore():
    mem, _ = make(shards=4, capacity=300)
    seen = []
    for step in range(6):
        fill(mem, 200, seed=step + 10, step=step)
        seen.append(mem.evicted)
        if step == 2:  # a shard holding evictions dies; the count keeps them
            mem.transport.kill(1)
            mem.lookup(torch.nn.functional.normalize(torch.randn(4, DIM), dim=1))
            assert mem.faults and mem.evicted >= seen[-1]  # re-replication may evict more, never fewer
    assert seen == sorted(seen) and seen[0] < seen[-1]
    copy, _ = make(shards=4, capacity=300)
    copy.load_state_dict(mem.state_dict())
    assert copy.evicted == mem.evicted


def test_state_dict_round_trip_keeps_every_entry():
    mem, _ = make()
    fill(mem, 700)
    d = mem.state_dict()
    other, _ = make(seed=5)
    other.load_state_dict(d)
    assert torch.equal(other.planes, mem.planes)
    assert sorted(other.replica_counts()) == list(range(700))
    assert other.next_uid == 700


def test_replication_above_shards_is_rejected():
    with pytest.raises(ValueError, match="backend.replication"):
        BackendParams(shards=2, replication=3)


def test_zone_aware_ring_puts_copies_on_distinct_nodes():
    keys = torch.randint(0, 256, (5000, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    plain = Ring.build(range(6), vnodes=32, replication=3)
    own_zone = Ring.build(range(6), vnodes=32, replication=3, zones={s: f"n{s}" for s in range(6)})
    assert torch.equal(plain.replicas(keys), own_zone.replicas(keys))  # one shard a zone: the plain walk
    nodes = {0: "a", 1: "a", 2: "a", 3: "a", 4: "b", 5: "b"}  # shards packed unevenly on two nodes
    ring = Ring.build(range(6), vnodes=32, replication=3, zones=nodes)
    reps = ring.replicas(keys)
    assert all(len(set(r)) == 3 for r in reps.tolist())
    spans = [len({nodes[s] for s in r}) for r in reps.tolist()]
    assert min(spans) == 2  # losing either node leaves a copy of every key
    assert min(len({nodes[s] for s in r}) for r in plain.replicas(keys).tolist()) == 1  # without zones, some do not
    grown = ring.with_shard(6, "c")  # zones carry over to derived rings
    assert {len({({**nodes, 6: 'c'})[s] for s in r}) for r in grown.replicas(keys).tolist()} == {3}
    assert dict(grown.without_shard(0).zones) == {**{s: z for s, z in nodes.items() if s}, 6: "c"}


def test_sharing_rows_address_distributed_entries_by_uid():
    """What sharing needs of the DHT: lookups name each hit's entry by uid, `UidRows` maps uids to
    vote rows, removal drops every replica, and fitness written through changes the ranking."""
    from swarm.sharing.entries import UidRows, entry_rows

    mem, _ = make(shards=4)
    rows = entry_rows(mem)
    assert isinstance(rows, UidRows)
    g = torch.Generator().manual_seed(5)
    q = torch.nn.functional.normalize(torch.randn(50, DIM, generator=g), dim=1)
    r = rows.store(q, q.flip(1), torch.arange(50), torch.ones(50), step=3)
    assert torch.equal(r, torch.arange(50))  # the first uids, rows uid % capacity
    hits = mem.lookup(q, k=1)
    assert torch.equal(hits.slot[:, 0], torch.arange(50))  # each query's own entry, by uid
    assert torch.equal(rows.rows(hits.slot[:, 0]), r) and bool((rows.timestamp[r] == 3).all())
    assert rows.remove(r[:10]) == 10 and mem.size == 40
    assert not any(bool(torch.isin(h.uids(), torch.arange(10)).any()) for h in mem.handles.values())  # all replicas
    assert bool((rows.rows(torch.arange(10)) == -1).all())  # removed entries have no row
    assert rows.remove(r[:10]) == 0  # nothing left to remove
    # an entry voted down to fitness 0 no longer wins its own query (score = similarity x fitness)
    near = torch.nn.functional.normalize(q[10] + 0.05 * torch.randn(DIM, generator=g), dim=0)
    rows.store(near.unsqueeze(0), q[10:11].flip(1), torch.tensor([99]), torch.ones(1), step=4)
    assert int(mem.lookup(q[10:11], k=1).slot[0, 0]) == 10
    rows.set_fitness(r[10:11], torch.zeros(1))
    assert int(mem.lookup(q[10:11], k=1).slot[0, 0]) == 50
    # a newer entry takes the row over; the old uid loses it
    small = UidRows(mem, capacity=64)
    small.uid[14], small.valid[14] = 78, True
    assert int(small.rows(torch.tensor([14]))) == -1 and int(small.rows(torch.tensor([78]))) == 14
