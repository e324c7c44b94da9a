"""DARE (Yu et al. 2024): drop each delta value at random, rescale the survivors by 1/density.

`dare_linear` then adds the weighted deltas (task arithmetic); `dare_ties` adds them with TIES
sign election. Draws are seeded per (config seed, tensor name, chunk): the same config gives
the same merge.
"""

from __future__ import annotations

import torch

from genome.recombine.sparsify import combine, keep_random
from genome.recombine.task import Chunk, MergeTask


def prepare(task: MergeTask) -> None:
    """No statistics: drops are independent per value."""
    return


def apply(task: MergeTask, chunk: Chunk, stats: None) -> torch.Tensor:
    """(G, L) merged values of one chunk."""
    density = task.param("density")  # (M,)
    delta = (chunk.xs - chunk.base).masked_fill_(~keep_random(task, chunk, density), 0.0)
    if task.options.get("rescale"):
        delta.div_(density.clamp_min(1e-12).view(-1, 1, 1))
    return combine(task, delta, chunk.base)
