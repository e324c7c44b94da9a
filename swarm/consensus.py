"""Consensus rules: combine candidate answers (agents' and memory hits') into one per query.

Every rule takes candidates (B, n, D), their fitness (B, n) and a validity mask (B, n), and
returns (B, D) unit answers. `REGISTRY` maps the spec's `consensus.rule` to the function.
With `unit=False` a rule returns the raw aggregate instead (not normalised): the experience
exchange (swarm/sharing/) aggregates shared updates and fitness reports with the same rules.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn.functional import normalize

from swarm.params import ConsensusParams


def _out(z: torch.Tensor, unit: bool) -> torch.Tensor:
    return normalize(z, dim=-1) if unit else z


def weighted_mean(x: torch.Tensor, fitness: torch.Tensor, valid: torch.Tensor, p: ConsensusParams, unit: bool = True) -> torch.Tensor:
    """Softmax(fitness / temperature)-weighted mean of the valid candidates."""
    logits = (fitness / p.temperature).masked_fill(~valid, float("-inf"))  # (B, n)
    w = torch.softmax(logits, dim=1).nan_to_num(0.0)  # a row with no candidate gets zeros
    return _out((w.unsqueeze(-1) * x).sum(1), unit)


def median(x: torch.Tensor, fitness: torch.Tensor, valid: torch.Tensor, p: ConsensusParams, unit: bool = True) -> torch.Tensor:
    """Coordinate-wise median of the valid candidates (robust to a minority of outliers)."""
    masked = x.masked_fill(~valid.unsqueeze(-1), float("nan"))
    return _out(torch.nanmedian(masked, dim=1).values.nan_to_num(0.0), unit)


def trimmed_mean(x: torch.Tensor, fitness: torch.Tensor, valid: torch.Tensor, p: ConsensusParams, unit: bool = True) -> torch.Tensor:
    """Coordinate-wise mean after dropping floor(trim x n_valid) values at each end."""
    n_valid = valid.sum(1, keepdim=True)  # (B, 1)
    cut = torch.floor(p.trim * n_valid.float()).long()  # (B, 1)
    sorted_x = x.masked_fill(~valid.unsqueeze(-1), float("inf")).sort(dim=1).values  # invalid last
    rank = torch.arange(x.shape[1]).view(1, -1)  # (1, n)
    keep = (rank >= cut) & (rank < n_valid - cut)  # (B, n)
    total = sorted_x.masked_fill(~keep.unsqueeze(-1), 0.0).sum(1)
    return _out(total / keep.sum(1, keepdim=True).clamp_min(1), unit)


def mean(x: torch.Tensor, fitness: torch.Tensor, valid: torch.Tensor, p: ConsensusParams, unit: bool = True) -> torch.Tensor:
    """Plain mean of the valid candidates (no robustness; the reference for the others)."""
    w = valid.float().unsqueeze(-1)
    return _out((w * x).sum(1) / w.sum(1).clamp_min(1.0), unit)


def geometric_median(x: torch.Tensor, fitness: torch.Tensor, valid: torch.Tensor, p: ConsensusParams,
                     iterations: int = 32, eps: float = 1e-6, unit: bool = True) -> torch.Tensor:
    """The point minimising the summed distance to the valid candidates (Weiszfeld's iteration).

    Breakdown point 1/2: up to half the candidates can be arbitrary without moving it far.
    """
    w = valid.float()  # (B, n)
    z = (w.unsqueeze(-1) * x).sum(1) / w.sum(1, keepdim=True).clamp_min(1.0)  # (B, D) start at the mean
    for _ in range(iterations):
        dist = (x - z.unsqueeze(1)).norm(dim=-1).clamp_min(eps)  # (B, n)
        inv = w / dist
        z = (inv.unsqueeze(-1) * x).sum(1) / inv.sum(1, keepdim=True).clamp_min(eps)
    return _out(z, unit)


def krum(x: torch.Tensor, fitness: torch.Tensor, valid: torch.Tensor, p: ConsensusParams, unit: bool = True) -> torch.Tensor:
    """The candidate closest to its n - f - 2 nearest neighbours (Blanchard et al. 2017).

    f, the number of candidates assumed Byzantine, is floor(trim x n_valid) per query.
    """
    n_valid = valid.sum(1)  # (B,)
    dist = torch.cdist(x, x).pow(2)  # (B, n, n)
    pair_ok = valid.unsqueeze(1) & valid.unsqueeze(2)
    dist = dist.masked_fill(~pair_ok, float("inf"))
    nearest = dist.sort(dim=2).values[:, :, 1:]  # drop the distance to itself
    f = torch.floor(p.trim * n_valid.float()).long()
    m = (n_valid - f - 2).clamp_min(1)  # (B,) neighbours counted
    rank = torch.arange(nearest.shape[2]).view(1, 1, -1)
    score = nearest.masked_fill(rank >= m.view(-1, 1, 1), 0.0).nan_to_num(posinf=0.0).sum(2)  # (B, n)
    score = score.masked_fill(~valid, float("inf"))
    best = score.argmin(1)  # (B,)
    return _out(x[torch.arange(len(x)), best], unit)


Rule = Callable[..., torch.Tensor]  # (x, fitness, valid, params, unit=True) -> (B, D)

REGISTRY: dict[str, Rule] = {
    "weighted_mean": weighted_mean,
    "median": median,
    "trimmed_mean": trimmed_mean,
    "geometric_median": geometric_median,
    "krum": krum,
    "mean": mean,
}
