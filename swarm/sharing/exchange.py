"""The experience exchange: how colonies share memory entries and judge each other's.

Each step every colony packs the entries its agents produced (each query's best answer, when the
best agent is one of its own) into one batch: BitDelta-coded against registry records
(swarm/sharing/codec.py), Merkle-rooted and signed with the colony's Ed25519 identity
(swarm/sharing/batch.py). The receiver checks the batch, appends its records to the experience
registry (swarm/sharing/registry.py), decodes the entries and stores them in the shared memory.
A rejected batch is logged with its reason, counted (`shared_rejected`) and stores nothing.

After feedback, each query's serving colony (the colony of its first agent) votes on the memory
hits it met that are at least `sharing.vote_similarity` similar to the query: approve when the hit's
answer helps (it scored at least the mean reward of the agents' own answers to that query and at least
`sharing.vote_floor`) and delivers what its author claimed (at least the fitness claimed when it was
shared minus `sharing.vote_margin`), reject otherwise. The agents' mean, not their best: an entry as
good as a typical agent is worth keeping. The claim check is what catches a flooder's junk, which
claims fitness 1, and which BitDelta coding against an honest reference makes half useful. Votes are
tallied per identity (swarm/sharing/voting.py); entries under the approval threshold are removed
(`entries_voted_out`). Entries nobody vetted age out: an entry that is `sharing.vet_steps` old without
`sharing.min_vote_weight` of votes is removed (`entries_unvetted_out`) when its author stands low, its
voting weight under `sharing.approval` times the highest identity's (a flooder's junk is rarely met,
so votes alone would leave most of it in memory). Each colony's latest reward for an entry is also a fitness report; the
entry's fitness becomes the robust aggregate (`sharing.aggregate`, a consensus rule) of the
colonies' reports. Malicious colonies (`sharing.malicious_colonies`) invert their votes and
reports and add `sharing.flood` junk entries a step (real queries, random answers, fitness 1).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch
from torch.nn.functional import normalize

from swarm import consensus
from swarm.params import ConsensusParams, SwarmSpec
from swarm.sharing import codec
from swarm.sharing.batch import Identity, SharedBatch, check
from swarm.sharing.entries import entry_rows
from swarm.sharing.registry import ExperienceRegistry
from swarm.sharing.voting import VoteBook

if TYPE_CHECKING:
    from swarm.memory import SharedMemory
    from swarm.query import Response

log = logging.getLogger(__name__)

METRICS = ("shared_batches", "shared_entries", "shared_rejected", "shared_bytes", "shared_ratio",
           "entries_voted_out", "entries_unvetted_out", "registry_size", "malicious_vote_weight")


class Exchange:
    """Identities, registry, reference cache, votes and counters of one swarm's sharing."""

    def __init__(self, spec: SwarmSpec, memory: SharedMemory, gen: torch.Generator):
        p = self.p = spec.sharing
        self.spec = spec
        self.dim, self.colonies = spec.brain.embed_dim, spec.colony.count
        seeds = torch.randint(0, 256, (self.colonies, 32), generator=gen, dtype=torch.uint8)
        self.identities = [Identity(bytes(s.tolist())) for s in seeds]
        self.keys = {c: ident.public_key for c, ident in enumerate(self.identities)}
        self.malicious = torch.arange(self.colonies) >= self.colonies - p.malicious_colonies  # (C,)
        self.registry = ExperienceRegistry()
        w = min(p.window, memory.p.capacity * 4)
        self.cache_q = torch.zeros(w, self.dim)  # ring of decoded registry records: index i at i % w
        self.cache_r = torch.zeros(w, self.dim)
        self.entries = entry_rows(memory)  # vote rows of the memory's entries (slots, or uids on Ray)
        self.votes = VoteBook(memory.p.capacity, self.colonies, p.approval, p.min_vote_weight, p.min_served)
        self.reports = torch.full((memory.p.capacity, self.colonies), float("nan"))  # latest fitness report
        self.seq = 0
        self.counts = dict.fromkeys(("shared_batches", "shared_entries", "shared_rejected", "shared_bytes",
                                     "shared_raw_bytes", "entries_voted_out",
                                     "entries_unvetted_out"), 0)

    # ---- sending -----------------------------------------------------------------------------
    def _references(self, queries: torch.Tensor) -> torch.Tensor:
        n, w = len(self.registry), len(self.cache_q)
        idx = torch.arange(max(0, n - min(w, self.p.window)), n)
        return codec.nearest(queries, self.cache_q[idx % w], idx)

    def _ref_vectors(self, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w, has = len(self.cache_q), (ref >= 0).unsqueeze(1)
        slot = ref.clamp_min(0) % w
        return self.cache_q[slot] * has, self.cache_r[slot] * has

    def pack(self, colony: int, queries, responses, agent_id, fitness, step: int) -> SharedBatch:
        """A signed batch of (N, D) queries and responses with (N,) agent ids and fitness."""
        ref = self._references(queries)
        rq, rr = self._ref_vectors(ref)
        entries = codec.encode(queries, responses, rq, rr, ref)
        self.seq += 1
        batch = SharedBatch(colony, "", self.seq, step, self.dim, entries, agent_id.long(), fitness.float())
        return batch.signed(self.identities[colony])

    # ---- receiving ---------------------------------------------------------------------------
    def reject(self, batch: SharedBatch, reason: str) -> None:
        self.counts["shared_rejected"] += 1
        log.warning("rejected shared batch %d from colony %d (%d entries): %s",
                    batch.seq, batch.colony, len(batch.entries), reason)

    def submit(self, batch: SharedBatch, step: int) -> torch.Tensor | None:
        """Check, register, decode and store a batch; returns the memory slots written, None if rejected."""
        reason = check(batch, self.keys, self.dim, len(self.registry), min(len(self.cache_q), self.p.window))
        if reason is not None:
            self.reject(batch, reason)
            return None
        rq, rr = self._ref_vectors(batch.entries.ref)
        queries, responses = codec.decode(batch.entries, rq, rr)
        index = self.registry.append(batch.records())
        ring = torch.arange(index.start, index.stop) % len(self.cache_q)
        self.cache_q[ring], self.cache_r[ring] = queries, responses
        slots = self.entries.store(queries, responses, batch.agent_id, batch.fitness, step)
        self.votes.reset(slots, torch.full_like(slots, batch.colony), batch.fitness)
        self.reports[slots] = float("nan")
        self.counts["shared_batches"] += 1
        self.counts["shared_entries"] += len(batch.entries)
        self.counts["shared_bytes"] += batch.nbytes
        self.counts["shared_raw_bytes"] += batch.entries.raw_nbytes + 12 * len(batch.entries)
        return slots

    def share(self, queries, responses, agent_id, fitness, colony, step: int, gen: torch.Generator) -> None:
        """Every colony shares its entries of this step (and malicious colonies their junk).

        Args:
            queries, responses: (B, D) each query and its best agent answer.
            agent_id, fitness: (B,) the answering agent and its reward.
            colony: (B,) the colony of that agent.
        """
        for c in range(self.colonies):
            mine = colony == c
            q, r, a, f = queries[mine], responses[mine], agent_id[mine], fitness[mine]
            if bool(self.malicious[c]) and self.p.flood:
                pick = torch.randint(0, len(queries), (self.p.flood,), generator=gen)
                junk = normalize(torch.randn(self.p.flood, self.dim, generator=gen), dim=-1)
                q, r = torch.cat([q, queries[pick]]), torch.cat([r, junk])
                a, f = torch.cat([a, torch.full((self.p.flood,), -1)]), torch.cat([f, torch.ones(self.p.flood)])
            if len(q):
                self.submit(self.pack(c, q, r, a, f, step), step)

    # ---- judging -----------------------------------------------------------------------------
    def judge(self, response: Response, rewards: torch.Tensor, hit_rewards: torch.Tensor, capacity: int,
              step: int) -> None:
        """Votes and fitness reports from this step's feedback on the memory hits; removal.

        Args:
            response: the step's `Response` (hits with their slots, the answering agents).
            rewards: (B, k) feedback on the agents' answers.
            hit_rewards: (B, h) feedback on each hit's answer.
            capacity: agent slots per colony (global slot // capacity = colony).
            step: the current step (entries older than ``vet_steps`` unvetted are removed).
        """
        colony_of = response.chosen // capacity  # (B, k)
        self.votes.serve(torch.bincount(colony_of.flatten(), minlength=self.colonies))
        hits = response.hits
        rows = self.entries.rows(hits.slot)  # (B, h) vote row of each hit, -1 for none
        ok = hits.valid & (hits.similarity >= self.p.vote_similarity) & (rows >= 0)
        if bool(ok.any()):
            voter = colony_of[:, :1].expand_as(rows)[ok]  # the query's serving colony
            baseline = rewards.mean(1, keepdim=True).clamp_min(self.p.vote_floor).expand_as(rows)[ok]
            slot, reward = rows[ok], hit_rewards[ok]
            bad = self.malicious[voter]
            approve = ((reward >= baseline) & (reward >= self.votes.claim[slot] - self.p.vote_margin)) ^ bad
            self.votes.cast(slot, voter, approve)
            self.reports[slot, voter] = torch.where(bad, -reward, reward)
            touched = torch.unique(slot)
            rep = self.reports[touched]  # (T, C)
            known = ~torch.isnan(rep)
            w = self.votes.weight().float().expand_as(rep)
            agg = consensus.REGISTRY[self.p.aggregate](
                rep.nan_to_num(0.0).unsqueeze(-1), w, known, ConsensusParams(), unit=False).squeeze(-1)
            self.entries.set_fitness(touched, agg)
        tally = self.votes.tally()  # once: removing entries below changes only the removed slots' votes
        out = (self.votes.voted_out(tally) & self.entries.valid).nonzero().squeeze(1)
        if len(out):
            self.counts["entries_voted_out"] += self.entries.remove(out)
            self.votes.reset(out, torch.full_like(out, -1))
        if self.p.vet_steps:  # entries of identities in poor standing that nobody vetted in time
            author = self.votes.author
            w = self.votes.weight()  # (V,) standing relative to the best-standing identity
            low = (w < self.p.approval * w.max())[author.clamp_min(0)] & (author >= 0)
            old = step - self.entries.timestamp >= self.p.vet_steps
            out = (self.entries.valid & low & old & (tally[1] < self.p.min_vote_weight)).nonzero().squeeze(1)
            if len(out):
                self.counts["entries_unvetted_out"] += self.entries.remove(out)
                self.votes.reset(out, torch.full_like(out, -1))

    # ---- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Registry, reference cache, votes, fitness reports, counters and the colonies' public keys.

        No private keys: the identities are drawn from the model's generator when the model is
        built, so rebuilding it from the run's spec and seed (what `--resume` does) makes the same
        keys again. A checkpoint file that travels (a bug report, a copied run) then signs nothing;
        `load_state_dict` checks that the rebuilt public keys are the checkpointed ones.
        """
        return {
            "public_keys": [self.keys[c] for c in range(self.colonies)],
            "registry": self.registry.state_dict(),
            "cache_q": self.cache_q, "cache_r": self.cache_r,
            "votes": self.votes.state_dict(),
            "reports": self.reports,
            "seq": self.seq, "rows": self.entries.state_dict(),
            "counts": dict(self.counts),
        }

    def load_state_dict(self, d: dict[str, Any]) -> None:
        """Restore a `state_dict()` into an exchange built from the same spec and seed."""
        if list(d["public_keys"]) != [self.keys[c] for c in range(self.colonies)]:
            raise ValueError(f"the checkpoint's {len(d['public_keys'])} colony identities are not the "
                             f"{self.colonies} this spec and seed make")
        for name in ("cache_q", "cache_r", "reports"):
            if d[name].shape != getattr(self, name).shape:
                raise ValueError(f"sharing {name} of shape {tuple(d[name].shape)} in the checkpoint, "
                                 f"{tuple(getattr(self, name).shape)} expected")
        if set(d["counts"]) != set(self.counts):
            raise ValueError(f"sharing counters {sorted(d['counts'])} in the checkpoint, {sorted(self.counts)} expected")
        self.registry.load_state_dict(d["registry"])
        if "rows" in d:  # checkpoints before the Ray backend could share have none (slot rows need none)
            self.entries.load_state_dict(d["rows"])
        self.votes.load_state_dict(d["votes"])
        self.cache_q, self.cache_r, self.reports = d["cache_q"].clone(), d["cache_r"].clone(), d["reports"].clone()
        self.seq = int(d["seq"])  # older checkpoints also hold a "step", no longer needed
        self.counts = {key: int(v) for key, v in d["counts"].items()}

    def metrics(self) -> dict[str, float]:
        c = self.counts
        w = self.votes.weight()
        return {
            "shared_batches": float(c["shared_batches"]),
            "shared_entries": float(c["shared_entries"]),
            "shared_rejected": float(c["shared_rejected"]),
            "shared_bytes": float(c["shared_bytes"]),
            "shared_ratio": c["shared_raw_bytes"] / c["shared_bytes"] if c["shared_bytes"] else 0.0,
            "entries_voted_out": float(c["entries_voted_out"]),
            "entries_unvetted_out": float(c["entries_unvetted_out"]),
            "registry_size": float(len(self.registry)),
            "malicious_vote_weight": float(w[self.malicious].sum() / w.sum()) if float(w.sum()) > 0 else 0.0,
        }
