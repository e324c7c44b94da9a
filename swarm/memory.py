"""The shared memory: answers stored under 256-bit random-hyperplane LSH codes of their queries.

Lookup finds candidates through hash bands (entries whose band value equals the query's in any
band; at most `max_bucket` most recent per bucket), ranks them by exact cosine similarity of the
stored query to the asked one, and returns the top-k by similarity x fitness. Garbage collection
evicts the entries with the lowest retention score, fitness x 2^(-age / age_tau).

All of it is vectorised over the whole batch of queries; the per-band sorted index is rebuilt
lazily after writes (one argsort per band).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from swarm.params import MemoryParams

BITS = 256


@dataclass
class Hits:
    """Top-k stored answers per query. B queries, k = top_k."""

    response: torch.Tensor  # (B, k, D)
    fitness: torch.Tensor  # (B, k)
    similarity: torch.Tensor  # (B, k)
    agent_id: torch.Tensor  # (B, k) int64
    valid: torch.Tensor  # (B, k) bool
    slot: torch.Tensor | None = None  # (B, k) int64 each hit's slot (a DistributedMemory: its uid), -1 for none


class SharedMemory:
    """A bounded LSH-indexed store of (query, response, agent id, fitness, timestamp) entries."""

    _FIELDS = ("keys", "query", "response", "agent_id", "fitness", "timestamp", "valid")

    def __init__(self, params: MemoryParams, dim: int, gen: torch.Generator):
        self.p = params
        self.dim = dim
        n = params.capacity
        self.planes = torch.randn(BITS, dim, generator=gen)  # (256, D) hyperplane normals
        self.keys = torch.zeros(n, BITS // 8, dtype=torch.uint8)  # (N, 32) LSH codes
        self.bands = torch.zeros(n, params.bands, dtype=torch.int64)  # (N, bands) band values of keys
        self.query = torch.zeros(n, dim)  # (N, D) unit queries
        self.response = torch.zeros(n, dim)  # (N, D)
        self.agent_id = torch.full((n,), -1, dtype=torch.int64)
        self.fitness = torch.zeros(n)
        self.timestamp = torch.zeros(n, dtype=torch.int64)
        self.valid = torch.zeros(n, dtype=torch.bool)
        self.evicted = 0
        self._index: tuple[torch.Tensor, torch.Tensor] | None = None

    # ---- keys -------------------------------------------------------------------------------
    def _bits(self, queries: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, 256) bool sign bits of the random projections."""
        return queries @ self.planes.T > 0

    def hash(self, queries: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, 32) uint8 packed 256-bit LSH keys."""
        return _pack(self._bits(queries))

    def _band_values(self, bits: torch.Tensor) -> torch.Tensor:
        """(B, 256) bits -> (B, bands) int64 values of `rows` bits each."""
        grouped = bits.view(len(bits), self.p.bands, self.p.rows).long()
        weights = 2 ** torch.arange(self.p.rows - 1, -1, -1, dtype=torch.int64)
        return (grouped * weights).sum(-1)

    # ---- index ------------------------------------------------------------------------------
    def _sorted_index(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per band, entries sorted by (band value, timestamp): returns (sorted keys, order), (bands, N)."""
        if self._index is None:
            # free slots sort to the very end and never match a real band value
            composite = ((self.bands.T << 31) | self.timestamp.clamp(0, (1 << 31) - 1)).contiguous()  # (bands, N)
            composite[:, ~self._indexed()] = torch.iinfo(torch.int64).max
            sorted_keys, order = torch.sort(composite, dim=1, stable=True)
            self._index = (sorted_keys, order)
        return self._index

    def _indexed(self) -> torch.Tensor:
        """(N,) bool entries that lookups may return (a memory shard narrows it to the keys it serves)."""
        return self.valid

    @property
    def size(self) -> int:
        return int(self.valid.sum())

    # ---- lookup -----------------------------------------------------------------------------
    def lookup(self, queries: torch.Tensor, k: int | None = None) -> Hits:
        """Top-k stored answers for each query.

        Args:
            queries: (B, D) unit queries.
            k: answers per query (default memory.top_k).
        """
        k = self.p.top_k if k is None else k
        b = len(queries)
        out = Hits(
            response=torch.zeros(b, k, self.dim),
            fitness=torch.zeros(b, k),
            similarity=torch.zeros(b, k),
            agent_id=torch.full((b, k), -1, dtype=torch.int64),
            valid=torch.zeros(b, k, dtype=torch.bool),
            slot=torch.full((b, k), -1, dtype=torch.int64),
        )
        if k == 0 or self.size == 0:
            return out
        entries, present = self._candidates(queries)  # (B, W) each
        if entries.shape[1] == 0:
            return out
        width = entries.shape[1]
        # exact cosine of every candidate by one gather + bmm; top-k by similarity x fitness per row
        stored = self.query.index_select(0, entries.flatten()).view(b, width, self.dim)  # (B, W, D)
        sims = torch.bmm(stored, queries.unsqueeze(2)).squeeze(2)  # (B, W)
        ok = present & (sims >= self.p.min_similarity)
        score = torch.where(ok, sims * self.fitness[entries].clamp_min(0.0), torch.tensor(-1.0))
        top = min(k, width)
        best, where = torch.topk(score, top, dim=1)  # (B, top)
        ok = ok.gather(1, where)
        chosen = entries.gather(1, where)  # (B, top)
        out.response[:, :top] = torch.where(ok.unsqueeze(-1), self.response[chosen], 0.0)
        out.fitness[:, :top] = torch.where(ok, self.fitness[chosen], 0.0)
        out.similarity[:, :top] = torch.where(ok, sims.gather(1, where), 0.0)
        out.agent_id[:, :top] = torch.where(ok, self.agent_id[chosen], -1)
        out.valid[:, :top] = ok
        out.slot[:, :top] = torch.where(ok, chosen, -1)
        return out

    def _probe_values(self, queries: torch.Tensor) -> torch.Tensor:
        """(B, D) queries -> (bands, B, 1 + probes) band values to look up.

        The first is the query's own band value; with `probes` > 0 the others flip the band's
        least-confident bits (those whose projections lie closest to 0), most likely first: the
        `probes` flip sets with the smallest summed |projection| among the band's
        min(rows, probes, 10) least-confident bits.
        """
        proj = queries @ self.planes.T  # (B, 256)
        own = self._band_values(proj > 0)  # (B, bands)
        if self.p.probes == 0:
            return own.T.unsqueeze(2)
        m = min(self.p.rows, self.p.probes, 10)  # the best `probes` flip sets use only these bits
        conf = proj.abs().view(len(queries), self.p.bands, self.p.rows)  # (B, bands, rows)
        low, bit = torch.topk(conf, m, dim=2, largest=False)  # (B, bands, m)
        subsets = _flip_sets(m)  # (S, m) 0/1 flip sets, S = 2^m - 1
        cost = low @ subsets.T.float()  # (B, bands, S) summed |projection| of the flipped bits
        pick = torch.topk(cost, min(self.p.probes, len(subsets)), dim=2, largest=False).indices  # (B, bands, P)
        weight = 1 << (self.p.rows - 1 - bit)  # (B, bands, m) value of each bit in the band value
        flips = (subsets[pick] * weight.unsqueeze(2)).sum(-1)  # (B, bands, P)
        return torch.cat([own.unsqueeze(2), own.unsqueeze(2) ^ flips], 2).permute(1, 0, 2)

    def _candidates(self, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, D) queries -> (B, W) distinct candidate slots per query, ascending, and (B, W) present.

        Per probed bucket at most `max_bucket` most recent entries. A query's candidates from all
        bands and probes go into one row; sorting the rows drops the repeats. Absent cells hold 0.
        """
        sorted_keys, order = self._sorted_index()  # (bands, N)
        b, n = len(queries), len(self.valid)
        values = self._probe_values(queries)  # (bands, B, P)
        flat = values.reshape(self.p.bands, -1).contiguous()  # (bands, B * P)
        lo = torch.searchsorted(sorted_keys, flat << 31)  # (bands, B * P)
        hi = torch.searchsorted(sorted_keys, (flat << 31) | ((1 << 31) - 1), right=True)
        if self.p.rows == 32:  # an all-ones band value would also match the free slots' sentinel
            hi = hi.clamp_max(int(self._indexed().sum()))
        lo = torch.maximum(lo, hi - self.p.max_bucket)  # keep the most recent per bucket
        # as positions in the flattened (bands * N) order, buckets query-major: (M,), M = B * bands * P
        shift = torch.arange(self.p.bands).unsqueeze(1) * n  # (bands, 1)
        lo = (lo + shift).view_as(values).transpose(0, 1).flatten()
        counts = (hi + shift).view_as(values).transpose(0, 1).flatten() - lo  # (M,) candidates per bucket
        total = int(counts.sum())
        if total == 0:
            return torch.zeros(b, 0, dtype=torch.long), torch.zeros(b, 0, dtype=torch.bool)
        bucket = torch.repeat_interleave(counts)  # (C,) probed bucket of each candidate
        first = torch.cumsum(counts, 0) - counts  # (M,) where each bucket's candidates start
        slot = order.view(-1)[lo[bucket] + torch.arange(total) - first[bucket]]  # (C,)
        per_query = counts.view(b, -1).sum(1)  # (B,)
        query = bucket // (len(counts) // b)  # (C,)
        column = torch.arange(total) - (torch.cumsum(per_query, 0) - per_query)[query]
        rows = torch.full((b, int(per_query.max())), n, dtype=torch.long)  # n marks no candidate
        rows[query, column] = slot
        rows = torch.sort(rows, dim=1).values
        repeat = torch.zeros_like(rows, dtype=torch.bool)
        repeat[:, 1:] = rows[:, 1:] == rows[:, :-1]
        rows = torch.sort(rows.masked_fill(repeat, n), dim=1).values  # distinct slots first
        rows = rows[:, :int((rows < n).sum(1).max())]
        present = rows < n
        return torch.where(present, rows, 0), present

    # ---- writes -----------------------------------------------------------------------------
    def store(
        self,
        queries: torch.Tensor,
        responses: torch.Tensor,
        agent_id: torch.Tensor,
        fitness: torch.Tensor,
        step: int,
    ) -> torch.Tensor:
        """Store (B, D) queries with their (B, D) responses, (B,) agent ids and (B,) fitness.

        Returns the (B',) slots written, in the order of the entries kept (all of them unless more
        than the capacity arrive at once; then the fittest).
        """
        n_new = len(queries)
        if n_new > len(self.valid):  # keep only the fittest that fit
            best = torch.topk(fitness, len(self.valid)).indices
            queries, responses, agent_id, fitness = queries[best], responses[best], agent_id[best], fitness[best]
            n_new = len(queries)
        free = (~self.valid).nonzero().squeeze(1)
        if len(free) < n_new:
            self.collect_garbage(step, room=n_new)
            free = (~self.valid).nonzero().squeeze(1)
        slots = free[:n_new]
        bits = self._bits(queries)
        self.keys[slots] = _pack(bits)
        self.bands[slots] = self._band_values(bits)
        self.query[slots] = queries
        self.response[slots] = responses
        self.agent_id[slots] = agent_id
        self.fitness[slots] = fitness.float()
        self.timestamp[slots] = step
        self.valid[slots] = True
        self._index = None
        return slots

    def remove(self, slots: torch.Tensor) -> int:
        """Free the given slots (entries voted out); returns how many held an entry."""
        held = int(self.valid[slots].sum())
        self.valid[slots] = False
        self._index = None
        return held

    def retention(self, step: int) -> torch.Tensor:
        """(N,) retention score (1 + fitness) / 2 x 2^(-age / age_tau); -inf for free slots."""
        age = (step - self.timestamp).float()
        score = (1.0 + self.fitness) / 2 * torch.exp2(-age / self.p.age_tau)
        return torch.where(self.valid, score, torch.tensor(float("-inf")))

    def collect_garbage(self, step: int, room: int) -> int:
        """Evict the lowest-retention entries so that `room` slots (+10% slack) are free."""
        target = min(len(self.valid), room + len(self.valid) // 10)
        need = target - int((~self.valid).sum())
        if need <= 0:
            return 0
        score = self.retention(step)
        score[~self.valid] = float("inf")  # never "evict" a free slot
        victims = torch.topk(score, need, largest=False).indices
        self.valid[victims] = False
        self.evicted += need
        self._index = None
        return need

    def state_dict(self) -> dict[str, torch.Tensor]:
        d = {name: getattr(self, name) for name in self._FIELDS}
        d["planes"] = self.planes
        d["evicted"] = torch.tensor(self.evicted)
        return d

    def load_state_dict(self, d: dict[str, torch.Tensor]) -> None:
        for name in self._FIELDS + ("planes",):
            setattr(self, name, d[name])
        self.bands = self._band_values(_unpack(self.keys))
        self.evicted = int(d["evicted"])
        self._index = None


_BYTE_WEIGHTS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)


def _pack(bits: torch.Tensor) -> torch.Tensor:
    """(B, 256) bool -> (B, 32) uint8, most significant bit first."""
    return (bits.view(len(bits), -1, 8).to(torch.uint8) * _BYTE_WEIGHTS).sum(-1, dtype=torch.uint8)


@functools.cache
def _flip_sets(m: int) -> torch.Tensor:
    """(2^m - 1, m) int64: every non-empty subset of m bits as a 0/1 row."""
    codes = torch.arange(1, 2 ** m)
    return (codes.unsqueeze(1) >> torch.arange(m)) & 1


def _unpack(keys: torch.Tensor) -> torch.Tensor:
    """(B, 32) uint8 -> (B, 256) bool."""
    return (keys.unsqueeze(-1) & _BYTE_WEIGHTS).bool().view(len(keys), -1)
