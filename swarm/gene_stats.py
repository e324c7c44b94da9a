"""Dedup statistics of the swarm's gene pool, kept up to date as genes are made and freed.

Each gene gets its level keys once, when it is made (the same levels as the persistent pool,
`genome.pool`, applied to flat weight blocks):

- L1 its representation: a stored gene's bytes, a lazy gene's (parent L1, noise offset, sigma);
- L2 its values as float32 (a lazy gene and a stored gene with the same values collapse);
- L3 its outputs on seeded probe values, rounded to 12 significant bits;
- L4 its cluster: MinHash LSH (20 bands x 5 rows) over the signed positions of its ternary form,
  joining a candidate's cluster only when exact Jaccard and cosine reach 0.8 and the output change
  on probes (shadow execution) stays within 5%.

Counters hold, per level, how many genes that living agents reference carry each key, so the
pool_* metrics of a step cost a few dictionary sizes. `genes.levels` < 4 skips the costlier
levels (their unique counts then repeat the last level tracked).
"""

from __future__ import annotations

import struct
from collections import Counter
from typing import Any

import numpy as np
import torch

from swarm import brain

THRESHOLD = 0.8
SHADOW_TOL = 0.05


def _signed(x: int) -> int:
    return x - (1 << 64) if x >= 1 << 63 else x


