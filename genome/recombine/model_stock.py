"""Model Stock (Jang et al. 2024): move from the base towards the average of the fine-tunes by
an amount set by the angle between their task vectors.

With N fine-tunes whose offsets from the base have mean pairwise cosine c,
t = N c / (1 + (N - 1) c) and the merge is t * mean(models) + (1 - t) * base. The cosine is
taken over the whole tensor, or per row with ``filter_wise`` (1-D tensors count as one row).
"""

from __future__ import annotations

import torch

from genome.recombine.task import Chunk, MergeTask


def _pair_cos(d: torch.Tensor) -> torch.Tensor:
    """Mean pairwise cosine of offsets d: (M, ..., L) -> (...) float64, from dots and norms."""
    m = d.shape[0]
    d = d.double()
    norms = d.norm(dim=-1)  # (M, ...)
    total = torch.zeros(d.shape[1:-1], dtype=torch.float64)
    for i in range(m):
        for j in range(i + 1, m):
            dot = (d[i] * d[j]).sum(-1)
            total += (dot / (norms[i] * norms[j]).clamp_min(1e-6)).clamp(-1.0, 1.0)
    return total / (m * (m - 1) / 2)


def _ratio(cos: torch.Tensor, n: int) -> torch.Tensor:
    return n * cos / (1 + (n - 1) * cos)


def prepare(task: MergeTask) -> torch.Tensor | None:
    """Per group interpolation ratio t (float64 (G,)), or None with ``filter_wise`` (per row)."""
    if task.options.get("filter_wise"):
        return None
    m = len(task.sources)
    dots = torch.zeros(m, m, task.groups, dtype=torch.float64)
    for c in task.chunks():
        d = (c.xs - c.base).double()  # (M, G, L)
        dots += torch.einsum("igl,jgl->ijg", d, d)
    norms = dots.diagonal(dim1=0, dim2=1).T.sqrt()  # (M, G)
    total = torch.zeros(task.groups, dtype=torch.float64)
    for i in range(m):
        for j in range(i + 1, m):
            total += (dots[i, j] / (norms[i] * norms[j]).clamp_min(1e-6)).clamp(-1.0, 1.0)
    return _ratio(total / (m * (m - 1) / 2), m)


def apply(task: MergeTask, chunk: Chunk, t: torch.Tensor | None) -> torch.Tensor:
    """(G, L) merged values of one chunk (whole rows when ``filter_wise``)."""
    mean = chunk.xs.mean(0)  # (G, L)
    if t is None:
        g, length = chunk.base.shape
        rows = lambda x: x.reshape(*x.shape[:-1], length // task.row_len, task.row_len)
        tr = _ratio(_pair_cos(rows(chunk.xs - chunk.base)), len(task.sources)).float()  # (G, R)
        out = tr.unsqueeze(-1) * rows(mean) + (1 - tr.unsqueeze(-1)) * rows(chunk.base)
        return out.reshape(g, length)
    tf = t.float().unsqueeze(-1)
    return tf * mean + (1 - tf) * chunk.base
