"""Population statistics that are more than a mean."""

from __future__ import annotations

import math

import torch


def specialization_index(niche_served: torch.Tensor, min_served: float) -> float:
    """How much each agent's work concentrates on few niches, averaged over agents.

    For agent i with served-query shares p_i over K niches, s_i = 1 - H(p_i) / log K, where H is
    the Shannon entropy. The index is the mean of s_i over agents that served at least
    `min_served` queries: about 0 when every agent serves all niches alike (generalists), 1 when
    every agent serves a single niche. With n queries per agent, sampling noise alone gives about
    (K - 1) / (2 n log K).

    Args:
        niche_served: (N, K) queries served per niche by each living agent.
        min_served: agents with fewer served queries are left out.
    """
    k = niche_served.shape[1]
    n = niche_served.sum(1)
    keep = n >= min_served
    if k < 2 or not bool(keep.any()):
        return 0.0
    p = niche_served[keep] / n[keep].unsqueeze(1)
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum(1)
    return float((1.0 - entropy / math.log(k)).mean())


def quantiles(values: torch.Tensor, qs: tuple[float, ...]) -> list[float]:
    """Quantiles of a 1-D tensor; zeros when it is empty."""
    if len(values) == 0:
        return [0.0] * len(qs)
    return torch.quantile(values.float(), torch.tensor(qs)).tolist()
