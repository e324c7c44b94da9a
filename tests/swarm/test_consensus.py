from __future__ import annotations

import pytest
import torch

from swarm.consensus import REGISTRY
from swarm.params import ConsensusParams

P = ConsensusParams(trim=0.25, temperature=0.05)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_rule_gives_unit_answers_and_ignores_invalid_candidates(name):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, 8, generator=gen)
    fit = torch.rand(6, 5, generator=gen)
    valid = torch.ones(6, 5, dtype=torch.bool)
    valid[:, 4] = False
    garbage = x.clone()
    garbage[:, 4] = 1e6
    out = REGISTRY[name](x, fit, valid, P)
    assert out.shape == (6, 8)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(6))
    torch.testing.assert_close(REGISTRY[name](garbage, fit, valid, P), out)
    torch.testing.assert_close(REGISTRY[name](x, fit, valid, P), out)  # deterministic


def test_weighted_mean_follows_the_fittest():
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    out = REGISTRY["weighted_mean"](x, torch.tensor([[0.9, 0.1]]), torch.ones(1, 2, dtype=torch.bool), P)
    assert out[0, 0] > 0.99


def test_median_and_trimmed_mean_resist_an_outlier():
    good = torch.tensor([1.0, 0.0, 0.0])
    x = torch.stack([good, good, good, torch.tensor([-100.0, 50.0, 0.0])]).unsqueeze(0)  # (1, 4, 3)
    valid = torch.ones(1, 4, dtype=torch.bool)
    fit = torch.zeros(1, 4)
    for name in ("median", "trimmed_mean"):
        torch.testing.assert_close(REGISTRY[name](x, fit, valid, P)[0], good)
    assert REGISTRY["weighted_mean"](x, fit, valid, P)[0, 0] < 0


def test_trimmed_mean_by_hand():
    # coordinate 0 holds 1, 2, 3, 10; trim 0.25 of 4 drops one at each end -> mean(2, 3) = 2.5
    # coordinate 1 is 1 everywhere -> 1. The plain mean would give (4, 1).
    x = torch.tensor([[[1.0, 1.0], [2.0, 1.0], [3.0, 1.0], [10.0, 1.0]]])
    valid = torch.ones(1, 4, dtype=torch.bool)
    out = REGISTRY["trimmed_mean"](x, torch.zeros(1, 4), valid, P)
    expected = torch.tensor([2.5, 1.0])
    torch.testing.assert_close(out[0], expected / expected.norm())
