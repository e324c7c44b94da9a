"""33% malicious agents: robust consensus stays near the clean quality, the plain mean does not,
and the malicious share of the population falls (their fitness starves them)."""

from __future__ import annotations

import pytest
import torch
from torch.nn.functional import normalize

from experiments.spec import validate
from swarm.consensus import REGISTRY
from swarm.model import SwarmModel
from swarm.params import ConsensusParams

B, K, D = 512, 9, 64  # queries, candidates per query (fanout), width


def _quality(rule: str, malicious: float) -> float:
    """Consensus quality (cosine to target) when a share of the k candidates is malicious.

    Honest candidates are a trained swarm's answers (cosine about 0.9 to the target); malicious
    ones are pushed away from it exactly as swarm/query.py does: normalize(0.5 a - target).
    """
    gen = torch.Generator().manual_seed(0)
    target = normalize(torch.randn(B, D, generator=gen), dim=-1)
    honest = normalize(target.unsqueeze(1) + 0.5 * torch.randn(B, K, D, generator=gen) / D**0.5, dim=-1)
    bad = torch.rand(B, K, generator=gen).argsort(1) < round(malicious * K)  # (B, K) exactly 3 of 9
    pushed = normalize(0.5 * honest - target.unsqueeze(1), dim=-1)
    x = torch.where(bad.unsqueeze(-1), pushed, honest)
    fitness = torch.rand(B, K, generator=gen)
    out = REGISTRY[rule](x, fitness, torch.ones(B, K, dtype=torch.bool), ConsensusParams(trim=0.34))
    return float((out * target).sum(-1).mean())


@pytest.mark.parametrize("rule", ["median", "trimmed_mean", "geometric_median"])
def test_robust_rules_stay_within_10_percent_of_clean_with_33_percent_malicious(rule):
    clean, attacked = _quality(rule, 0.0), _quality(rule, 0.33)
    assert clean > 0.9
    assert attacked >= 0.9 * clean


def test_plain_mean_falls_clearly_under_the_same_attack():
    loss = {rule: 1 - _quality(rule, 0.33) / _quality(rule, 0.0) for rule in ("mean", "median", "trimmed_mean")}
    assert loss["mean"] > 2 * max(loss["median"], loss["trimmed_mean"])  # measured: 9% against 4%
    assert _quality("mean", 0.33) < _quality("median", 0.33) - 0.03


def test_malicious_share_falls_over_time_in_the_swarm():
    spec = validate({
        "colony": {"count": 2, "capacity": 64, "initial_agents": 32}, "brain": {"hidden": 32},
        "memory": {"capacity": 4000}, "replication": {"threshold": 10},
        "environment": {"batch": 32, "malicious": 0.33}, "consensus": {"rule": "median"},
    })
    model = SwarmModel(spec, seed=1)
    shares = []
    for _ in range(40):
        model.step()
        shares.append(model.metrics["malicious_share"])
    assert shares[0] > 0.3
    assert shares[-1] < shares[0] / 2
