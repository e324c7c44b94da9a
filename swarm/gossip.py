"""Gossip: which agents answer which query.

Each query goes to k = `fanout` agents, and no agent serves more than L = ceil(B k / N) queries a
step (N living agents, B queries), so the batched forward pass needs almost no padding.

1. Routed slots: round(routed_fraction x k) of each query's slots go to the authors of its best
   memory hits (alive, distinct, best first), an author taking at most L routed queries.
2. Random slots: the rest are dealt from a random permutation of the population, round-robin,
   each agent taking what is left of its L. Consecutive slots get different agents, so a query's
   k agents are distinct except, rarely, at the end of a round or when an agent was also routed.
"""

from __future__ import annotations

import math

import torch


def _routed(hit_agents: torch.Tensor, r: int, cap: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rows, slot, author) of routed assignments: r per query at most, cap per author."""
    h = hit_agents
    same = (h.unsqueeze(2) == h.unsqueeze(1)) & (h.unsqueeze(1) >= 0)  # (B, h, h)
    earlier = torch.tril(torch.ones(h.shape[1], h.shape[1], dtype=torch.bool), -1)
    usable = (h >= 0) & ~(same & earlier).any(2)  # (B, h) first appearance of a living author
    rank = torch.cumsum(usable.long(), 1) - 1
    usable &= rank < r
    rows, cols = usable.nonzero(as_tuple=True)
    authors = h[rows, cols]
    if len(rows) == 0:
        return rows, cols, authors
    order = torch.argsort(authors, stable=True)  # earlier queries keep their routed slot
    _, group, counts = torch.unique(authors[order], return_inverse=True, return_counts=True)
    within = torch.arange(len(order)) - (torch.cumsum(counts, 0) - counts)[group]
    keep = torch.empty(len(order), dtype=torch.bool)
    keep[order] = within < cap
    return rows[keep], rank[rows[keep], cols[keep]], authors[keep]


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
    cap = math.ceil(b * fanout / n)  # L: most queries any agent serves this step
    chosen = torch.full((b, fanout), -1, dtype=torch.long)
    routed = torch.zeros(b, fanout, dtype=torch.bool)
    load = torch.zeros(n, dtype=torch.long)  # per position in `alive`
    r = round(routed_fraction * fanout)
    if r > 0 and hit_agents.shape[1] > 0:
        rows, slot, authors = _routed(hit_agents, r, cap)
        chosen[rows, slot] = authors
        routed[rows, slot] = True
        position = torch.searchsorted(alive, authors)  # alive is sorted ascending
        load.index_add_(0, position, torch.ones_like(position))

    # deal the free slots round-robin over a random permutation, each agent up to its L
    perm = torch.randperm(n, generator=gen)  # (N,) positions in `alive`
    left = cap - load[perm]  # (N,)
    dealt = perm.repeat_interleave(left)  # each agent once per remaining unit of load
    round_of = torch.arange(len(dealt)) - (torch.cumsum(left, 0) - left).repeat_interleave(left)
    sequence = dealt[torch.argsort(round_of * n + torch.arange(n).repeat_interleave(left), stable=True)]
    free = ~routed
    chosen[free] = alive[sequence[: int(free.sum())]]
    return chosen, routed
