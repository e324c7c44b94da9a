"""Quality voting on shared entries, one vote per identity, weighted by standing.

Colonies vote on the shared entries their queries met, from their own feedback (the rule is in
swarm/sharing/exchange.py: approve an entry that helps and delivers what its author claimed).
Votes live in a (slots, identities) table of the shared memory's slots, so each identity counts once per entry (its latest vote). An entry whose
weighted approval falls under `approval` (0.66) once at least `min_weight` of votes are in is
voted out.

Sybil resistance: an identity's weight is 0 until it has served `min_served` queries, so
identities made up for voting count for nothing. After that its weight is its reputation, the
smoothed approval its own entries received from others ((1 + approvals) / (2 + votes)), times its
agreement: the smoothed share of its votes that agreed with the weighted tally already standing on
the entry. A colony that floods the memory with junk sees its entries rejected, and a colony that votes
against the others (inverting its votes) disagrees with the tallies it joins: both lose their weight.
"""

from __future__ import annotations

import torch


class VoteBook:
    """Votes on `slots` memory slots by `voters` identities."""

    def __init__(self, slots: int, voters: int, approval: float = 0.66, min_weight: float = 1.0,
                 min_served: int = 100):
        self.approval, self.min_weight, self.min_served = approval, min_weight, min_served
        self.votes = torch.zeros(slots, voters, dtype=torch.int8)  # +1 approve, -1 reject, 0 none
        self.author = torch.full((slots,), -1, dtype=torch.int64)  # identity that shared the entry
        self.claim = torch.zeros(slots)  # the fitness its author claimed when sharing it
        self.served = torch.zeros(voters, dtype=torch.int64)
        self.received = torch.zeros(voters, 2, dtype=torch.float64)  # weighted approvals, weighted votes
        self.agreed = torch.zeros(voters, 2, dtype=torch.float64)  # votes agreeing with the standing tally, votes compared

    def reset(self, slots: torch.Tensor, author: torch.Tensor, claim: torch.Tensor | None = None) -> None:
        """Slots now hold new entries shared by `author` claiming fitness `claim` (no votes yet)."""
        self.votes[slots] = 0
        self.author[slots] = author
        self.claim[slots] = 0.0 if claim is None else claim.float()

    def serve(self, counts: torch.Tensor) -> None:
        """Add (V,) queries served per identity."""
        self.served += counts

    def reputation(self) -> torch.Tensor:
        """(V,) smoothed weighted approval of each identity's entries by others, in (0, 1); 0.5 at the start."""
        return (1.0 + self.received[:, 0]) / (2.0 + self.received[:, 1])

    def agreement(self) -> torch.Tensor:
        """(V,) smoothed share of each identity's votes that agreed with the weighted tally they joined."""
        return (1.0 + self.agreed[:, 0]) / (2.0 + self.agreed[:, 1])

    def weight(self) -> torch.Tensor:
        """(V,) voting weight: 0 before `min_served` queries, then reputation x agreement."""
        w = self.reputation() * self.agreement()
        return torch.where(self.served >= self.min_served, w, torch.zeros_like(w))

    def cast(self, slots: torch.Tensor, voter: torch.Tensor, approve: torch.Tensor) -> None:
        """(n,) votes: identity `voter` approves (or rejects) the entry in `slots`. Own entries are skipped."""
        own = self.author[slots] == voter
        slots, voter, approve = slots[~own], voter[~own], approve[~own]
        if not len(slots):
            return
        weight = self.weight()  # (V,)
        rows = self.votes[slots].float()  # (n, V) the votes already in
        yes, total = ((rows > 0).float() @ weight.float()), ((rows != 0).float() @ weight.float())  # (n,)
        compared = (total > 0) & (rows[torch.arange(len(slots)), voter] == 0)  # an identity's first vote on it only
        agree = (approve == (yes >= self.approval * total)) & compared
        self.agreed.index_put_((voter, torch.zeros_like(voter)), agree.double(), accumulate=True)
        self.agreed.index_put_((voter, torch.ones_like(voter)), compared.double(), accumulate=True)
        self.votes[slots, voter] = torch.where(approve, 1, -1).to(torch.int8)
        w = weight[voter]  # (n,) the voter's standing when it voted
        author = self.author[slots]
        has = author >= 0
        self.received.index_put_((author[has], torch.zeros_like(author[has])), (w * approve)[has], accumulate=True)
        self.received.index_put_((author[has], torch.ones_like(author[has])), w[has], accumulate=True)

    def tally(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(S,) weighted approval in [0, 1] (1 without votes) and (S,) total weight of the votes."""
        w = self.weight().float()  # (V,)
        yes = ((self.votes > 0).float() * w).sum(1)
        total = ((self.votes != 0).float() * w).sum(1)
        return torch.where(total > 0, yes / total.clamp_min(1e-12), torch.ones_like(total)), total

    def voted_out(self, tally: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """(S,) bool: entries with enough weighted votes and approval under the threshold
        (from `tally`, this book's `tally()` when not given)."""
        approval, total = self.tally() if tally is None else tally
        return (total >= self.min_weight) & (approval < self.approval)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"votes": self.votes, "author": self.author, "claim": self.claim, "served": self.served,
                "received": self.received, "agreed": self.agreed}

    def load_state_dict(self, d: dict[str, torch.Tensor]) -> None:
        names = ("votes", "author", "claim", "served", "received", "agreed")
        for name in names:
            if d[name].shape != getattr(self, name).shape:
                raise ValueError(f"vote book {name} of shape {tuple(d[name].shape)}, "
                                 f"{tuple(getattr(self, name).shape)} expected")
        for name in names:
            setattr(self, name, d[name].clone())
