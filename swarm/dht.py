"""The shared memory as a distributed hash table over `MemoryShard`s (in-process or Ray actors).

Placement: the 32-byte LSH key of each entry goes on a consistent-hash ring (`swarm.ring`) and
the entry is written to its R distinct replica shards (R = backend.replication), on distinct nodes
when a `locate` function tells which node each shard runs on (zone-aware ring). Reads: every
ring point is served by its first live replica, so one batched lookup per live shard returns each
entry once; the driver merges the per-shard top-k by similarity x fitness, as `SharedMemory` does.
Faults: a shard that fails a call leaves the ring; the survivors copy the entries whose replica
set changed (only those) so that each is back on R shards, and a fresh shard joins in its place
when a `spawn` function is given. Every fault is appended to `faults` for the run store.

The object has `SharedMemory`'s interface (lookup, store, size, evicted, state_dict), so the
model does not know which memory it has.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch

from swarm.memory import BITS, Hits, _pack
from swarm.params import BackendParams, MemoryParams
from swarm.ring import Ring, key_positions
from swarm.shard import ENTRY_FIELDS, MemoryShard


class LocalTransport:
    """Calls on in-process shards; `kill(shard)` makes a shard fail like a dead actor."""

    def __init__(self) -> None:
        self.killed: set[int] = set()

    def submit(self, handle: MemoryShard, method: str, *args: Any) -> Any:
        if handle.shard_id in self.killed:
            return _Failed()
        return getattr(handle, method)(*args)

    def gather(self, futures: dict[int, Any]) -> tuple[dict[int, Any], list[int]]:
        failed = [s for s, f in futures.items() if isinstance(f, _Failed)]
        return {s: f for s, f in futures.items() if not isinstance(f, _Failed)}, failed

    def kill(self, shard: int) -> None:
        self.killed.add(shard)


class _Failed:
    pass


def _concat(parts: list[dict]) -> dict:
    if len(parts) == 1:
        return parts[0]
    return {k: np.concatenate([p[k] for p in parts]) if k == "pos" else torch.cat([p[k] for p in parts])
            for k in ENTRY_FIELDS}


def _take(entries: dict, rows: torch.Tensor) -> dict:
    return {k: v[rows.numpy()] if k == "pos" else v[rows] for k, v in entries.items()}


class DistributedMemory:
    """Sharded, replicated LSH memory. `spawn(shard_id, capacity, planes)` makes a shard handle;
    `locate(handle)`, when given, names the node it runs on (copies of a key go to distinct nodes)."""

    def __init__(self, params: MemoryParams, dim: int, gen: torch.Generator, backend: BackendParams,
                 spawn: Callable[[int, int, torch.Tensor], Any], transport: Any = None,
                 locate: Callable[[Any], str] | None = None):
        self.p, self.dim, self.b = params, dim, backend
        self.planes = torch.randn(BITS, dim, generator=gen)  # the same draw as SharedMemory's
        self.shard_capacity = math.ceil(params.capacity * backend.replication / backend.shards)
        self.spawn = spawn
        self.transport = transport if transport is not None else LocalTransport()
        self.locate = locate
        self.handles = {s: spawn(s, self.shard_capacity, self.planes) for s in range(backend.shards)}
        self.zones = {s: locate(h) for s, h in self.handles.items()} if locate else {}
        self.ring = Ring.build(tuple(self.handles), backend.virtual_nodes, backend.replication, self.zones)
        self.next_shard = backend.shards
        self.next_uid = 0
        self.size = 0  # distinct entries (each counted by its reading shard)
        self._evicted_copies = 0  # copies evicted by every shard's puts, lost shards' included
        self.faults: list[dict[str, Any]] = []
        self._served: dict[int, int] = {}  # shard -> distinct entries it serves (reads)
        self._publish_readers()

    @property
    def evicted(self) -> int:
        """Entries evicted so far (copies evicted on any shard, lost ones included, / R)."""
        return self._evicted_copies // self.b.replication

    # ---- calls -------------------------------------------------------------------------------
    def _call(self, calls: dict[int, tuple]) -> dict[int, Any]:
        """Run {shard: (method, *args)} on all shards at once; failed shards are handled as lost."""
        futures = {s: self.transport.submit(self.handles[s], *c) for s, c in calls.items() if s in self.handles}
        results, failed = self.transport.gather(futures)
        if failed:
            self._lost(failed)
        return results

    def _publish_readers(self) -> None:
        readers = self.ring.readers(set(self.handles))
        self._served = self._call({s: ("set_readers", self.ring.positions, readers) for s in self.handles})
        self.size = sum(self._served.values())

    # ---- keys --------------------------------------------------------------------------------
    def _count_served(self, replies: dict[int, dict[str, Any]]) -> None:
        """Take each replying shard's served count (puts and removals report it) into `size`."""
        self._served.update({s: r["entries"] for s, r in replies.items()})
        self.size = sum(self._served.values())

    def hash(self, queries: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, 32) uint8 packed 256-bit LSH keys."""
        return _pack(queries @ self.planes.T > 0)

    # ---- reads -------------------------------------------------------------------------------
    def lookup(self, queries: torch.Tensor, k: int | None = None) -> Hits:
        """Top-k stored answers per (B, D) query, merged over one batched call per live shard."""
        k = self.p.top_k if k is None else k
        for _ in range(3):  # a shard lost mid-call: the ring is repaired, ask again
            shards = set(self.handles)
            parts = self._call({s: ("lookup", queries, k) for s in shards})
            if set(parts) == shards:
                break
        hits = list(parts.values())
        b = len(queries)
        if not hits or k == 0:
            none = torch.full((b, k), -1, dtype=torch.int64)
            return Hits(torch.zeros(b, k, self.dim), torch.zeros(b, k), torch.zeros(b, k), none,
                        torch.zeros(b, k, dtype=torch.bool), none.clone())
        cat = {f: torch.cat([getattr(h, f) for h in hits], 1) for f in ("response", "fitness", "similarity",
                                                                          "agent_id", "valid", "slot")}
        score = torch.where(cat["valid"], cat["similarity"] * cat["fitness"].clamp_min(0.0), torch.tensor(-1.0))
        where = torch.topk(score, k, dim=1).indices  # (B, k)
        return Hits(
            response=cat["response"].gather(1, where.unsqueeze(-1).expand(-1, -1, self.dim)),
            fitness=cat["fitness"].gather(1, where), similarity=cat["similarity"].gather(1, where),
            agent_id=cat["agent_id"].gather(1, where), valid=cat["valid"].gather(1, where),
            slot=cat["slot"].gather(1, where),  # the entries' uids
        )

    # ---- writes ------------------------------------------------------------------------------
    def store(self, queries: torch.Tensor, responses: torch.Tensor, agent_id: torch.Tensor,
              fitness: torch.Tensor, step: int) -> torch.Tensor:
        """Write (B, D) queries with (B, D) responses, (B,) ids and fitness to every replica;
        returns the (B,) uids given to the entries."""
        keys = self.hash(queries)
        n = len(queries)
        entries = {
            "uid": torch.arange(self.next_uid, self.next_uid + n, dtype=torch.int64), "pos": key_positions(keys),
            "keys": keys, "query": queries, "response": responses, "agent_id": agent_id,
            "fitness": fitness.float(), "timestamp": torch.full((n,), step, dtype=torch.int64),
        }
        self.next_uid += n
        self._write(entries, step)
        return entries["uid"]

    def remove(self, uids: torch.Tensor) -> int:
        """Drop the entries with these uids from every replica; returns how many were held."""
        out = self._call({s: ("remove_uids", uids) for s in self.handles})
        self._count_served(out)
        return len(torch.unique(torch.cat([o["uids"] for o in out.values()] or [uids[:0]])))

    def set_fitness(self, uids: torch.Tensor, fitness: torch.Tensor) -> None:
        """Overwrite the fitness of the entries with these (distinct) uids on every replica."""
        self._call({s: ("set_fitness", uids, fitness) for s in self.handles})

    def _write(self, entries: dict, step: int) -> None:
        replicas = torch.from_numpy(self.ring.preference[self.ring.point_of(entries["pos"])])  # (B, R)
        calls = {}
        for s in self.handles:  # a loop over shards: one batched put each
            rows = (replicas == s).any(1).nonzero().squeeze(1)
            if len(rows):
                calls[s] = ("put", _take(entries, rows), step)
        out = self._call(calls)
        if out:
            self._count_served(out)
            self._evicted_copies += sum(o["evicted"] for o in out.values())

    # ---- membership --------------------------------------------------------------------------
    def _rebalance(self, old: Ring, new: Ring, senders: list[int]) -> int:
        """Copy the entries whose replica set changed; returns the number of copies moved."""
        live = [s for s in senders if s in self.handles]
        plans = self._call({s: ("moves", (old.positions, old.preference), (new.positions, new.preference), live)
                            for s in live})
        incoming: dict[int, list[dict]] = {}
        for plan in plans.values():
            for dest, entries in plan.items():
                incoming.setdefault(dest, []).append(entries)
        moved = sum(len(e["uid"]) for parts in incoming.values() for e in parts)
        step = max((int(e["timestamp"].max()) for parts in incoming.values() for e in parts if len(e["uid"])),
                   default=0)
        out = self._call({d: ("put", _concat(parts), step) for d, parts in incoming.items()})
        self._evicted_copies += sum(o["evicted"] for o in out.values())
        self._publish_readers()
        return moved

    def add_shard(self) -> int:
        """Join a new shard; returns the entry copies moved to it."""
        s = self.next_shard
        self.next_shard += 1
        self.handles[s] = self.spawn(s, self.shard_capacity, self.planes)
        if self.locate:
            self.zones[s] = self.locate(self.handles[s])
        old, self.ring = self.ring, self.ring.with_shard(s, self.zones.get(s))
        return self._rebalance(old, self.ring, list(self.handles))

    def _lost(self, shards: list[int]) -> None:
        """Shards failed a call: drop every dead shard at once (a lost node takes several), copy
        the entries whose replica set changed from the survivors, then let fresh shards join."""
        dead = set(shards) & set(self.handles)
        if not dead:
            return
        others = {s: self.transport.submit(h, "ping") for s, h in self.handles.items() if s not in dead}
        dead |= set(self.transport.gather(others)[1])
        for s in dead:
            del self.handles[s]
            self.zones.pop(s, None)
        old, self.ring = self.ring, Ring.build(tuple(self.handles), self.b.virtual_nodes, self.b.replication,
                                               self.zones)
        moved = self._rebalance(old, self.ring, list(self.handles))
        for s in sorted(dead):
            fault = {"kind": "shard_lost", "shard": s, "copies_moved": moved}
            moved = 0
            fault["replaced_by"] = self.next_shard
            fault["copies_moved"] += self.add_shard()
            self.faults.append(fault)

    # ---- inspection and checkpoints ------------------------------------------------------------
    def replica_counts(self) -> dict[int, int]:
        """{uid: number of live shards holding it}."""
        out = self._call({s: ("uids",) for s in self.handles})
        uids, counts = torch.unique(torch.cat(list(out.values()) or [torch.zeros(0, dtype=torch.int64)]),
                                    return_counts=True)
        return dict(zip(uids.tolist(), counts.tolist()))

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Every distinct entry once, in `SharedMemory.state_dict` format (plus uids)."""
        parts = list(self._call({s: ("entries",) for s in self.handles}).values())
        e = _concat(parts) if parts else None
        if e is None or len(e["uid"]) == 0:
            e = {"uid": torch.zeros(0, dtype=torch.int64), "keys": torch.zeros(0, 32, dtype=torch.uint8),
                 "query": torch.zeros(0, self.dim), "response": torch.zeros(0, self.dim),
                 "agent_id": torch.zeros(0, dtype=torch.int64), "fitness": torch.zeros(0),
                 "timestamp": torch.zeros(0, dtype=torch.int64)}
        _, first = np.unique(e["uid"].numpy(), return_index=True)
        rows = torch.from_numpy(first)
        d = {k: e[k][rows] for k in ("uid", "keys", "query", "response", "agent_id", "fitness", "timestamp")}
        d["valid"] = torch.ones(len(rows), dtype=torch.bool)
        d["planes"] = self.planes
        d["evicted"] = torch.tensor(self.evicted)
        d["next_uid"] = torch.tensor(self.next_uid)
        return d

    def load_state_dict(self, d: dict[str, torch.Tensor]) -> None:
        """Restore from `state_dict()` (or a `SharedMemory` one): reset every shard, rewrite by the ring."""
        self.planes = d["planes"]
        valid = d["valid"]
        n = int(valid.sum())
        uid = d["uid"][valid] if "uid" in d else torch.arange(n, dtype=torch.int64)
        self.next_uid = int(d["next_uid"]) if "next_uid" in d else n
        self._evicted_copies = int(d["evicted"]) * self.b.replication
        self._call({s: ("reset", self.planes) for s in self.handles})
        if n:
            keys = d["keys"][valid]
            step = int(d["timestamp"][valid].max())
            self._write({"uid": uid, "pos": key_positions(keys), "keys": keys, "query": d["query"][valid],
                         "response": d["response"][valid], "agent_id": d["agent_id"][valid],
                         "fitness": d["fitness"][valid], "timestamp": d["timestamp"][valid]}, step)
        self._publish_readers()
