"""Held-out accuracy of a swarm evolved on `text_qa`, against a fresh population and the most frequent answer.

    python -m benchmarks.text_qa [--encoder hashing|minilm] [--steps N] [--seeds N] [--quick] [--json]

For each seed one model is built; the fresh population (step 0, empty memory) answers every
held-out question, then the same model runs N steps and answers them again (evaluation never
changes the run: the generator is restored). The baseline is the answer bank's most frequent
training answer. `ratio` = evolved accuracy over the better of fresh and most-frequent.
"""

from __future__ import annotations

import argparse
import json
import time
from statistics import mean

import torch

from experiments.spec import validate
from swarm.model import SwarmModel
from swarm.text_qa import evaluate

CONFIG = {  # the small config of tests/swarm/test_text_qa.py, a little longer
    "colony": {"count": 2, "capacity": 64, "initial_agents": 32},
    "brain": {"hidden": 32, "embed_dim": 64},
    "memory": {"capacity": 4000},
    "replication": {"threshold": 10},
    "environment": {"name": "text_qa", "niches": 4, "batch": 32,
                    "text": {"facts_per_niche": 10, "holdout": 2}},
}


def measure(encoder: str, steps: int, seed: int) -> dict[str, float]:
    data = json.loads(json.dumps(CONFIG))
    data["environment"]["text"]["encoder"] = encoder
    model = SwarmModel(validate(data), seed=seed)
    started = time.perf_counter()
    fresh = evaluate(model)
    for _ in range(steps):
        model.step()
    evolved = evaluate(model)
    return {"seed": seed, "fresh": fresh["accuracy"], "evolved": evolved["accuracy"],
            "evolved_agents_only": evolved["agent_accuracy"], "most_frequent": evolved["most_frequent"],
            "memory_hit_rate": evolved["memory_hit_rate"], "questions": evolved["questions"],
            "seconds": time.perf_counter() - started}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", default="hashing", choices=("hashing", "minilm"))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="40 steps, one seed")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args()
    torch.set_num_threads(1)
    steps, seeds = (40, 1) if args.quick else (args.steps, args.seeds)
    rows = [measure(args.encoder, steps, s) for s in range(seeds)]
    print(f"text_qa held-out accuracy, encoder {args.encoder}, {steps} steps, {int(rows[0]['questions'])} questions")
    print(f"{'seed':>4} {'fresh':>7} {'evolved':>8} {'agents':>7} {'most freq':>9} {'hits':>6} {'s':>6}")
    for r in rows:
        print(f"{r['seed']:>4} {r['fresh']:>7.3f} {r['evolved']:>8.3f} {r['evolved_agents_only']:>7.3f} "
              f"{r['most_frequent']:>9.3f} {r['memory_hit_rate']:>6.2f} {r['seconds']:>6.1f}")
    evolved = mean(r["evolved"] for r in rows)
    reference = max(mean(r["fresh"] for r in rows), mean(r["most_frequent"] for r in rows))
    summary = {
        "ratio": evolved / max(reference, 1e-9), "value": evolved, "reference": reference, "unit": "accuracy",
        "fresh": mean(r["fresh"] for r in rows), "most_frequent": mean(r["most_frequent"] for r in rows),
        "evolved_agents_only": mean(r["evolved_agents_only"] for r in rows),
        "encoder": args.encoder, "steps": steps, "seeds": seeds, "questions": int(rows[0]["questions"]),
        "sizes": {"steps": steps, "seeds": seeds, "questions": int(rows[0]["questions"])},
    }
    print(f"mean: evolved {evolved:.3f} vs fresh {summary['fresh']:.3f} and most frequent "
          f"{summary['most_frequent']:.3f} (agents only {summary['evolved_agents_only']:.3f})")
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
