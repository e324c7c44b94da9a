"""Robust aggregation throughput against the plain mean, and BitDelta on the swarm's own entries.

Aggregation: U updates of D floats (default 1,000 x 512) combined by each rule of the consensus
registry (swarm/consensus.py, `unit=False`), updates per second, the plain mean measured in the
same run as the reference. `ratio` = coordinate-wise median throughput / mean throughput.

BitDelta: a swarm with 512-wide embeddings runs (sharing off, so its memory holds raw entries);
its entries are then shared step by step through an exchange, coded against the registry records
before them exactly as sharing colonies do (swarm/sharing/codec.py).
`bitdelta_ratio` = float32 bytes of the entries' queries and responses / coded bytes;
`bitdelta_recall_at_10` = overlap of the top-10 entries by exact cosine over the decoded stored
queries with the top-10 over the uncompressed ones, for held-out queries of the same environment.

    python -m benchmarks.aggregate [--updates 1000] [--dim 512] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from experiments.spec import validate
from swarm.consensus import REGISTRY
from swarm.model import SwarmModel
from swarm.params import ConsensusParams
from swarm.memory import SharedMemory
from swarm.sharing import Exchange

RULES = ("mean", "median", "trimmed_mean", "geometric_median", "krum")


def aggregation(updates: int, dim: int, rounds: int) -> dict[str, float]:
    """Updates per second for each rule on (1, U, D) updates, best of `rounds`."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, updates, dim, generator=gen)
    fit, valid, p = torch.rand(1, updates, generator=gen), torch.ones(1, updates, dtype=torch.bool), ConsensusParams()
    out = {}
    for rule in RULES:
        best = float("inf")
        for _ in range(rounds):
            t0 = time.perf_counter()
            REGISTRY[rule](x, fit, valid, p, unit=False)
            best = min(best, time.perf_counter() - t0)
        out[rule] = updates / best
    return out


def bitdelta(steps: int, dim: int, queries: int) -> dict[str, float]:
    """Code a swarm's own memory entries in their storage order, as sharing colonies would."""
    cfg = {
        "brain": {"embed_dim": dim, "hidden": 32}, "colony": {"count": 2, "capacity": 64, "initial_agents": 32},
        "environment": {"batch": 32}, "memory": {"capacity": 20_000},
    }
    model = SwarmModel(validate(cfg), seed=0)  # sharing off: the memory holds the raw entries
    for _ in range(steps):
        model.step()
    mem = model.memory
    order = torch.argsort(mem.timestamp[mem.valid], stable=True)
    raw_q, raw_r = mem.query[mem.valid][order], mem.response[mem.valid][order]  # (N, D) each
    fit, ids, when = mem.fitness[mem.valid][order], mem.agent_id[mem.valid][order], mem.timestamp[mem.valid][order]
    spec = validate({**cfg, "sharing": {"enabled": True}})
    ex = Exchange(spec, SharedMemory(spec.memory, dim, torch.Generator().manual_seed(0)), torch.Generator().manual_seed(0))
    coded = raw = 0
    for step in torch.unique(when).tolist():  # one batch per step, against the records before it
        rows = when == step
        batch = ex.pack(0, raw_q[rows], raw_r[rows], ids[rows], fit[rows], step)
        ex.submit(batch, step)
        coded, raw = coded + batch.entries.nbytes, raw + batch.entries.raw_nbytes
    n = len(raw_q)
    ring = torch.arange(n) % len(ex.cache_q)
    dec_q, dec_r = ex.cache_q[ring], ex.cache_r[ring]
    probe = model.environment.sample(steps + 1, torch.Generator().manual_seed(1), batch=queries).queries
    top_raw = (probe @ raw_q.T).topk(10, dim=1).indices
    top_dec = (probe @ dec_q.T).topk(10, dim=1).indices
    overlap = (top_raw.unsqueeze(2) == top_dec.unsqueeze(1)).any(2).float().mean()
    return {"bitdelta_ratio": raw / coded, "bitdelta_recall_at_10": float(overlap),
            "bitdelta_cosine": float((dec_q * raw_q).sum(1).mean()),
            "bitdelta_response_cosine": float((dec_r * raw_r).sum(1).mean()), "entries": n,
            "batch_ratio": ex.metrics()["shared_ratio"]}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--updates", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--steps", type=int, default=30, help="swarm steps before measuring BitDelta")
    ap.add_argument("--quick", action="store_true", help="a seconds-long smoke variant")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args(argv)
    if args.quick:
        args.updates, args.steps = 200, 4
    torch.set_num_threads(1)
    rates = aggregation(args.updates, args.dim, rounds=2 if args.quick else 5)
    bd = bitdelta(args.steps, args.dim, queries=64 if args.quick else 256)
    print(f"robust aggregation of {args.updates} updates x {args.dim} floats (updates/s, one thread)")
    for rule, r in rates.items():
        print(f"  {rule:<18} {r:>14,.0f}   {r / rates['mean']:.3f} x mean")
    print(f"BitDelta on {bd['entries']} shared swarm entries ({args.dim} floats each, query + response):")
    print(f"  ratio {bd['bitdelta_ratio']:.1f}  (whole batches incl. ids, fitness, root, signature: {bd['batch_ratio']:.1f})")
    print(f"  recall@10 against uncompressed lookups {bd['bitdelta_recall_at_10']:.3f}; mean cosine of decoded "
          f"to raw: queries {bd['bitdelta_cosine']:.3f}, responses {bd['bitdelta_response_cosine']:.3f}")
    result = {
        "ratio": rates["median"] / rates["mean"], "value": rates["median"], "reference": rates["mean"],
        "unit": "updates/s", "target": None, "updates": args.updates, "dim": args.dim,
        "rates": rates, "bitdelta_target": 25.0, **bd,
    }
    result["sizes"] = {"updates": args.updates, "dim": args.dim, "bitdelta_entries": bd["entries"]}
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
