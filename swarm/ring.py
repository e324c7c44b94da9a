"""A consistent-hash ring with virtual nodes: which memory shards hold which 32-byte LSH key.

Every shard puts `vnodes` points on a 64-bit ring. A key's position is a 64-bit mix of its 32
bytes (so similar LSH codes still land far apart); its replicas are the first `replication`
distinct shards met walking clockwise from that position. The walk is precomputed once per ring
as a (V, R) preference table, so placing a batch of keys is one `searchsorted` and one gather.

A ring is immutable: `with_shard` / `without_shard` return new rings, and comparing the old and
new preference of a key tells exactly which copies move (about 1/N of them when a shard joins).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, elementwise on uint64 (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def key_positions(keys: torch.Tensor) -> np.ndarray:
    """(N, 32) uint8 LSH keys -> (N,) uint64 ring positions."""
    words = np.ascontiguousarray(keys.numpy()).view("<u8")  # (N, 4) little-endian words
    h = np.zeros(len(words), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(words.shape[1]):  # 4 words: a loop over bytes of the key, not over keys
            h = _mix(h ^ (words[:, j] + _GOLDEN * np.uint64(j + 1)))
    return h


def _vnode_position(shard: int, v: int) -> int:
    digest = hashlib.blake2b(f"shard-{shard}/vnode-{v}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


@dataclass(frozen=True)
class Ring:
    """Shard ids on the ring. V = len(shards) x vnodes points, R = replication."""

    shards: tuple[int, ...]
    vnodes: int
    replication: int
    positions: np.ndarray  # (V,) uint64, sorted
    owner: np.ndarray  # (V,) int64 shard id of each point
    preference: np.ndarray  # (V, R') int64: first R' = min(R, shards) distinct shards clockwise

    @classmethod
    def build(cls, shards: tuple[int, ...] | list[int], vnodes: int, replication: int) -> Ring:
        shards = tuple(sorted(set(int(s) for s in shards)))
        if not shards:
            raise ValueError("a ring needs at least one shard")
        pos = np.array([_vnode_position(s, v) for s in shards for v in range(vnodes)], dtype=np.uint64)
        own = np.repeat(np.array(shards, dtype=np.int64), vnodes)
        order = np.argsort(pos, kind="stable")
        pos, own = pos[order], own[order]
        r = min(replication, len(shards))
        pref = np.empty((len(pos), r), dtype=np.int64)
        doubled = np.concatenate([own, own])
        for v in range(len(pos)):  # V is small (shards x vnodes) and rebuilt only on membership change
            seen: list[int] = []
            i = v
            while len(seen) < r:
                s = int(doubled[i])
                if s not in seen:
                    seen.append(s)
                i += 1
            pref[v] = seen
        return cls(shards, vnodes, replication, pos, own, pref)

    def point_of(self, positions: np.ndarray) -> np.ndarray:
        """(N,) uint64 key positions -> (N,) index of the first ring point at or after each."""
        return np.searchsorted(self.positions, positions, side="left") % len(self.positions)

    def replicas(self, keys: torch.Tensor) -> torch.Tensor:
        """(N, 32) uint8 keys -> (N, R') int64 shard ids holding each key, primary first."""
        return torch.from_numpy(self.preference[self.point_of(key_positions(keys))])

    def readers(self, live: set[int] | None = None) -> np.ndarray:
        """(V,) int64: per ring point, the first live shard of its preference (-1 if none lives)."""
        live = set(self.shards) if live is None else live
        ok = np.isin(self.preference, list(live))  # (V, R')
        first = ok.argmax(1)
        out = self.preference[np.arange(len(ok)), first]
        return np.where(ok.any(1), out, -1)

    def with_shard(self, shard: int) -> Ring:
        return Ring.build(self.shards + (shard,), self.vnodes, self.replication)

    def without_shard(self, shard: int) -> Ring:
        return Ring.build(tuple(s for s in self.shards if s != shard), self.vnodes, self.replication)
