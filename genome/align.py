"""Project embeddings of any width to one canonical width (torch).

Four ways, one registry:

- ``pad``: zero-pad the feature axis (widening only; exact, invertible by slicing).
- ``interpolate``: linear resampling of the feature axis (either direction; treats features as
  an ordered signal, so it is crude but needs no data).
- ``pca``: fit principal axes on a sample (narrowing only), project onto the top k.
- ``learned``: least-squares linear map (with bias) fitted on paired samples of the same items
  embedded by the source and by the canonical model; ridge-regularised.

Fitting returns a small frozen `Projection` (weight (d_in, d_out), bias (d_out,)), applied with
`Projection.apply`; ``pad`` and ``interpolate`` need no fit. `align` is the one-call entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

ALIGN_METHODS = ("pad", "interpolate", "pca", "learned")


@dataclass(frozen=True)
class Projection:
    """An affine map x -> x @ weight + bias. weight: (d_in, d_out); bias: (d_out,)."""

    weight: torch.Tensor
    bias: torch.Tensor

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Project (N, d_in) -> (N, d_out)."""
        _check_2d(x, self.weight.shape[0])
        return x.float() @ self.weight + self.bias


def _check_2d(x: torch.Tensor, d_in: int | None = None) -> None:
    if x.dim() != 2:
        raise ValueError(f"expected embeddings of shape (N, d), got {tuple(x.shape)}")
    if d_in is not None and x.shape[1] != d_in:
        raise ValueError(f"expected width {d_in}, got {x.shape[1]}")


def pad(x: torch.Tensor, d_out: int) -> torch.Tensor:
    """Zero-pad (N, d_in) -> (N, d_out); d_out >= d_in."""
    _check_2d(x)
    if d_out < x.shape[1]:
        raise ValueError(f"pad widens only: width {x.shape[1]} > target {d_out}; use pca or interpolate")
    return torch.nn.functional.pad(x.float(), (0, d_out - x.shape[1]))


def interpolate(x: torch.Tensor, d_out: int) -> torch.Tensor:
    """Linearly resample the feature axis (N, d_in) -> (N, d_out) (end points kept)."""
    _check_2d(x)
    if x.shape[1] == d_out:
        return x.float().clone()
    y = torch.nn.functional.interpolate(x.float().unsqueeze(1), size=d_out, mode="linear",
                                        align_corners=x.shape[1] > 1)  # (N, 1, d_out)
    return y.squeeze(1)


def fit_pca(x: torch.Tensor, d_out: int) -> Projection:
    """Principal axes of a sample.

    Args:
        x: (N, d_in) sample, N >= d_out and d_in >= d_out.
        d_out: number of components kept.

    Returns:
        `Projection` with weight (d_in, d_out) = top right-singular vectors (signs fixed so the
        largest loading of each is positive) and bias = -mean @ weight (centres the data).
    """
    _check_2d(x)
    n, d_in = x.shape
    if d_out > min(n, d_in):
        raise ValueError(f"pca needs d_out <= min(samples, width): {d_out} > min({n}, {d_in})")
    xf = x.double()
    mean = xf.mean(dim=0)  # (d_in,)
    _, _, vh = torch.linalg.svd(xf - mean, full_matrices=False)  # vh: (min(n,d_in), d_in)
    comps = vh[:d_out]  # (d_out, d_in)
    signs = torch.sign(comps.gather(1, comps.abs().argmax(dim=1, keepdim=True)))  # (d_out, 1)
    weight = (comps * signs).T.contiguous()  # (d_in, d_out)
    return Projection(weight.float(), (-(mean @ weight)).float())


def fit_projection(src: torch.Tensor, dst: torch.Tensor, ridge: float = 1e-4) -> Projection:
    """Least-squares affine map from paired samples.

    Args:
        src: (N, d_in) source-model embeddings.
        dst: (N, d_out) canonical embeddings of the same N items.
        ridge: L2 penalty on the weight (scaled by the mean feature variance), keeps the
            solve stable when N < d_in.

    Returns:
        `Projection` minimising ||src @ W + b - dst||^2 + ridge * ||W||^2.
    """
    _check_2d(src)
    _check_2d(dst)
    if src.shape[0] != dst.shape[0]:
        raise ValueError(f"paired samples differ in count: {src.shape[0]} vs {dst.shape[0]}")
    s, d = src.double(), dst.double()
    s_mean, d_mean = s.mean(dim=0), d.mean(dim=0)
    sc, dc = s - s_mean, d - d_mean  # (N, d_in), (N, d_out)
    gram = sc.T @ sc  # (d_in, d_in)
    lam = ridge * max(float(gram.diagonal().mean()), 1e-12)
    weight = torch.linalg.solve(gram + lam * torch.eye(gram.shape[0], dtype=gram.dtype), sc.T @ dc)
    return Projection(weight.float(), (d_mean - s_mean @ weight).float())


def align(x: torch.Tensor, d_out: int, method: str = "pad", fit: Projection | None = None) -> torch.Tensor:
    """Project (N, d_in) embeddings to (N, d_out) with one of `ALIGN_METHODS`.

    ``pca`` fits on `x` itself unless `fit` is given; ``learned`` needs `fit` (from
    `fit_projection`). Widths that already match pass through unchanged (as float32).
    """
    _check_2d(x)
    if method not in REGISTRY:
        raise ValueError(f"unknown alignment method {method!r}; expected one of {ALIGN_METHODS}")
    if fit is not None:
        return fit.apply(x)
    if x.shape[1] == d_out:
        return x.float().clone()
    if method == "learned":
        raise ValueError("the learned projection needs a fit: Projection from fit_projection(src, dst)")
    return REGISTRY[method](x, d_out)


REGISTRY: dict[str, Callable[[torch.Tensor, int], torch.Tensor]] = {
    "pad": pad,
    "interpolate": interpolate,
    "pca": lambda x, d: fit_pca(x, d).apply(x),
    "learned": lambda x, d: align(x, d, "learned"),
}
