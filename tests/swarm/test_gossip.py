from __future__ import annotations

import torch

from swarm.gossip import assign


def test_random_gossip_is_balanced_and_distinct_per_query():
    alive = torch.arange(100, 150)  # 50 living agents with global indices 100..149
    hits = torch.full((40, 4), -1)
    chosen, routed = assign(alive, hits, fanout=5, routed_fraction=0.5, gen=torch.Generator().manual_seed(0))
    assert chosen.shape == (40, 5) and not routed.any()
    load = torch.bincount(chosen.flatten() - 100, minlength=50)
    assert int(load.min()) == 4 and int(load.max()) == 4  # 200 slots over 50 agents
    assert all(len(set(row)) == 5 for row in chosen.tolist())


def test_routed_slots_go_to_distinct_living_hit_authors_best_first():
    alive = torch.arange(20)
    hits = torch.tensor([[7, 7, 3, -1], [-1, -1, -1, -1], [5, 9, 2, 1]])
    chosen, routed = assign(alive, hits, fanout=4, routed_fraction=0.5, gen=torch.Generator().manual_seed(1))
    assert chosen[0, :2].tolist() == [7, 3] and routed[0].tolist() == [True, True, False, False]
    assert not routed[1].any()
    assert chosen[2, :2].tolist() == [5, 9]


def test_a_popular_author_is_capped_and_loads_stay_balanced():
    alive = torch.arange(32)
    hits = torch.zeros(64, 2, dtype=torch.long)  # every query's best hit is agent 0
    chosen, routed = assign(alive, hits, fanout=2, routed_fraction=0.5, gen=torch.Generator().manual_seed(2))
    assert int(routed.sum()) == 4  # L = ceil(64 x 2 / 32) = 4
    assert torch.bincount(chosen.flatten(), minlength=32).tolist() == [4] * 32
