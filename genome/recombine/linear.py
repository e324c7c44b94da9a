"""Linear merge (model soups, Wortsman et al. 2022): sum_i weight_i * model_i.

With ``normalize`` (the default) the sum is divided by the sum of the weights: a weighted mean.
"""

from __future__ import annotations

import torch

from genome.recombine.task import Chunk, MergeTask


def prepare(task: MergeTask) -> None:
    """No statistics: the merge is elementwise."""
    return


def apply(task: MergeTask, chunk: Chunk, stats: None) -> torch.Tensor:
    """(G, L) merged values of one chunk."""
    w = task.param("weight")  # (M,)
    out = torch.einsum("m,mgl->gl", w, chunk.xs)
    if task.options.get("normalize", True):
        out = out / float(w.sum())  # a zero sum is refused when the merge is planned
    return out
