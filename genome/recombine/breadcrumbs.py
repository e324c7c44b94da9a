"""Model Breadcrumbs (Davari & Belilovsky 2023): drop the largest and the smallest deltas.

Per model and tensor, the `gamma` fraction of largest magnitudes (outliers) is removed, then the
smallest, so that a `density` fraction remains; if gamma + density > 1, fewer outliers go. The
kept deltas are added with their weights (`breadcrumbs`) or with TIES sign election
(`breadcrumbs_ties`).
"""

from __future__ import annotations

import torch

from genome.recombine.sparsify import combine, kth_largest
from genome.recombine.task import Chunk, MergeTask


def prepare(task: MergeTask) -> tuple[torch.Tensor, torch.Tensor]:
    """Upper (outlier) and lower magnitude thresholds per (model, group): two float32 (M, G)."""
    n = task.numel
    keep = (task.param("density").double() * n).floor().long()
    top = (task.param("gamma").double() * n).floor().long()
    top = torch.minimum(top, n - keep)  # hit the density even when gamma + density > 1
    values = lambda c: (c.xs - c.base).abs_()
    upper = kth_largest(task, values, top)  # values >= upper are outliers (inf when top = 0)
    lower = kth_largest(task, values, top + keep)
    return upper, lower


def apply(task: MergeTask, chunk: Chunk, thresholds: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """(G, L) merged values of one chunk."""
    upper, lower = (t.unsqueeze(-1) for t in thresholds)
    delta = chunk.xs - chunk.base  # (M, G, L)
    mag = delta.abs()
    delta.masked_fill_((mag < lower) | (mag >= upper), 0.0)
    return combine(task, delta, chunk.base)
