"""Where the exchange finds the shared entries it votes on: a row per entry, whichever memory holds them.

The vote book and the fitness reports are tables with one row per memory entry. In one process
(`SharedMemory`) an entry's row is its memory slot (`SlotRows`). The Ray backend's
`DistributedMemory` names entries by a global uid instead and keeps them on shard actors;
`UidRows` gives each the row ``uid % capacity`` and remembers which uid holds each row, when it
was stored and whether it was removed, so votes keep working without asking the shards. A row
is taken over by a newer entry ``capacity`` uids later (its votes start afresh); by then the
older entry has usually been garbage-collected, and if not, its later hits are not voted on.

Both give the same calls: `rows` (hits' ids -> rows, -1 for none), `store` (-> rows), `remove`
(rows -> entries held), `set_fitness`, and `valid` / `timestamp` per row.
"""

from __future__ import annotations

from typing import Any

import torch

from swarm.memory import SharedMemory


class SlotRows:
    """Rows of a `SharedMemory`: row = slot; validity and timestamps are the memory's own."""

    def __init__(self, memory: SharedMemory) -> None:
        self.memory = memory

    @property
    def valid(self) -> torch.Tensor:
        return self.memory.valid

    @property
    def timestamp(self) -> torch.Tensor:
        return self.memory.timestamp

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Hits' slots (any shape, -1 for none) -> rows: the same."""
        return ids

    def store(self, queries, responses, agent_id, fitness, step: int) -> torch.Tensor:
        """`SharedMemory.store`; returns the rows (slots) written."""
        return self.memory.store(queries, responses, agent_id, fitness, step)

    def remove(self, rows: torch.Tensor) -> int:
        return self.memory.remove(rows)

    def set_fitness(self, rows: torch.Tensor, fitness: torch.Tensor) -> None:
        self.memory.fitness[rows] = fitness

    def state_dict(self) -> dict[str, Any]:
        return {}  # the memory's own checkpoint holds everything

    def load_state_dict(self, d: dict[str, Any]) -> None:
        pass


class UidRows:
    """Rows of a `DistributedMemory` (entries named by uid): row = uid % capacity."""

    def __init__(self, memory: Any, capacity: int) -> None:
        self.memory = memory
        self.uid = torch.full((capacity,), -1, dtype=torch.int64)  # (C,) the entry holding each row
        self.valid = torch.zeros(capacity, dtype=torch.bool)  # stored and not removed by the exchange
        self.timestamp = torch.zeros(capacity, dtype=torch.int64)

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Hits' uids (any shape, -1 for none) -> rows, -1 where the row now holds another entry."""
        row = ids.clamp_min(0) % len(self.uid)
        return torch.where((ids >= 0) & (self.uid[row] == ids) & self.valid[row], row, -1)

    def store(self, queries, responses, agent_id, fitness, step: int) -> torch.Tensor:
        """`DistributedMemory.store`; returns the rows of the new entries."""
        uids = self.memory.store(queries, responses, agent_id, fitness, step)
        row = uids % len(self.uid)
        self.uid[row], self.valid[row], self.timestamp[row] = uids, True, step
        return row

    def remove(self, rows: torch.Tensor) -> int:
        """Remove the rows' entries from every shard; returns how many the shards still held
        (garbage collection may have dropped some already)."""
        self.valid[rows] = False
        return self.memory.remove(self.uid[rows]) if len(rows) else 0

    def set_fitness(self, rows: torch.Tensor, fitness: torch.Tensor) -> None:
        if len(rows):
            self.memory.set_fitness(self.uid[rows], fitness)

    def state_dict(self) -> dict[str, Any]:
        return {"uid": self.uid, "valid": self.valid, "timestamp": self.timestamp}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        for name in ("uid", "valid", "timestamp"):
            if d[name].shape != getattr(self, name).shape:
                raise ValueError(f"sharing rows {name} of shape {tuple(d[name].shape)}, "
                                 f"{tuple(getattr(self, name).shape)} expected")
        self.uid, self.valid, self.timestamp = d["uid"].clone(), d["valid"].clone(), d["timestamp"].clone()


def entry_rows(memory: Any) -> SlotRows | UidRows:
    """The row scheme for `memory`: slots for a `SharedMemory`, uids for a `DistributedMemory`."""
    return SlotRows(memory) if isinstance(memory, SharedMemory) else UidRows(memory, memory.p.capacity)
