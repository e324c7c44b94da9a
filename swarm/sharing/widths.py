"""Colonies of different embedding widths: canonical vectors to a colony's width and back.

The canonical width is `brain.embed_dim`: queries, consensus, the shared memory and every shared
batch live there. A colony whose agents are w wide gets its queries mapped down to w and its
answers mapped back up before consensus and storage (genome.align does the projections):

- pad: zero-pad D -> w (w >= D) and slice back (exact);
- interpolate: linear resampling of the feature axis, both ways;
- pca: the top w principal axes of a sample of canonical queries (w <= D), and their transpose
  plus the sample mean back.
"""

from __future__ import annotations

import torch
from torch.nn.functional import normalize

from genome.align import align, fit_pca, interpolate


class WidthAdapter:
    """Maps (N, D) canonical vectors to (N, w) and back; `sample` (N, D) fits pca."""

    def __init__(self, canonical: int, width: int, method: str, sample: torch.Tensor | None = None):
        self.canonical, self.width, self.method = canonical, width, method
        self.fit = None
        if method == "pca":
            if sample is None:
                raise ValueError("pca width alignment needs a sample of canonical vectors")
            self.fit = fit_pca(sample, width)
            self.mean = sample.float().mean(0)  # (D,)
        elif method not in ("pad", "interpolate"):
            raise ValueError(f"unknown width alignment {method!r}; expected pad, interpolate or pca")

    def down(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D) canonical -> (N, w) colony width."""
        if self.width == self.canonical:
            return x
        if self.fit is not None:
            return self.fit.apply(x)
        return align(x, self.width, self.method)

    def up(self, y: torch.Tensor) -> torch.Tensor:
        """(N, w) colony answers -> (N, D) unit canonical answers."""
        if self.width == self.canonical:
            return y
        if self.fit is not None:
            return normalize(y @ self.fit.weight.T + self.mean, dim=-1)
        if self.method == "pad":
            return normalize(y[:, : self.canonical], dim=-1)
        return normalize(interpolate(y, self.canonical), dim=-1)
