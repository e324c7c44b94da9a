"""Colonies of different embedding widths: canonical vectors to a colony's width and back.

The canonical width is `brain.embed_dim`: queries, consensus, the shared memory and every shared
batch live there. A colony whose agents are w wide gets its queries mapped down to w and its
answers mapped back up before consensus and storage (genome.align does the projections):

- pad: zero-pad D -> w (w >= D) and slice back (exact);
- interpolate: linear resampling of the feature axis, both ways;
- pca: the top w principal axes of a sample of canonical queries (w <= D), and their transpose
  plus the sample mean back;
- learned: the colony sees the world through an encoder of its own, a seeded random linear map
  D -> w (Gaussian, entries N(0, 1/w), so norms are kept on average; it stands in for a different
  model embedding the same content, with no coordinate lined up with the canonical ones). The way
  back is genome.align's learned projection: a least-squares affine map w -> D fitted on paired
  samples (the colony's encoding of a canonical query, that query). Either width works; narrower
  colonies lose what their w dimensions cannot hold (tests/swarm/sharing/test_widths.py measures
  the round trip).

An adapter has no state beyond its construction: `attach_width_adapters` builds it from draws of
the model's generator at model construction, so a model rebuilt from the same spec and seed (a
resume) has the same encoders and fits.
"""

from __future__ import annotations

import torch
from torch.nn.functional import normalize

from genome.align import align, fit_pca, fit_projection, interpolate

METHODS = ("pad", "interpolate", "pca", "learned")


class WidthAdapter:
    """Maps (N, D) canonical vectors to (N, w) and back.

    Args:
        canonical: D. width: w. method: one of `METHODS`.
        sample: (N, D) canonical vectors; pca fits its axes on them, learned its way back.
        gen: learned: the generator that draws the colony's encoder (D, w).
    """

    def __init__(self, canonical: int, width: int, method: str, sample: torch.Tensor | None = None,
                 gen: torch.Generator | None = None):
        self.canonical, self.width, self.method = canonical, width, method
        self.fit = self.encoder = None
        if method not in METHODS:
            raise ValueError(f"unknown width alignment {method!r}; expected one of {', '.join(METHODS)}")
        if method in ("pca", "learned") and sample is None:
            raise ValueError(f"{method} width alignment needs a sample of canonical vectors")
        if method == "pca":
            self.fit = fit_pca(sample, width)
            self.mean = sample.float().mean(0)  # (D,)
        elif method == "learned":
            if gen is None:
                raise ValueError("learned width alignment needs a generator for the colony's encoder")
            self.encoder = torch.randn(canonical, width, generator=gen) / width**0.5  # (D, w)
            self.back = fit_projection(sample.float() @ self.encoder, sample)  # w -> D, least squares

    def down(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D) canonical -> (N, w) colony width."""
        if self.width == self.canonical and self.encoder is None:
            return x
        if self.encoder is not None:
            return x.float() @ self.encoder
        if self.fit is not None:
            return self.fit.apply(x)
        return align(x, self.width, self.method)

    def up(self, y: torch.Tensor) -> torch.Tensor:
        """(N, w) colony answers -> (N, D) unit canonical answers."""
        if self.width == self.canonical and self.encoder is None:
            return y
        if self.encoder is not None:
            return normalize(self.back.apply(y), dim=-1)
        if self.fit is not None:
            return normalize(y @ self.fit.weight.T + self.mean, dim=-1)
        if self.method == "pad":
            return normalize(y[:, : self.canonical], dim=-1)
        return normalize(interpolate(y, self.canonical), dim=-1)
