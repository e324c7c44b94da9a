"""Shared-memory lookups per second and recall@10: the LSH memory against exact brute-force cosine.

Data (same run, same entries for both): N unit vectors of width D in clusters; C cluster centres
drawn uniformly on the sphere, each entry = centre + N(0, spread^2) noise per coordinate, then
normalised. Queries are held-out points drawn the same way. Both sides return the 10 entries most
cosine-similar to each query: brute force by a chunked matmul + top-k over all N entries; the LSH
memory (`swarm.memory.SharedMemory`, min_similarity -1, equal fitness so the rank is pure cosine)
by hash-band candidates and exact cosine re-rank. recall@10 = share of the exact top-10 ids that
the LSH top-10 also returns. Index building (one sort per band after the writes) is timed apart and
not counted as lookups.

Memory settings measured (the headline `ratio` and `recall_at_10`): `memory.bands=8, rows=32,
probes=32, max_bucket=32` -- 8 bands of 32 bits, so that at 1M entries a bucket holds almost only
near neighbours, and multi-probe (32 extra buckets per band, the least-confident bits flipped) to
find the neighbours whose key differs in a few bits. The simulation's defaults (`bands=16, rows=16,
probes=0, max_bucket=4`) are measured on the same entries and queries as a second line
(`default_settings` in the JSON), for comparison only. `--bands/--rows/--probes/--max-bucket`
change the headline settings. Both sides run on `--threads` torch threads, 1 by default: a
per-core comparison (colony actors and claim runs use one thread each), and on a shared machine the
steadier one (a 2-thread op waits whenever another job holds a core; 0 keeps torch's default).

    python -m benchmarks.memory [--entries 1000000] [--dim 64] [--queries 2000] [--bands 8] [--rows 32]
        [--probes 32] [--max-bucket 32] [--threads 1] [--quick] [--json]
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


def lsh_lookups(data: torch.Tensor, probe: torch.Tensor, params: MemoryParams, batch: int,
                gen: torch.Generator) -> tuple[torch.Tensor, float, float]:
    """(B, 10) ids the LSH memory returns for `probe`, lookup seconds and index build seconds."""
    mem = SharedMemory(params, data.shape[1], gen)
    t0 = time.perf_counter()
    mem.store(data, data, torch.arange(len(data)), torch.ones(len(data)), 0)
    mem._sorted_index()
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    ids = torch.cat([mem.lookup(probe[i:i + batch]).agent_id for i in range(0, len(probe), batch)])
    return ids, time.perf_counter() - t0, build


def recall_at(found: torch.Tensor, exact: torch.Tensor) -> float:
    """Share of the (B, k) exact ids that the (B, k) found ids also hold."""
    return float((found.unsqueeze(2) == exact.unsqueeze(1)).any(1).float().mean())


def measure(entries: int, dim: int, queries: int, clusters: int, spread: float, bands: int, rows: int,
            probes: int, max_bucket: int, batch: int, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    centres = normalize(torch.randn(clusters, dim, generator=gen), dim=1)
    data = clustered(entries, dim, centres, spread, gen)
    probe = clustered(queries, dim, centres, spread, gen)
    params = MemoryParams(capacity=entries, top_k=10, bands=bands, rows=rows, probes=probes,
                          max_bucket=max_bucket, min_similarity=-1.0)
    defaults = MemoryParams(capacity=entries, top_k=10, min_similarity=-1.0)
    planes_seed = int(torch.randint(0, 2**31, (1,), generator=gen))  # both memories hash with the same planes
    lsh, lsh_s, build = lsh_lookups(data, probe, params, batch, torch.Generator().manual_seed(planes_seed))
    base, base_s, _ = lsh_lookups(data, probe, defaults, batch, torch.Generator().manual_seed(planes_seed))

    t0 = time.perf_counter()
    exact = torch.cat([brute_force(data, probe[i:i + batch], 10) for i in range(0, queries, batch)])
    brute_s = time.perf_counter() - t0
    lsh_rate, brute_rate = queries / lsh_s, queries / brute_s
    return {
        "ratio": lsh_rate / brute_rate, "value": lsh_rate, "reference": brute_rate,
        "unit": "lookups/s (top-10)", "recall_at_10": recall_at(lsh, exact), "target": 10.0, "recall_target": 0.95,
        "entries": entries, "dim": dim, "queries": queries, "clusters": clusters, "spread": spread,
        "bands": bands, "rows": rows, "probes": probes, "max_bucket": max_bucket, "batch": batch,
        "settings": f"memory.bands={bands}, rows={rows}, probes={probes}, max_bucket={max_bucket}",
        "default_settings": {
            "settings": f"memory.bands={defaults.bands}, rows={defaults.rows}, probes={defaults.probes}, "
                        f"max_bucket={defaults.max_bucket}",
            "value": queries / base_s, "ratio": queries / base_s / brute_rate, "recall_at_10": recall_at(base, exact),
        },
        "index_build_seconds": build, "threads": torch.get_num_threads(),
        "sizes": {"entries": entries, "dim": dim, "queries": queries, "clusters": clusters, "batch": batch},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--clusters", type=int, default=20_000)
    ap.add_argument("--spread", type=float, default=0.03)
    ap.add_argument("--bands", type=int, default=8)
    ap.add_argument("--rows", type=int, default=32)
    ap.add_argument("--probes", type=int, default=32)
    ap.add_argument("--max-bucket", type=int, default=32)
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both sides (0: torch's default)")
    ap.add_argument("--quick", action="store_true", help="a seconds-long smoke variant")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.entries, args.queries, args.clusters = 20_000, 200, 400
    r = measure(args.entries, args.dim, args.queries, args.clusters, args.spread, args.bands, args.rows,
                args.probes, args.max_bucket, args.batch)
    print(f"{r['entries']:,} entries x {r['dim']} dims in {r['clusters']:,} clusters (spread {r['spread']}), "
          f"{r['queries']:,} queries, {r['threads']} threads; index built in {r['index_build_seconds']:.1f} s")
    d = r["default_settings"]
    print(f"{'':<64}{'lookups/s':>12}{'ratio':>8}{'recall@10':>11}")
    print(f"{'LSH memory, ' + r['settings']:<64}{r['value']:>12,.0f}{r['ratio']:>8.1f}{r['recall_at_10']:>11.3f}")
    print(f"{'  (defaults: ' + d['settings'] + ')':<64}{d['value']:>12,.0f}{d['ratio']:>8.1f}{d['recall_at_10']:>11.3f}")
    print(f"{'brute-force cosine top-10 (reference)':<64}{r['reference']:>12,.0f}{1.0:>8.1f}{1.0:>11.3f}")
    print(f"targets: ratio >= {r['target']:g}, recall@10 >= {r['recall_target']:g}")
    if args.json:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
