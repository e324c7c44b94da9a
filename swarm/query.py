"""The query flow, shared by a simulation step, `cogitans ask` and `cogitans serve`.

`respond` runs one batch of query embeddings through the swarm: memory lookup -> gossip picks
k agents per query -> every colony answers its pairs in one batched pass -> consensus over agent
answers and memory hits. `learn` applies rewards the way a step does: fitness with decay, memory
vectors, niche profiles and counters of the agents that answered, then each query's best agent
answer is stored in the shared memory. `SwarmModel.step` is `respond`, feedback, `learn` and
`SwarmModel.reproduce`; ask and serve call the same functions, so a served question takes
exactly the path a simulated one does.

Every random draw (gossip) comes from the model's generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch.nn.functional import normalize

from swarm import consensus, gossip
from swarm.memory import Hits

if TYPE_CHECKING:
    from swarm.model import SwarmModel


@dataclass
class Response:
    """The swarm's work on B queries with fanout k and h memory hits per query."""

    queries: torch.Tensor  # (B, D) unit query embeddings
    hits: Hits  # (B, h) memory hits
    chosen: torch.Tensor  # (B, k) global slot (colony * capacity + slot) of each answering agent
    routed: torch.Tensor  # (B, k) bool: slot routed to the author of a memory hit
    responses: torch.Tensor  # (B, k, D) the agents' answers (unit; malicious ones environment.malicious_scale long)
    weight: torch.Tensor  # (B, k + h) consensus weight: agent fitness, then hit fitness x similarity
    valid: torch.Tensor  # (B, k + h) bool: which candidates took part
    answer: torch.Tensor  # (B, D) unit consensus answer

    @property
    def candidates(self) -> torch.Tensor:
        """(B, k + h, D) agent answers then memory-hit answers, as the consensus saw them."""
        return torch.cat([self.responses, self.hits.response], 1)


def respond(model: SwarmModel, queries: torch.Tensor, target: torch.Tensor | None = None) -> Response:
    """Run gossip, the agents, the memory lookup and consensus for a batch of queries.

    Args:
        model: the swarm (its generator draws the gossip).
        queries: (B, D) unit query embeddings.
        target: (B, D) the right answers when known (simulation). Malicious agents push their
            answers away from it, `environment.malicious_scale` long; without a target (a person's
            question) they answer as they are.

    Returns:
        The `Response`; nothing in the model changes except the generator's state.
    """
    spec = model.spec
    b, k = len(queries), spec.gossip.fanout
    hits = model.memory.lookup(queries)

    alive = model._global("alive").nonzero().squeeze(1)  # (N,)
    chosen, routed = gossip.assign(
        alive, model._locate(hits.agent_id), k, spec.gossip.routed_fraction, model.gen
    )  # (B, k)
    pair_agent = chosen.flatten()  # (B k,)
    pair_query = torch.arange(b).repeat_interleave(k)  # (B k,)
    answers = model.backend.answer(model, pair_agent, queries[pair_query]).view(b, k, -1)  # (B, k, D)
    if target is not None:
        bad = model._global("malicious")[chosen]  # (B, k) adversarial agents answer away from the target
        if bool(bad.any()):
            scale = spec.environment.malicious_scale  # an attacker is not bound to unit norm
            pushed = scale * normalize(0.5 * answers - target.unsqueeze(1), dim=-1)
            answers = torch.where(bad.unsqueeze(-1), pushed, answers)

    fitness = model._global("fitness")  # (C S,)
    candidates = torch.cat([answers, hits.response], 1)  # (B, k + h, D)
    weight = torch.cat([fitness[chosen], hits.fitness * hits.similarity], 1)
    valid = torch.cat([torch.ones(b, k, dtype=torch.bool), hits.valid], 1)
    answer = consensus.REGISTRY[spec.consensus.rule](candidates, weight, valid, spec.consensus)
    return Response(queries, hits, chosen, routed, answers, weight, valid, answer)


def learn(model: SwarmModel, response: Response, rewards: torch.Tensor, niche: torch.Tensor, step: int) -> None:
    """Apply rewards to the agents that answered and store the answers, as a step does.

    Args:
        model: the swarm.
        response: what `respond` returned for these queries.
        rewards: (B, k) reward of each agent answer (the environment's graded feedback).
        niche: (B,) int64 niche of each query (the agents' niche profiles count it).
        step: the step the interaction belongs to (memory timestamps, last-served marks).
    """
    spec = model.spec
    b, k = response.chosen.shape
    pair_agent = response.chosen.flatten()  # (B k,)
    pair_query = torch.arange(b).repeat_interleave(k)  # (B k,)
    decay = math.exp(-1.0 / spec.fitness.tau)
    model.backend.record(model, pair_agent, rewards.flatten(), niche[pair_query], response.queries[pair_query],
                         step, decay)
    model._store(response.queries, response.responses, rewards, response.chosen, step)
