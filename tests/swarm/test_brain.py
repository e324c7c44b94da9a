from __future__ import annotations

import torch

from swarm import brain
from swarm.params import BrainParams


def test_default_brain_has_about_100k_parameters():
    assert 90_000 <= brain.param_count(BrainParams()) <= 110_000


def test_batched_forward_matches_one_agent_at_a_time():
    p = BrainParams(embed_dim=8, memory_dim=16, hidden=12)
    gen = torch.Generator().manual_seed(0)
    flat = brain.init_params(5, p, gen)  # (S, P)
    queries = torch.randn(5, 3, 8, generator=gen)  # (S, Q, D)
    memory = torch.randn(5, 16, generator=gen)
    out = brain.forward(flat, p, queries, memory)
    v = brain.views(flat, p)
    for s in range(5):
        x = torch.cat([queries[s], memory[s].expand(3, 16)], 1)  # (Q, D + M)
        w1 = torch.cat([v.w_query[s], v.w_memory[s]], 0)
        h = torch.tanh(x @ w1 + v.b1[s])
        h = torch.tanh(h @ v.w2[s] + v.b2[s])
        y = torch.nn.functional.normalize(h @ v.w3[s] + v.b3[s], dim=-1)
        torch.testing.assert_close(out[s], y, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(5, 3))


def test_views_share_storage_with_flat_parameters():
    p = BrainParams(embed_dim=4, memory_dim=4, hidden=4)
    flat = torch.zeros(2, brain.param_count(p))
    brain.views(flat, p).b3[1, 2] = 7.0
    assert flat[1, -2] == 7.0 and flat.sum() == 7.0
