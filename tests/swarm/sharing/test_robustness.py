"""33% malicious agents: robust consensus stays near the clean quality, the plain mean does not,
and the malicious share of the population falls (their fitness starves them).

A malicious answer is `environment.malicious_scale` (4) long: a Byzantine agent is not bound to unit
norm, and a unit-norm minority barely turns a normalised mean."""

from __future__ import annotations

import pytest
import torch
from torch.nn.functional import normalize

from experiments.spec import validate
from genome.errors import BadInput
from swarm.consensus import REGISTRY
from swarm.model import SwarmModel
from swarm.params import ConsensusParams, EnvironmentParams
from tests.conftest import SMALL

B, K, D = 512, 9, 64  # queries, candidates per query (fanout), width


def _quality(rule: str, malicious: float) -> float:
    """Consensus quality (cosine to target) when a share of the k candidates is malicious.

    Honest candidates are a trained swarm's answers (cosine about 0.9 to the target); malicious
    ones are pushed away from it exactly as swarm/query.py does: scale x normalize(0.5 a - target).
    """
    gen = torch.Generator().manual_seed(0)
    target = normalize(torch.randn(B, D, generator=gen), dim=-1)
    honest = normalize(target.unsqueeze(1) + 0.5 * torch.randn(B, K, D, generator=gen) / D**0.5, dim=-1)
    bad = torch.rand(B, K, generator=gen).argsort(1) < round(malicious * K)  # (B, K) exactly 3 of 9
    pushed = EnvironmentParams().malicious_scale * normalize(0.5 * honest - target.unsqueeze(1), dim=-1)
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
    assert loss["mean"] > 2 * max(loss["median"], loss["trimmed_mean"])  # measured: 191% against 4.7%
    assert _quality("mean", 0.33) < _quality("median", 0.33) - 0.03


def _spec(**environment):
    return validate({**SMALL, "consensus": {"trim": 0.34}, "environment": {**SMALL["environment"], **environment}})


def _qualities(model: SwarmModel, rules: tuple[str, ...]) -> dict[str, float]:
    """Consensus quality of the last step under each rule, on the candidates the step saw."""
    r, target = model.last_response, model.last_batch.target
    return {rule: float(model.environment.feedback(REGISTRY[rule](r.candidates, r.weight, r.valid, model.spec.consensus),
                                                    target).mean()) for rule in rules}


def test_when_a_third_of_a_trained_swarm_turns_malicious_robust_rules_hold_the_mean_falls_and_they_starve():
    """Per seed: 100 clean steps, then the same swarm goes on clean and with a third of it turned
    malicious (environment.malicious_step); quality from then until their share halves, seed means."""
    rules, warm, after = ("mean", "median", "trimmed_mean"), 100, 7
    clean_q, bad_q = {r: [] for r in rules}, {r: [] for r in rules}
    for seed in range(4):
        clean = SwarmModel(_spec(), seed=seed)
        for _ in range(warm):
            clean.step()
        bad = SwarmModel(_spec(malicious=0.33, malicious_step=warm + 1), seed=seed)
        bad.load_state_dict(clean.state_dict())
        runs = {"clean": [], "bad": []}
        shares = []
        for _ in range(after):
            for name, model in (("clean", clean), ("bad", bad)):
                model.step()
                runs[name].append(_qualities(model, rules))
            shares.append(bad.metrics["malicious_share"])
        assert shares[0] > 0.2 and shares[-1] < shares[0] / 2, shares  # their fitness starves them
        half = next((i for i, v in enumerate(shares) if v < 0.33 / 2), after)  # steps until their share halves
        for r in rules:
            clean_q[r] += [q[r] for q in runs["clean"][: max(half, 1)]]
            bad_q[r] += [q[r] for q in runs["bad"][: max(half, 1)]]
    kept = {r: sum(bad_q[r]) / sum(clean_q[r]) for r in rules}  # measured: mean -0.27, median 0.94, trimmed 0.93
    assert kept["median"] >= 0.9 and kept["trimmed_mean"] >= 0.9
    assert 1 - kept["mean"] >= max(0.1, 2 * (1 - min(kept["median"], kept["trimmed_mean"])))


def test_malicious_answers_are_scale_long_and_the_scale_changes_nothing_but_consensus():
    runs = {}
    for scale in (1.0, 4.0):
        model = SwarmModel(_spec(malicious=0.33, malicious_scale=scale), seed=0)
        for _ in range(6):
            model.step()
        bad = model._global("malicious")[model.last_response.chosen]  # (B, k)
        norms = model.last_response.responses.norm(dim=-1)
        torch.testing.assert_close(norms[bad], torch.full_like(norms[bad], scale))
        torch.testing.assert_close(norms[~bad], torch.ones_like(norms[~bad]))
        runs[scale] = model
    a, b = runs[1.0], runs[4.0]
    for key in ("population", "births", "deaths", "agent_quality", "malicious_share", "fitness_mean", "memory_entries"):
        assert a.metrics[key] == b.metrics[key]  # rewards are cosines: selection does not see the norm
    assert torch.equal(a._global("fitness"), b._global("fitness"))
    every = validate({**SMALL, "memory": {**SMALL["memory"], "store": "all"},
                      "environment": {**SMALL["environment"], "malicious": 0.33}})
    poisoned = SwarmModel(every, seed=0)
    poisoned.step()
    norms = poisoned.memory.response[poisoned.memory.valid].norm(dim=-1)
    assert bool(((norms - 4.0).abs() < 1e-4).any())  # the memory keeps what they said (poisoning)


def test_malicious_step_turns_a_share_of_the_living_agents_and_leaves_the_run_before_it_alone():
    clean, late = SwarmModel(_spec(), seed=3), SwarmModel(_spec(malicious=0.33, malicious_step=5), seed=3)
    for _ in range(4):
        clean.step()
        late.step()
        assert late.metrics == {**clean.metrics, "seconds": late.metrics["seconds"]}
    assert not bool(late._global("malicious").any())
    living = [int(st.alive.sum()) for st in late.states]
    late._compromise(0.33)  # what step 5 does first
    assert [int((st.malicious & st.alive).sum()) for st in late.states] == [round(0.33 * n) for n in living]
    with pytest.raises(BadInput, match="environment.malicious_step=5 needs environment.malicious"):
        _spec(malicious_step=5)
