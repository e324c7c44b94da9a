"""MinHash signatures per second: genome.minhash against datasketch's update_batch, same sets.

The sets are what the gene pool's L4 hashes: signed non-zero positions of the absmean ternary
form of 4096-element Gaussian blocks (about 2,800 elements each, ids < 8192). Both sides use
datasketch's default scheme (affine32), seed 1, 100 permutations and its SHA-1 element hash on the
4-byte ids. Ours includes building its permuted-hash table for the 8192 possible ids.
`identical` is true only if every signature matched datasketch's.

    python -m benchmarks.minhash [--sets 2000] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def measure(n_sets: int, block: int = 4096, num_perm: int = 100, rounds: int = 3, ref_sets: int | None = None) -> dict:
    from datasketch import MinHash

    from genome.minhash import (
        MinHasher,
        from_datasketch,
        id_bytes,
        signed_shingles,
        ternary,
    )

    rng = np.random.default_rng(0)
    sets = [signed_shingles(ternary(rng.standard_normal(block).astype(np.float32))) for _ in range(n_sets)]
    ids, lengths = np.concatenate(sets), [len(s) for s in sets]
    best_ours = float("inf")
    for _ in range(rounds):  # a fresh hasher each round: table building is timed too
        t0 = time.perf_counter()
        hasher = MinHasher(num_perm=num_perm, seed=1)
        ours = hasher.signatures_of_ids(ids, lengths, 2 * block)
        best_ours = min(best_ours, time.perf_counter() - t0)
    ref_n = min(n_sets, ref_sets or n_sets)
    encoded = [[id_bytes(i) for i in s] for s in sets[:ref_n]]  # bytes prepared outside the timing
    best_ref, refs = float("inf"), []
    for _ in range(rounds):
        refs = []
        t0 = time.perf_counter()
        for items in encoded:
            m = MinHash(num_perm=num_perm, seed=1)
            m.update_batch(items)
            refs.append(m)
        best_ref = min(best_ref, time.perf_counter() - t0)
    identical = all(np.array_equal(from_datasketch(m), sig) for m, sig in zip(refs, ours[:ref_n]))
    value, reference = n_sets / best_ours, ref_n / best_ref
    return {"ratio": value / reference, "value": value, "reference": reference, "unit": "signatures/s",
            "identical": bool(identical), "sizes": {"sets": n_sets, "reference_sets": ref_n, "block": block,
                                                    "mean_set_size": float(np.mean(lengths)), "num_perm": num_perm},
            "rounds": rounds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", type=int, default=2000)
    ap.add_argument("--quick", action="store_true", help="a seconds-long smoke variant")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args()
    r = measure(200, rounds=1) if args.quick else measure(args.sets, ref_sets=min(args.sets, 500))
    s = r["sizes"]
    print(f"{s['sets']} sets of ~{s['mean_set_size']:.0f} signed ternary positions, {s['num_perm']} permutations")
    print(f"{'genome.minhash (batched)':<32}{r['value']:>12,.0f} signatures/s")
    print(f"{'datasketch update_batch':<32}{r['reference']:>12,.0f} signatures/s  ({s['reference_sets']} sets)")
    print(f"{'ratio':<32}{r['ratio']:>12.1f}   (target >= 10)   identical: {r['identical']}")
    if args.json:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
