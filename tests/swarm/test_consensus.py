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


@pytest.mark.parametrize("name", ["median", "trimmed_mean", "geometric_median", "krum"])
def test_robust_rules_resist_an_outlier(name):
    good = torch.tensor([1.0, 0.0, 0.0])
    x = torch.stack([good, good, good, torch.tensor([-100.0, 50.0, 0.0])]).unsqueeze(0)  # (1, 4, 3)
    valid = torch.ones(1, 4, dtype=torch.bool)
    fit = torch.zeros(1, 4)
    torch.testing.assert_close(REGISTRY[name](x, fit, valid, P)[0], good, atol=1e-4, rtol=0)
    assert REGISTRY["weighted_mean"](x, fit, valid, P)[0, 0] < 0
    assert REGISTRY["mean"](x, fit, valid, P)[0, 0] < 0


def test_geometric_median_of_a_square_is_its_centre_and_krum_picks_the_cluster():
    square = torch.tensor([[[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]]]) + torch.tensor([3.0, 0.0])
    valid = torch.ones(1, 4, dtype=torch.bool)
    torch.testing.assert_close(REGISTRY["geometric_median"](square, torch.zeros(1, 4), valid, P)[0],
                               torch.tensor([1.0, 0.0]), atol=1e-4, rtol=0)
    pts = torch.tensor([[[1.0, 0.0], [0.9, 0.1], [1.0, 0.1], [0.95, 0.05], [-5.0, 9.0]]])
    out = REGISTRY["krum"](pts, torch.zeros(1, 5), torch.ones(1, 5, dtype=torch.bool), P)[0]
    torch.testing.assert_close(out, torch.nn.functional.normalize(pts[0, 3], dim=0))  # the most central one


def test_trimmed_mean_by_hand():
    # coordinate 0 holds 1, 2, 3, 10; trim 0.25 of 4 drops one at each end -> mean(2, 3) = 2.5
    # coordinate 1 is 1 everywhere -> 1. The plain mean would give (4, 1).
    x = torch.tensor([[[1.0, 1.0], [2.0, 1.0], [3.0, 1.0], [10.0, 1.0]]])
    valid = torch.ones(1, 4, dtype=torch.bool)
    out = REGISTRY["trimmed_mean"](x, torch.zeros(1, 4), valid, P)
    expected = torch.tensor([2.5, 1.0])
    torch.testing.assert_close(out[0], expected / expected.norm())
