"""Passthrough: copy one model's tensor (optionally scaled). With `slices` it stacks layer ranges
of different models into one deeper model (a frankenmerge)."""

from __future__ import annotations

import torch

from genome.recombine.task import Chunk, MergeTask


def prepare(task: MergeTask) -> None:
    """No statistics."""
    return


def apply(task: MergeTask, chunk: Chunk, stats: None) -> torch.Tensor:
    """(G, L): the single source's values times its ``scale``."""
    scale = float(task.params[0].get("scale", 1.0))
    return chunk.xs[0] * scale if scale != 1.0 else chunk.xs[0]