class GeneStats:
    """Level keys and live counters of a `swarm.genes.GeneBrains` pool."""

    def __init__(self, pool: Any, levels: int) -> None:
        self.pool, self.levels = pool, levels
        self.keys: dict[int, tuple[int, ...]] = {}  # gene -> (L1, L2, L3, L4 cluster) for tracked levels
        self.live = [Counter() for _ in range(4)]
        self.referenced_count = 0
        self.role_of = self._roles()
        self.role_names = sorted(set(self.role_of))
        self.role_live: Counter[str] = Counter()
        self.sigs: dict[int, np.ndarray] = {}
        self._lsh: Any = None
        self._hasher: Any = None

    def _roles(self) -> list[str]:
        """Each block's layer: the layer holding most of its parameters."""
        layout, bounds, start = brain._layout(self.pool.spec.brain), [], 0
        for name, shape in layout:
            size = int(np.prod(shape))
            bounds.append((name, start, start + size))
            start += size
        roles = []
        for j in range(self.pool.nb):
            lo, hi = j * self.pool.B, min((j + 1) * self.pool.B, self.pool.P)
            roles.append(max(bounds, key=lambda b: min(hi, b[2]) - max(lo, b[1]))[0])
        return roles

    # ---- gene events -----------------------------------------------------------------------
    def created(self, ids: torch.Tensor, values: torch.Tensor | None) -> None:
        """Compute the level keys of new genes (values: their (n, B) float32, or None)."""
        if self.levels == 0 or len(ids) == 0:
            return
        import xxhash

        from genome.pool.levels import vector_behaviour

        p = self.pool
        widths = p.width[p.block[ids].long()].tolist()
        rows, parents = p.row[ids].tolist(), p.parent[ids].tolist()
        offsets, sigmas, scales = p.offset[ids].tolist(), p.sigma[ids].tolist(), p.scale[ids].tolist()
        vals = values.numpy() if values is not None else None
        bank = p.bank.numpy()
        keys = []
        for k in range(len(rows)):
            if rows[k] >= 0:
                extra = struct.pack("<f", scales[k]) if p.ternary else b""
                k1 = _signed(xxhash.xxh3_64_intdigest(bank[rows[k], : widths[k]].tobytes() + extra))
            else:
                k1 = _signed(xxhash.xxh3_64_intdigest(struct.pack("<qqf", self.keys[parents[k]][0], offsets[k],
                                                                   sigmas[k])))
            entry = [k1]
            if self.levels >= 2 and vals is not None:
                v = vals[k, : widths[k]]
                entry.append(_signed(xxhash.xxh3_64_intdigest(v.tobytes())))
                if self.levels >= 3:
                    entry.append(_signed(xxhash.xxh3_64_intdigest(vector_behaviour(v))))
            keys.append(entry)
        if self.levels >= 4 and vals is not None:
            for entry, cluster in zip(keys, self._clusters(ids, vals, widths)):
                entry.append(cluster)
        for g, entry in zip(ids.tolist(), keys):
            self.keys[g] = tuple(entry)

    def _clusters(self, ids: torch.Tensor, vals: np.ndarray, widths: list[int]) -> list[int]:
        """L4 cluster of each new gene, against the genes that existed before this batch."""
        from genome.minhash import (
            LSHIndex,
            MinHasher,
            jaccard,
            signed_shingles,
            ternary,
        )
        from genome.pool.levels import cosine, shadow_error, signatures

        if self._lsh is None:
            self._lsh, self._hasher = LSHIndex(20, 5), MinHasher(100, 1)
        blocks = [vals[k, : widths[k]] for k in range(len(ids))]
        sigs, shingles = signatures(blocks, self._hasher, 2 * self.pool.B)
        block_of = self.pool.block.numpy()
        gene_ids = ids.tolist()
        picks: list[list[int]] = []
        for k, g in enumerate(gene_ids):  # candidates whose estimated Jaccard may reach the threshold
            cands = [c for c in self._lsh.query(sigs[k]) if block_of[c] == block_of[g]]
            est = [float((self.sigs[c] == sigs[k]).mean()) for c in cands]
            ranked = sorted(zip(est, cands), reverse=True)[:2]
            picks.append([c for e, c in ranked if e >= THRESHOLD - 0.15])
        wanted = sorted({c for p in picks for c in p})
        cand_vals = dict(zip(wanted, self.pool.materialise(torch.tensor(wanted, dtype=torch.int64)).numpy())) \
            if wanted else {}
        out = []
        for k, g in enumerate(gene_ids):
            cluster = g
            for c in picks[k]:
                cv = cand_vals[c][: widths[k]]
                if jaccard(shingles[k], signed_shingles(ternary(cv))) >= THRESHOLD \
                        and cosine(blocks[k], cv) >= THRESHOLD and shadow_error(blocks[k], cv) <= SHADOW_TOL:
                    cluster = self.keys[c][3]
                    break
            out.append(cluster)
        for k, g in enumerate(gene_ids):
            self.sigs[g] = sigs[k]
            self._lsh.insert(g, sigs[k])
        return out

    def referenced(self, genes: torch.Tensor) -> None:
        """Genes that just gained agent references (agent_refs already updated)."""
        self._flip(genes, newly=lambda u, n: self.pool.agent_refs[u] == n, sign=+1)

    def unreferenced(self, genes: torch.Tensor) -> None:
        """Genes that just lost agent references (agent_refs already updated)."""
        self._flip(genes, newly=lambda u, n: self.pool.agent_refs[u] == 0, sign=-1)

    def _flip(self, genes: torch.Tensor, newly: Any, sign: int) -> None:
        unique, counts = torch.unique(genes, return_counts=True)
        flipped = unique[newly(unique, counts.to(torch.int32))].tolist()
        self.referenced_count += sign * len(flipped)
        blocks = self.pool.block
        for g in flipped:
            self.role_live[self.role_of[int(blocks[g])]] += sign
            for level, key in enumerate(self.keys.get(g, ())):
                self.live[level][key] += sign
                if self.live[level][key] == 0:
                    del self.live[level][key]

    def freed(self, genes: torch.Tensor) -> None:
        for g in genes.tolist():
            self.keys.pop(g, None)
            if self.sigs.pop(g, None) is not None:
                self._lsh.remove(g)

    # ---- metrics ---------------------------------------------------------------------------
    def metric_names(self) -> tuple[str, ...]:
        return ("pool_genes", "pool_unique_l1", "pool_unique_l2", "pool_unique_l3", "pool_unique_l4",
                "pool_bytes", "pool_bytes_naive", "pool_dedup_ratio",
                *(f"pool_role_{r}" for r in self.role_names), "pool_status_active", "pool_status_deprecated")

    def metrics(self, population: int) -> dict[str, float]:
        p = self.pool
        unique = [float(self.referenced_count)]
        for level in range(min(self.levels, 4)):
            unique.append(float(len(self.live[level])))
        while len(unique) < 5:
            unique.append(unique[-1])
        held = p.nbytes(population)
        naive = population * p.P * 4
        live_genes = int((p.block[: p.genes_used] >= 0).sum())
        return {
            "pool_genes": float(population * p.nb),
            **{f"pool_unique_l{k}": unique[k] for k in (1, 2, 3, 4)},
            "pool_bytes": float(held), "pool_bytes_naive": float(naive),
            "pool_dedup_ratio": naive / held if held else 0.0,
            **{f"pool_role_{r}": float(self.role_live[r]) for r in self.role_names},
            "pool_status_active": float(self.referenced_count),
            "pool_status_deprecated": float(live_genes - self.referenced_count),
        }

    @staticmethod
    def combine(parts: list[dict[str, float]]) -> dict[str, float]:
        """The pool_* metrics of several pools (one per Ray colony actor) as one: counts and bytes
        add up (a gene held by two pools counts twice), the dedup ratio is recomputed."""
        out = {k: float(sum(p[k] for p in parts)) for k in parts[0]}
        out["pool_dedup_ratio"] = out["pool_bytes_naive"] / out["pool_bytes"] if out["pool_bytes"] else 0.0
        return out

    def state_dict(self) -> dict[str, Any]:
        ids = sorted(self.keys)
        return {"ids": torch.tensor(ids, dtype=torch.int64),
                "keys": [list(self.keys[g]) for g in ids],
                "live": [[[k, v] for k, v in c.items()] for c in self.live],
                "referenced": self.referenced_count, "roles": dict(self.role_live),
                "sig_ids": torch.tensor(sorted(self.sigs), dtype=torch.int64),
                "sigs": torch.from_numpy(np.stack([self.sigs[g] for g in sorted(self.sigs)]).astype(np.int64))
                if self.sigs else torch.zeros(0, 100, dtype=torch.int64)}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.keys = {int(g): tuple(k) for g, k in zip(d["ids"].tolist(), d["keys"])}
        self.live = [Counter({k: v for k, v in c}) for c in d["live"]]
        self.referenced_count = int(d["referenced"])
        self.role_live = Counter(d["roles"])
        self.sigs, self._lsh = {}, None
        if len(d["sig_ids"]):
            from genome.minhash import LSHIndex, MinHasher

            self._lsh, self._hasher = LSHIndex(20, 5), MinHasher(100, 1)
            for g, sig in zip(d["sig_ids"].tolist(), d["sigs"].numpy().astype(np.uint32)):
                self.sigs[g] = sig
                self._lsh.insert(g, sig)
