"""TIES merging (Yadav et al. 2023): trim, elect sign, disjoint merge.

Each model's task vector (model - base) keeps its `density` fraction of largest magnitudes
(per tensor); the sign with the larger weighted sum wins per element; the kept deltas of that
sign are averaged, weighted (``normalize``), and added to the base.
"""

from __future__ import annotations

import torch

from genome.recombine.sparsify import combine, counts, keep_top, kth_largest
from genome.recombine.task import Chunk, MergeTask


def prepare(task: MergeTask) -> torch.Tensor:
    """Per (model, group) magnitude threshold of the task vector: float32 (M, G)."""
    k = counts(task, task.param("density"))
    return kth_largest(task, lambda c: (c.xs - c.base).abs_(), k)


def apply(task: MergeTask, chunk: Chunk, thr: torch.Tensor) -> torch.Tensor:
    """(G, L) merged values of one chunk."""
    delta = chunk.xs - chunk.base  # (M, G, L)
    delta.masked_fill_(~keep_top(delta, thr), 0.0)
    return combine(task, delta, chunk.base)
