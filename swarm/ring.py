"""A consistent-hash ring with virtual nodes: which memory shards hold which 32-byte LSH key.

Every shard puts `vnodes` points on a 64-bit ring. A key's position is a 64-bit mix of its 32
bytes (so similar LSH codes still land far apart); its replicas are the first `replication`
distinct shards met walking clockwise from that position. With zones (the Ray node each shard
runs on) the walk is zone-aware, as Cassandra's rack-aware placement: it first takes shards of
zones it has not used yet, so a key's R copies sit on min(R, zones) different nodes and losing
one node never takes every copy; only then does it fill up with the next distinct shards. The walk
is precomputed once per ring as a (V, R) preference table, so placing a batch of keys is one
`searchsorted` and one gather.

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


def _walk(doubled: np.ndarray, v: int, r: int, zone_of: dict[int, str]) -> list[int]:
    """The r replicas of ring point v: distinct shards clockwise, a shard of an unused zone first."""
    seen: list[int] = []  # distinct shards in clockwise order
    picked: list[int] = []  # those that opened a new zone
    zones: set[str] = set()
    for s in doubled[v:v + len(doubled) // 2].tolist():
        if s in seen:
            continue
        seen.append(s)
        if zone_of[s] not in zones:
            zones.add(zone_of[s])
            picked.append(s)
            if len(picked) == r:
                return picked
        if len(seen) == len(zone_of):
            break
    return (picked + [s for s in seen if s not in picked])[:r]


@dataclass(frozen=True)
class Ring:
    """Shard ids on the ring. V = len(shards) x vnodes points, R = replication."""

    shards: tuple[int, ...]
    vnodes: int
    replication: int
    positions: np.ndarray  # (V,) uint64, sorted
    preference: np.ndarray  # (V, R') int64: first R' = min(R, shards) distinct shards clockwise
    zones: tuple[tuple[int, str], ...] = ()  # (shard, zone) pairs; a shard without one is its own zone

    @classmethod
    def build(cls, shards: tuple[int, ...] | list[int], vnodes: int, replication: int,
              zones: dict[int, str] | None = None) -> Ring:
        """A ring of `shards`; `zones` maps a shard to the node it runs on (see the module doc)."""
        shards = tuple(sorted(set(int(s) for s in shards)))
        if not shards:
            raise ValueError("a ring needs at least one shard")
        zone_of = {s: (zones or {}).get(s, f"shard-{s}") for s in shards}
        pos = np.array([_vnode_position(s, v) for s in shards for v in range(vnodes)], dtype=np.uint64)
        own = np.repeat(np.array(shards, dtype=np.int64), vnodes)
        order = np.argsort(pos, kind="stable")
        pos, own = pos[order], own[order]
        r = min(replication, len(shards))
        pref = np.empty((len(pos), r), dtype=np.int64)
        doubled = np.concatenate([own, own])
        for v in range(len(pos)):  # V is small (shards x vnodes) and rebuilt only on membership change
            pref[v] = _walk(doubled, v, r, zone_of)
        kept = tuple(sorted((s, z) for s, z in (zones or {}).items() if s in zone_of))
        return cls(shards, vnodes, replication, pos, pref, kept)

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

    def with_shard(self, shard: int, zone: str | None = None) -> Ring:
        zones = dict(self.zones) | ({shard: zone} if zone is not None else {})
        return Ring.build(self.shards + (shard,), self.vnodes, self.replication, zones)

    def without_shard(self, shard: int) -> Ring:
        zones = {s: z for s, z in self.zones if s != shard}
        return Ring.build(tuple(s for s in self.shards if s != shard), self.vnodes, self.replication, zones)
