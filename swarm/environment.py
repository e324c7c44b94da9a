"""Query streams. `REGISTRY` maps a name to an environment constructor.

`niches`: K niches, each a cluster of queries split into L sub-clusters; a hidden teacher maps
every sub-cluster to its own answer vector. The answer bank is all K x L answers, so a response can
be decoded to a discrete label and accuracy measured. Feedback is graded (cosine of the response
to the teacher's target) and a thumbs up above `thumbs_up`.

Shift (`shift_step`): queries come from the first half of the niches until that step, then
from the second half only, to measure how fast a population adapts.

Drift: niche k is drawn with probability proportional to exp(1.5 sin(2 pi (drift t / 100 + k / K))),
so with drift = 0 the mix is uniform and with drift = 0.05 it goes round once every 2,000 steps.

`text_qa` (swarm/text_qa.py): questions in real text from a sentence encoder, answers decoded to
a bank of encoded answers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch.nn.functional import normalize

from swarm.params import EnvironmentParams

DRIFT_AMPLITUDE = 1.5


@dataclass
class QueryBatch:
    queries: torch.Tensor  # (B, D) unit query embeddings
    niche: torch.Tensor  # (B,) int64
    label: torch.Tensor  # (B,) int64 index into the answer bank
    target: torch.Tensor  # (B, D) the teacher's answer


class NicheEnvironment:
    """K niches x L answers each; every random draw comes from the generator passed in."""

    def __init__(self, params: EnvironmentParams, dim: int, gen: torch.Generator):
        self.p = params
        k, l = params.niches, params.answers_per_niche
        centers = normalize(torch.randn(k, 1, dim, generator=gen), dim=-1)  # (K, 1, D)
        offsets = torch.randn(k, l, dim, generator=gen) * (0.6 / math.sqrt(dim))
        self.sub_centers = normalize(centers + offsets, dim=-1).reshape(k * l, dim)  # (K*L, D)
        self.answers = normalize(torch.randn(k * l, dim, generator=gen), dim=-1)  # (K*L, D) bank
        self.dim = dim

    def mix(self, step: int) -> torch.Tensor:
        """(K,) niche probabilities at `step`."""
        k = self.p.niches
        if self.p.shift_step and k >= 2:  # first half of the niches before the shift, second after
            after = torch.arange(k) >= k // 2
            chosen = after if step >= self.p.shift_step else ~after
            return chosen.float() / chosen.sum()
        phase = self.p.drift * step / 100.0 + torch.arange(k, dtype=torch.float64) / k
        logits = DRIFT_AMPLITUDE * torch.sin(2 * math.pi * phase) if self.p.drift > 0 else torch.zeros(k)
        return torch.softmax(logits.float(), 0)

    def sample(self, step: int, gen: torch.Generator, batch: int | None = None) -> QueryBatch:
        b = self.p.batch if batch is None else batch
        l = self.p.answers_per_niche
        niche = torch.multinomial(self.mix(step), b, replacement=True, generator=gen)  # (B,)
        label = niche * l + torch.randint(0, l, (b,), generator=gen)  # (B,)
        noise = torch.randn(b, self.dim, generator=gen) * (self.p.spread / math.sqrt(self.dim))
        queries = normalize(self.sub_centers[label] + noise, dim=-1)
        return QueryBatch(queries=queries, niche=niche, label=label, target=self.answers[label])

    def decode(self, responses: torch.Tensor) -> torch.Tensor:
        """(B, D) responses -> (B,) label of the nearest answer in the bank."""
        return (normalize(responses, dim=-1) @ self.answers.T).argmax(-1)

    def feedback(self, responses: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Graded feedback: cosine of each response to its target, shape (...,) for (..., D)."""
        return (normalize(responses, dim=-1) * target).sum(-1)


def _text_qa(params: EnvironmentParams, dim: int, gen: torch.Generator):
    """The text_qa environment (swarm/text_qa.py), imported only when a spec asks for it."""
    from swarm.text_qa import TextQAEnvironment

    return TextQAEnvironment(params, dim, gen)


# name -> constructor (params, dim, gen) -> environment with sample, decode, feedback and mix
REGISTRY: dict[str, Callable[[EnvironmentParams, int, torch.Generator], Any]] = {
    "niches": NicheEnvironment,
    "text_qa": _text_qa,
}
