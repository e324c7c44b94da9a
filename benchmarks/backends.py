"""Queries per second of the serial backend and of the Ray backend (2 colony actors), same spec.

Both run the same experiment spec (2 colonies of `--agents / 2` agents, a batch of `--batch`
queries with fanout `--fanout` a step, a steady population so the query path is what is timed);
the Ray backend adds 2 colony actors and `--shards` memory shard actors (replication 3) on a
local Ray started in this process. Actor start-up and `--warmup` steps are not timed. The ratio
is Ray queries/s over serial queries/s.

    python -m benchmarks.backends [--agents 4000] [--batch 512] [--steps 10] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from experiments.spec import validate
from swarm.model import SwarmModel


def spec_for(agents: int, batch: int, fanout: int, backend: str, shards: int):
    per_colony = agents // 2
    return validate({
        "colony": {"count": 2, "capacity": per_colony, "initial_agents": per_colony},
        "brain": {"hidden": 64, "memory_dim": 128},
        "environment": {"batch": batch},
        "gossip": {"fanout": fanout},
        "memory": {"capacity": 50_000},
        "replication": {"threshold": 1_000_000},  # a steady population: measure the query path
        "backend": {"name": backend, "shards": shards, "replication": min(3, shards), "object_store_mb": 600},
    })


def rate(backend: str, agents: int, batch: int, fanout: int, steps: int, warmup: int, shards: int) -> dict:
    spec = spec_for(agents, batch, fanout, backend, shards)
    t0 = time.perf_counter()
    model = SwarmModel(spec, seed=0)
    for _ in range(warmup):
        model.step()
    ready = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        model.step()
    seconds = time.perf_counter() - t0
    quality = model.metrics["quality"]
    model.close()
    return {"qps": steps * batch / seconds, "seconds_per_step": seconds / steps, "startup_seconds": ready,
            "quality": quality}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=512, help="queries per step")
    ap.add_argument("--fanout", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--shards", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="a seconds-long smoke variant")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args()
    if args.quick:
        args.agents, args.batch, args.fanout, args.steps = 200, 64, 4, 3
    os.environ.setdefault("RAY_DISABLE_IMPORT_WARNING", "1")
    warmup = 1 if args.quick else 3
    serial = rate("serial", args.agents, args.batch, args.fanout, args.steps, warmup, args.shards)
    ray_ = rate("ray", args.agents, args.batch, args.fanout, args.steps, warmup, args.shards)
    cores = os.cpu_count()
    r = {
        "ratio": ray_["qps"] / serial["qps"], "value": ray_["qps"], "reference": serial["qps"],
        "unit": "queries/s", "target": 0.8, "agents": args.agents, "colonies": 2, "batch": args.batch,
        "fanout": args.fanout, "steps": args.steps, "shards": args.shards, "cores": cores,
        "serial": serial, "ray": ray_, "torch_threads_serial": torch.get_num_threads(),
    }
    r["sizes"] = {k: r[k] for k in ("agents", "colonies", "batch", "fanout", "steps", "shards", "cores")}
    print(f"{args.agents:,} agents in 2 colonies, batch {args.batch} x fanout {args.fanout}, "
          f"{args.steps} timed steps, {cores} cores")
    for name, x in (("serial (one process)", serial), (f"ray (2 colony + {args.shards} shard actors)", ray_)):
        print(f"{name:<36}{x['qps']:>10,.0f} queries/s {x['seconds_per_step'] * 1e3:8.1f} ms/step "
              f"(start-up {x['startup_seconds']:.1f} s)")
    print(f"{'ratio ray / serial':<36}{r['ratio']:>10.2f}   (target >= 0.8)")
    if args.json:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
