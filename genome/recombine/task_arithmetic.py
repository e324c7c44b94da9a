"""Task arithmetic (Ilharco et al. 2023): base + lambda * sum_i weight_i * (model_i - base).

With ``normalize`` the sum is divided by the sum of weights (a weighted mean of task vectors).
"""

from __future__ import annotations

import torch

from genome.recombine.sparsify import combine
from genome.recombine.task import Chunk, MergeTask


def prepare(task: MergeTask) -> None:
    """No statistics: the merge is elementwise."""
    return


def apply(task: MergeTask, chunk: Chunk, stats: None) -> torch.Tensor:
    """(G, L) merged values of one chunk."""
    return combine(task, chunk.xs - chunk.base, chunk.base)
