"""Spherical linear interpolation between the base model (t = 0) and one other model (t = 1).

The angle is taken between the two whole tensors (per group):
theta = arccos(<v0, v1> / (|v0| |v1|)); the result is
sin((1 - t) theta) / sin(theta) * v0 + sin(t theta) / sin(theta) * v1, on the unnormalised
tensors. Nearly parallel tensors (|cos| > 0.9995), where the formula divides by almost zero, and
zero tensors fall back to linear interpolation (1 - t) v0 + t v1.
"""

from __future__ import annotations

import math

import torch

from genome.recombine.task import Chunk, MergeTask

PARALLEL = 0.9995


def prepare(task: MergeTask) -> tuple[torch.Tensor, torch.Tensor]:
    """Interpolation coefficients (s0, s1) per group: two float64 (G,)."""
    dot = torch.zeros(task.groups, dtype=torch.float64)
    n0 = torch.zeros_like(dot)
    n1 = torch.zeros_like(dot)
    for c in task.chunks():
        v0, v1 = c.base.double(), c.xs[0].double()  # (G, L)
        dot += (v0 * v1).sum(-1)
        n0 += (v0 * v0).sum(-1)
        n1 += (v1 * v1).sum(-1)
    t = float(task.options["t"])
    norms = (n0 * n1).sqrt()
    cos = torch.where(norms > 1e-16, dot / norms.clamp_min(1e-300), torch.ones_like(dot)).clamp(-1.0, 1.0)
    theta = torch.arccos(cos)
    sin = torch.sin(theta)
    lerp = cos.abs() > PARALLEL
    safe = torch.where(lerp, torch.ones_like(sin), sin)
    s0 = torch.where(lerp, torch.full_like(sin, 1.0 - t), torch.sin((1.0 - t) * theta) / safe)
    s1 = torch.where(lerp, torch.full_like(sin, t), torch.sin(t * theta) / safe)
    return s0, s1


def apply(task: MergeTask, chunk: Chunk, coef: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """(G, L) interpolated values of one chunk."""
    s0, s1 = (c.float().unsqueeze(-1) for c in coef)
    return s0 * chunk.base + s1 * chunk.xs[0]


def angle(a: torch.Tensor, b: torch.Tensor) -> float:
    """Angle between two tensors in radians (for reports and tests)."""
    cos = float((a.double() * b.double()).sum() / (a.double().norm() * b.double().norm()))
    return math.acos(max(-1.0, min(1.0, cos)))
