"""Gossip: which agents answer which query.

Each query goes to k = `fanout` agents. The random part is balanced: one random permutation of
the living population is laid along the B x k slots, so every agent gets either floor or ceil of
B k / N queries and each query gets k distinct agents (when k <= N). Then round(routed_fraction x k)
of each query's slots go to the authors of its best memory hits (alive, distinct), each author
taking at most 4 ceil(B k / N) routed queries a step so no agent is swamped.
"""

from __future__ import annotations

import math

import torch

ROUTED_CAP = 4  # an author takes at most this many times the average load in routed queries


def assign(
    alive: torch.Tensor,
    hit_agents: torch.Tensor,
    fanout: int,
    routed_fraction: float,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick the agents for every query.

    Args:
        alive: (N,) global indices of living agents.
        hit_agents: (B, h) global index of the author of each memory hit, best first; -1 if none
            or if the author is dead.
        fanout: k agents per query.
        routed_fraction: share of the k slots routed to memory-hit authors.

    Returns:
        (B, k) global agent index per query slot, and a (B, k) bool mask of routed slots.
    """
    b, n = hit_agents.shape[0], len(alive)
    perm = alive[torch.randperm(n, generator=gen)]  # (N,)
    slots = torch.arange(b * fanout) % n
    chosen = perm[slots].view(b, fanout)  # (B, k)
    routed = torch.zeros(b, fanout, dtype=torch.bool)
    r = round(routed_fraction * fanout)
    if r == 0 or hit_agents.shape[1] == 0:
        return chosen, routed

    # distinct authors per row, best first: drop an author already seen earlier in the row
    h = hit_agents
    same = (h.unsqueeze(2) == h.unsqueeze(1)) & (h.unsqueeze(1) >= 0)  # (B, h, h)
    earlier = torch.tril(torch.ones(h.shape[1], h.shape[1], dtype=torch.bool), -1)
    usable = (h >= 0) & ~(same & earlier).any(2)  # (B, h)
    rank = torch.cumsum(usable.long(), 1) - 1
    usable &= rank < r

    # cap routed load per agent: an author keeps its first `cap` routed queries of the step
    rows, cols = usable.nonzero(as_tuple=True)
    if len(rows) == 0:
        return chosen, routed
    authors = h[rows, cols]
    order = torch.argsort(authors, stable=True)
    _, group, counts = torch.unique(authors[order], return_inverse=True, return_counts=True)
    within = torch.arange(len(order)) - (torch.cumsum(counts, 0) - counts)[group]
    keep = torch.empty(len(order), dtype=torch.bool)
    keep[order] = within < ROUTED_CAP * math.ceil(b * fanout / max(n, 1))
    rows, cols, authors = rows[keep], cols[keep], authors[keep]
    slot = rank[rows, cols]
    chosen[rows, slot] = authors
    routed[rows, slot] = True
    return chosen, routed
