"""Experience sharing between colonies (DESIGN.md system 4): widths, BitDelta batches, registry, voting.

Public names: `Exchange` (what a `SwarmModel` with `sharing.enabled` holds), `METRICS` (its
metric names), `ExperienceRegistry`, `VoteBook`, `WidthAdapter`, `colony_brains` and
`attach_width_adapters` (colonies of different widths).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from swarm.params import BrainParams, SwarmSpec
from swarm.sharing.exchange import METRICS, Exchange
from swarm.sharing.registry import ExperienceRegistry
from swarm.sharing.voting import VoteBook
from swarm.sharing.widths import WidthAdapter

if TYPE_CHECKING:
    from swarm.model import SwarmModel

__all__ = ["METRICS", "Exchange", "ExperienceRegistry", "VoteBook", "WidthAdapter", "attach_width_adapters",
           "colony_brains"]


def colony_brains(spec: SwarmSpec) -> list[BrainParams]:
    """Each colony's brain settings: `brain` with `embed_dim` = its `sharing.widths` entry."""
    if not spec.sharing.widths:
        return [spec.brain] * spec.colony.count
    return [spec.brain.model_copy(update={"embed_dim": w}) for w in spec.sharing.widths]


def attach_width_adapters(model: SwarmModel) -> None:
    """Give every colony whose width differs from the canonical one a `WidthAdapter`.

    pca and learned fit on canonical queries drawn from the environment with a generator of their
    own (seeded from one draw of the model's), so the fit does not depend on when it happens;
    learned draws colony c's encoder from that seed + 1 + c. Same spec and seed, same adapters.
    """
    d, method = model.spec.brain.embed_dim, model.spec.sharing.align
    sample, seed = None, 0
    if method in ("pca", "learned"):
        seed = int(torch.randint(0, 2**62, (1,), generator=model.gen))
        sample = model.environment.sample(0, torch.Generator().manual_seed(seed), batch=max(4 * d, 256)).queries
    for colony in model.colonies:
        w = colony.brain_params.embed_dim
        if w != d:
            gen = torch.Generator().manual_seed(seed + 1 + colony.index) if method == "learned" else None
            colony.adapter = WidthAdapter(d, w, method, sample, gen)
