"""Shared-memory lookups per second and recall@10: the LSH memory against exact brute-force cosine.

Data (same run, same entries for both): N unit vectors of width D in clusters; C cluster centres
drawn uniformly on the sphere, each entry = centre + N(0, spread^2) noise per coordinate, then
normalised. Queries are held-out points drawn the same way. Both sides return the 10 entries most
cosine-similar to each query: brute force by a chunked matmul + top-k over all N entries; the LSH
memory (`swarm.memory.SharedMemory`, 16 bands x 16 bits, min_similarity -1, equal fitness so the
rank is pure cosine) by hash-band candidates and exact cosine re-rank. recall@10 = share of the
exact top-10 ids that the LSH top-10 also returns. Index building (one sort per band after the
writes) is timed apart and not counted as lookups.

    python -m benchmarks.memory [--entries 1000000] [--dim 64] [--queries 2000] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch.nn.functional import normalize

from swarm.memory import SharedMemory
from swarm.params import MemoryParams


def clustered(n: int, dim: int, centres: torch.Tensor, spread: float, gen: torch.Generator) -> torch.Tensor:
    """(n, D) unit vectors around randomly chosen rows of (C, D) `centres`."""
    pick = torch.randint(0, len(centres), (n,), generator=gen)
    return normalize(centres[pick] + spread * torch.randn(n, dim, generator=gen), dim=1)


def brute_force(entries: torch.Tensor, queries: torch.Tensor, k: int, chunk: int = 250_000) -> torch.Tensor:
    """(B, k) ids of the exact top-k cosine neighbours (entries and queries are unit rows)."""
    best_s = torch.full((len(queries), k), -2.0)
    best_i = torch.zeros(len(queries), k, dtype=torch.long)
    for start in range(0, len(entries), chunk):
        sims = queries @ entries[start:start + chunk].T  # (B, chunk)
        s, i = torch.topk(sims, k, dim=1)
        merged_s, where = torch.topk(torch.cat([best_s, s], 1), k, dim=1)
        best_i = torch.cat([best_i, i + start], 1).gather(1, where)
        best_s = merged_s
    return best_i


def measure(entries: int, dim: int, queries: int, clusters: int, spread: float, max_bucket: int,
            batch: int, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    centres = normalize(torch.randn(clusters, dim, generator=gen), dim=1)
    data = clustered(entries, dim, centres, spread, gen)
    probe = clustered(queries, dim, centres, spread, gen)
    params = MemoryParams(capacity=entries, top_k=10, max_bucket=max_bucket, min_similarity=-1.0)
    mem = SharedMemory(params, dim, gen)
    t0 = time.perf_counter()
    mem.store(data, data, torch.arange(entries), torch.ones(entries), 0)
    mem._sorted_index()
    build = time.perf_counter() - t0

    t0 = time.perf_counter()
    lsh = torch.cat([mem.lookup(probe[i:i + batch]).agent_id for i in range(0, queries, batch)])
    lsh_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    exact = torch.cat([brute_force(data, probe[i:i + batch], 10) for i in range(0, queries, batch)])
    brute_s = time.perf_counter() - t0
    recall = float((lsh.unsqueeze(2) == exact.unsqueeze(1)).any(1).float().mean())
    lsh_rate, brute_rate = queries / lsh_s, queries / brute_s
    return {
        "ratio": lsh_rate / brute_rate, "value": lsh_rate, "reference": brute_rate,
        "unit": "lookups/s (top-10)", "recall_at_10": recall, "target": 10.0, "recall_target": 0.95,
        "entries": entries, "dim": dim, "queries": queries, "clusters": clusters, "spread": spread,
        "bands": params.bands, "rows": params.rows, "max_bucket": max_bucket, "batch": batch,
        "index_build_seconds": build, "threads": torch.get_num_threads(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--clusters", type=int, default=20_000)
    ap.add_argument("--spread", type=float, default=0.03)
    ap.add_argument("--max-bucket", type=int, default=32)
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--quick", action="store_true", help="a seconds-long smoke variant")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.entries, args.queries, args.clusters = 20_000, 200, 400
    r = measure(args.entries, args.dim, args.queries, args.clusters, args.spread, args.max_bucket, args.batch)
    print(f"{r['entries']:,} entries x {r['dim']} dims in {r['clusters']:,} clusters (spread {r['spread']}), "
          f"{r['queries']:,} queries, {r['threads']} threads; index built in {r['index_build_seconds']:.1f} s")
    print(f"{'LSH memory (16x16 bands + cosine re-rank)':<44}{r['value']:>12,.0f} lookups/s")
    print(f"{'brute-force cosine top-10':<44}{r['reference']:>12,.0f} lookups/s")
    print(f"{'ratio':<44}{r['ratio']:>12.1f}   (target >= 10)")
    print(f"{'recall@10':<44}{r['recall_at_10']:>12.3f}   (target >= 0.95)")
    if args.json:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
