"""One shard of the distributed memory: a `SharedMemory` that also knows each entry's ring position.

A shard is a plain object; `swarm.backend` wraps it as a Ray actor, the tests use it in-process.
Every entry carries a global `uid` (so copies on different shards are recognisably the same
entry) and its ring position. The driver tells each shard which ring points it reads for
(`set_readers`): a lookup only returns entries whose point this shard serves, so asking every
live shard once gives each entry exactly once even though it is stored on R shards.

Garbage collection runs on every shard on its own (`SharedMemory.collect_garbage`).
"""

from __future__ import annotations

import numpy as np
import torch

from swarm.memory import Hits, SharedMemory, _unpack
from swarm.params import MemoryParams

ENTRY_FIELDS = ("uid", "pos", "keys", "query", "response", "agent_id", "fitness", "timestamp")


class MemoryShard(SharedMemory):
    """`capacity` entries of (uid, ring position, key, query, response, agent id, fitness, step)."""

    def __init__(self, shard_id: int, params: MemoryParams, dim: int, planes: torch.Tensor, capacity: int):
        super().__init__(params.model_copy(update={"capacity": capacity}), dim, torch.Generator().manual_seed(0))
        self.shard_id = shard_id
        self.planes = planes  # (256, D) the same hyperplanes on every shard
        self.uid = torch.full((capacity,), -1, dtype=torch.int64)
        self.pos = np.zeros(capacity, dtype=np.uint64)  # ring position of each entry's key
        self.serving = torch.zeros(capacity, dtype=torch.bool)
        self.ring_positions = np.zeros(0, dtype=np.uint64)
        self.ring_readers = np.zeros(0, dtype=np.int64)

    def ping(self) -> int:
        return self.shard_id

    def _indexed(self) -> torch.Tensor:
        return self.valid & self.serving

    def _served(self) -> int:
        """Distinct entries this shard serves (reads for)."""
        return int(self._indexed().sum())

    def _rows_of(self, uids: torch.Tensor) -> torch.Tensor:
        """Slots holding entries with these uids."""
        return (self.valid & torch.isin(self.uid, uids)).nonzero().squeeze(1)

    def _serves(self, pos: np.ndarray) -> torch.Tensor:
        if len(self.ring_positions) == 0:
            return torch.ones(len(pos), dtype=torch.bool)
        point = np.searchsorted(self.ring_positions, pos, side="left") % len(self.ring_positions)
        return torch.from_numpy(self.ring_readers[point] == self.shard_id)

    def set_readers(self, positions: np.ndarray, readers: np.ndarray) -> int:
        """Ring points (V,) uint64 and the shard reading each (V,); returns the entries this shard serves."""
        self.ring_positions, self.ring_readers = positions, readers
        self.serving = self._serves(self.pos)
        self._index = None
        return self._served()

    def reset(self, planes: torch.Tensor) -> None:
        """Forget every entry and take new hyperplanes (restoring a checkpoint)."""
        self.planes = planes
        self.valid[:] = False
        self.serving[:] = False
        self._index = None

    # ---- reads -------------------------------------------------------------------------------
    def lookup(self, queries: torch.Tensor, k: int | None = None) -> Hits:
        """`SharedMemory.lookup`, with each hit's global uid in `slot` (-1 for none)."""
        hits = super().lookup(queries, k)
        hits.slot = torch.where(hits.slot >= 0, self.uid[hits.slot.clamp_min(0)], -1)
        return hits

    # ---- writes ------------------------------------------------------------------------------
    def remove_uids(self, uids: torch.Tensor) -> dict[str, torch.Tensor | int]:
        """Drop the entries with these uids (sharing voted them out).

        Returns:
            {"uids": the uids this shard held, "entries": distinct entries it serves now}.
        """
        rows = self._rows_of(uids)
        self.remove(rows)
        return {"uids": self.uid[rows], "entries": self._served()}

    def set_fitness(self, uids: torch.Tensor, fitness: torch.Tensor) -> None:
        """Overwrite the fitness of the entries with these uids (sharing's aggregated reports)."""
        rows = self._rows_of(uids)
        if len(rows):
            order = torch.argsort(uids)
            at = torch.searchsorted(uids[order], self.uid[rows])
            self.fitness[rows] = fitness[order][at].float()

    def put(self, entries: dict[str, torch.Tensor | np.ndarray], step: int) -> dict[str, int]:
        """Insert entries (new ones or copies from another shard); uids already held are skipped.

        Args:
            entries: ENTRY_FIELDS -> (E, ...) arrays; `pos` is (E,) uint64, `keys` (E, 32) uint8.
            step: the current step (garbage collection ages entries against it).

        Returns:
            {"entries": distinct entries this shard serves, "evicted": entries this call evicted}.
        """
        evicted_before = self.evicted
        uid = entries["uid"]
        fresh = ~torch.isin(uid, self.uid[self.valid])
        n = int(fresh.sum())
        if n > len(self.valid):  # more than fits: keep the fittest
            keep = torch.topk(torch.where(fresh, entries["fitness"].float(), -torch.inf), len(self.valid)).indices
            fresh = torch.zeros_like(fresh)
            fresh[keep] = True
            n = len(self.valid)
        if n:
            free = (~self.valid).nonzero().squeeze(1)
            if len(free) < n:
                self.collect_garbage(step, room=n)
                free = (~self.valid).nonzero().squeeze(1)
            slots = free[:n]
            rows = fresh.nonzero().squeeze(1)
            self.uid[slots] = uid[rows]
            self.pos[slots.numpy()] = entries["pos"][rows.numpy()]
            self.keys[slots] = entries["keys"][rows]
            self.bands[slots] = self._band_values(_unpack(entries["keys"][rows]))
            self.query[slots] = entries["query"][rows]
            self.response[slots] = entries["response"][rows]
            self.agent_id[slots] = entries["agent_id"][rows]
            self.fitness[slots] = entries["fitness"][rows].float()
            self.timestamp[slots] = entries["timestamp"][rows]
            self.valid[slots] = True
            self.serving[slots] = self._serves(self.pos[slots.numpy()])
            self._index = None
        return {"entries": self._served(), "evicted": self.evicted - evicted_before}

    def entries(self, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor | np.ndarray]:
        """ENTRY_FIELDS of the valid entries (optionally only where `mask`), as (E, ...) arrays."""
        rows = self.valid if mask is None else self.valid & mask
        idx = rows.nonzero().squeeze(1)
        out = {name: getattr(self, name)[idx] for name in ENTRY_FIELDS if name != "pos"}
        out["pos"] = self.pos[idx.numpy()]
        return out

    def uids(self) -> torch.Tensor:
        """(E,) uids of the valid entries."""
        return self.uid[self.valid].clone()

    # ---- rebalancing -------------------------------------------------------------------------
    def moves(self, old: tuple[np.ndarray, np.ndarray], new: tuple[np.ndarray, np.ndarray],
              live: list[int]) -> dict[int, dict]:
        """Entries to copy after the ring changed from `old` to `new` (each (positions, preference)).

        This shard sends an entry when it is the entry's first live old replica, to every new
        replica that did not hold it; then drops entries it no longer replicates. Only the copies
        that move are returned: {destination shard: entries}.
        """
        idx = self.valid.nonzero().squeeze(1)
        pos = self.pos[idx.numpy()]
        old_pref = old[1][np.searchsorted(old[0], pos, side="left") % len(old[0])]  # (E, R_old)
        new_pref = new[1][np.searchsorted(new[0], pos, side="left") % len(new[0])]  # (E, R_new)
        old_live = np.isin(old_pref, live)
        sender = old_pref[np.arange(len(pos)), old_live.argmax(1)]  # first live old replica
        mine = (sender == self.shard_id) & old_live.any(1)
        held = ((new_pref[:, :, None] == old_pref[:, None, :]) & old_live[:, None, :]).any(2)  # (E, R_new)
        out: dict[int, dict] = {}
        for dest in np.unique(new_pref[~held & mine[:, None]]):  # a loop over shards, not entries
            rows = torch.from_numpy(mine & ((new_pref == dest) & ~held).any(1))
            mask = torch.zeros_like(self.valid)
            mask[idx[rows]] = True
            out[int(dest)] = self.entries(mask)
        gone = ~(new_pref == self.shard_id).any(1)
        if gone.any():
            self.valid[idx[torch.from_numpy(gone)]] = False
            self._index = None
        return out
