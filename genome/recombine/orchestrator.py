"""The breeding orchestrator: goal x lineage x overlap x modularity -> strategy, estimate, plan, run, log.

`analyse` measures two models (and their base, when known) on seeded samples of every shared
matrix: lineage (same base when the median cosine of their weights is >= 0.5: fine-tunes of one
base sit near 1, independent initialisations near 0), overlap (Jaccard of the top-20% delta
positions of A and B against the base: how much their skills touch the same weights),
modularity (how concentrated the A-B change is: the share of the summed mean-square change per
tensor held by the top 10% of tensors, rescaled so an even spread is 0 and a change confined to
one tensor 1) and low-rankness (energy of the largest differences kept at rank 16).

`make_plan` scores the strategies of `STRATEGIES` for the goal (priors from the source's
strategy matrix, adjusted by the outcome log), estimates compute, inference cost, expected benefit
and forgetting risk, and writes an executable plan: ``plan.json`` plus ``merge.yaml`` (a
mergekit config for cogitans genome merge; a file-level transfer is a linear merge whose
per-layer weights graft the layers the donor changed most) or ``lora.yaml``. A plan whose risk
exceeds its benefit is flagged (``proceed: false``) with the reason.

`run_plan` executes a plan, measures the outcome (an `evaluate` callable, or weight-space
proxies: how much of each parent's task vector the child keeps) and logs it (`outcomes`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genome.errors import BadInput
from genome.formats import open_model
from genome.recombine import outcomes
from genome.recombine.config import dump

GOALS = ("merge_skills", "capability_add", "compress", "repair")
SAMPLE = 4096
#: goal -> lineage -> strategy -> prior score (overlap and modularity adjust them in `_priors`).
STRATEGIES: dict[str, dict[str, dict[str, float]]] = {
    "merge_skills": {"same": {"ties": 0.8, "dare_ties": 0.7, "task_arithmetic": 0.7, "slerp": 0.6, "linear": 0.5},
                     "different": {"transfer": 0.4, "slerp": 0.1, "linear": 0.1}},
    "capability_add": {"same": {"transfer": 0.8, "lora": 0.6, "task_arithmetic": 0.5},
                       "different": {"transfer": 0.4}},
    "compress": {"same": {"lora": 0.8}, "different": {}},
    "repair": {"same": {"transfer": 0.8, "slerp": 0.5}, "different": {"transfer": 0.3}},
}


@dataclass
class Analysis:
    lineage: str  # "same" or "different"
    similarity: float  # median cosine of matching matrices
    overlap: float | None  # None without a base
    modularity: float
    low_rank: float
    shared: int  # matching tensors
    params: int  # parameters of A
    bytes: int  # stored bytes of A
    top_layers: list[str]  # B's most changed layers (against the base, else against A), at most 2
    layer_prefix: dict[str, str]


def _sample(reader: Any, name: str, idx: np.ndarray) -> np.ndarray:
    return np.asarray(reader.array(name), dtype=np.float64).reshape(-1)[idx]


def analyse(a: Path, b: Path, base: Path | None = None, seed: int = 0) -> Analysis:
    """Measure lineage, overlap, modularity and low-rankness of A and B (seeded samples)."""
    import torch

    rng = np.random.default_rng(seed)
    readers = [open_model(p) for p in (a, b, *([base] if base else []))]
    try:
        by = [{i.canonical: i for i in r.tensors()} for r in readers]
        shared = [c for c, i in by[0].items() if i.is_float and all(c in d and d[c].shape == i.shape for d in by[1:])]
        sims, overlaps, energy, layer_energy, prefixes = [], [], {}, {}, {}
        for c in shared:
            info = by[0][c]
            idx = rng.choice(info.numel, min(SAMPLE, info.numel), replace=False) if info.numel > SAMPLE else \
                np.arange(info.numel)
            va, vb = (_sample(r, d[c].name, idx) for r, d in zip(readers[:2], by[:2]))
            if len(info.shape) == 2:
                sims.append(float(va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb) + 1e-30)))
            energy[c] = float(np.square(va - vb).mean())  # mean squared change per weight
            v0 = _sample(readers[2], by[2][c].name, idx) if base is not None else va
            parts = c.split(".")
            layer = ".".join(parts[:2]) if parts[0] == "blk" else parts[0]
            # what B would give: its change from the base (or its difference from A)
            layer_energy[layer] = layer_energy.get(layer, 0.0) + float(np.square(vb - v0).mean())
            if parts[0] == "blk":
                prefixes.setdefault(layer, _layer_prefix(info.name, parts[1]))
            if base is not None and len(info.shape) == 2:
                da, db = np.abs(va - v0), np.abs(vb - v0)
                k = max(1, len(idx) // 5)
                ta, tb = set(np.argpartition(-da, k - 1)[:k]), set(np.argpartition(-db, k - 1)[:k])
                if da.max() > 0 and db.max() > 0:
                    overlaps.append(len(ta & tb) / len(ta | tb))
        if not shared:
            raise BadInput(f"{a} and {b} share no tensor of the same canonical name and shape")
        total = sum(energy.values()) or 1.0
        ranked = sorted(energy.values(), reverse=True)
        top_share = sum(ranked[: max(1, len(ranked) // 10)]) / total  # ~0.1 when change is spread evenly
        modularity = float(np.clip((top_share - 0.1) / 0.9, 0.0, 1.0))
        low = []
        for c in sorted(energy, key=energy.get, reverse=True)[:3]:
            if len(by[0][c].shape) == 2 and energy[c] > 0:
                d = torch.from_numpy(np.asarray(readers[0].array(by[0][c].name), np.float32)
                                     - np.asarray(readers[1].array(by[1][c].name), np.float32))
                s = torch.linalg.svdvals(d.double()).square()
                low.append(float(s[:16].sum() / s.sum()))
        blocks = {k: v for k, v in layer_energy.items() if k.startswith("blk.")}
        peak = max(blocks.values(), default=0.0)
        top = [k for k in sorted(blocks, key=blocks.get, reverse=True) if peak > 0 and blocks[k] >= 0.5 * peak]
        sim = float(np.median(sims)) if sims else 0.0
        overlap = float(np.mean(overlaps)) if overlaps else (0.0 if base is not None else None)
        return Analysis("same" if sim >= 0.5 else "different", sim, overlap,
                        modularity, float(np.mean(low)) if low else 0.0, len(shared),
                        sum(i.numel for i in by[0].values()), readers[0].total_bytes(), top[:2], prefixes)
    finally:
        for r in readers:
            r.close()


def _layer_prefix(name: str, index: str) -> str:
    """``encoder.layer.3.attention.self.query.weight``, 3 -> ``encoder.layer.3.``."""
    parts = name.split(".")
    cut = parts.index(index) + 1 if index in parts else len(parts) - 1
    return ".".join(parts[:cut]) + "."


def _priors(goal: str, an: Analysis) -> dict[str, float]:
    table = dict(STRATEGIES[goal][an.lineage])
    if an.overlap is None:  # no base: task-vector methods have nothing to work on
        table = {k: v for k, v in table.items() if k in ("slerp", "linear", "transfer", "lora")} or {"slerp": 0.5}
    elif goal == "merge_skills" and an.overlap > 0.3:  # skills collide: weighted task arithmetic first
        table["task_arithmetic"] = table.get("task_arithmetic", 0.5) + 0.15
    if "lora" in table:
        table["lora"] *= 0.5 + 0.5 * an.low_rank
    if "transfer" in table and goal == "capability_add":
        table["transfer"] *= 0.5 + 0.5 * an.modularity
    return table


def estimate(strategy: str, an: Analysis, n_models: int) -> dict[str, float]:
    """Compute seconds, inference cost (x A's), expected benefit and forgetting risk, all rough."""
    read_s = n_models * an.bytes / 100e6  # benchmarks/merge.py: ~110 MB/s of input on 2 shared cores
    if strategy == "lora":
        return {"compute_s": read_s + 2e-9 * an.params * 384, "inference_cost": 1.0 + 0.02 * (1 - an.modularity),
                "benefit": an.low_rank, "forgetting_risk": 1.0 - an.low_rank}
    if strategy == "transfer":
        risk = 0.2 if an.lineage == "same" else 0.6
        return {"compute_s": read_s, "inference_cost": 1.0 if an.lineage == "same" else 1.05,
                "benefit": 0.6 * (0.5 + 0.5 * an.modularity), "forgetting_risk": risk}
    overlap = 0.5 if an.overlap is None else an.overlap
    lineage = 1.0 if an.lineage == "same" else 0.1
    benefit = lineage * (1.0 - 0.5 * overlap)
    risk = (0.5 * overlap if strategy in ("ties", "dare_ties") else overlap) if lineage == 1.0 else 0.9
    return {"compute_s": read_s, "inference_cost": 1.0, "benefit": benefit, "forgetting_risk": risk}


def _merge_config(strategy: str, a: str, b: str, base: str | None, an: Analysis) -> dict[str, Any]:
    if strategy == "transfer":  # graft the donor's most different layers: per-layer weights
        layers = [an.layer_prefix[t] for t in an.top_layers if t in an.layer_prefix] or ["."]
        return {"models": [
            {"model": a, "parameters": {"weight": [*({"filter": p, "value": 0.0} for p in layers), {"value": 1.0}]}},
            {"model": b, "parameters": {"weight": [*({"filter": p, "value": 1.0} for p in layers), {"value": 0.0}]}}],
            "merge_method": "linear", "dtype": "float32"}
    if strategy == "slerp":
        return {"models": [{"model": a}, {"model": b}], "merge_method": "slerp", "base_model": a,
                "parameters": {"t": 0.5}, "dtype": "float32"}
    if strategy == "linear":
        return {"models": [{"model": a, "parameters": {"weight": 0.5}}, {"model": b, "parameters": {"weight": 0.5}}],
                "merge_method": "linear", "dtype": "float32"}
    params = {"weight": 1.0, "density": 0.5} if strategy in ("ties", "dare_ties") else {"weight": 0.5}
    return {"models": [{"model": a, "parameters": params}, {"model": b, "parameters": params}],
            "merge_method": strategy, "base_model": base, "dtype": "float32"}


def make_plan(a: Path, b: Path, goal: str, base: Path | None = None, out_dir: Path | None = None,
              log: Path | None = None) -> dict[str, Any]:
    """Choose and estimate a strategy; write plan.json and its config into `out_dir` if given."""
    if goal not in GOALS:
        raise BadInput(f"--goal {goal!r}: expected one of {', '.join(GOALS)}")
    for p in (a, b, *([base] if base else [])):
        if not Path(p).exists():
            raise BadInput(f"no such file or folder: {p}")
    an = analyse(Path(a), Path(b), Path(base) if base else None)
    past = outcomes.history(log, goal, an.lineage)
    scores = {s: outcomes.adjusted(p, *past.get(s, (0, 0.0))) for s, p in _priors(goal, an).items()}
    if not scores:
        raise BadInput(f"goal {goal} has no strategy for models of different lineage ({a}, {b})")
    strategy = max(scores, key=scores.get)
    est = estimate(strategy, an, 3 if base else 2)
    proceed = est["benefit"] > est["forgetting_risk"]
    a_s, b_s, base_s = str(Path(a).resolve()), str(Path(b).resolve()), str(Path(base).resolve()) if base else None
    plan: dict[str, Any] = {
        "goal": goal, "models": {"a": a_s, "b": b_s, "base": base_s}, "analysis": asdict(an), "strategy": strategy,
        "scores": scores, "history": {k: {"runs": n, "mean": t / n} for k, (n, t) in past.items()},
        "estimates": est, "proceed": proceed,
        "rationale": f"{goal} on {an.lineage}-lineage models (overlap "
                     f"{'unknown' if an.overlap is None else f'{an.overlap:.2f}'}, modularity {an.modularity:.2f}): "
                     f"{strategy} scores {scores[strategy]:.2f}" + ("" if proceed else
                     f"; flagged: forgetting risk {est['forgetting_risk']:.2f} >= benefit {est['benefit']:.2f}"),
    }
    if strategy == "lora":  # A's difference from B as an adapter on B
        plan["config"], config = "lora.yaml", {"strategy": "lora", "base": b_s, "tuned": a_s, "energy": 0.99}
    else:
        plan["config"], config = "merge.yaml", _merge_config(strategy, a_s, b_s, base_s, an)
    where = "PLAN_DIR" if out_dir is None else str(out_dir)
    plan["command"] = (f"cogitans genome merge {where}/merge.yaml OUT.safetensors" if plan["config"] == "merge.yaml"
                       else f"python -c 'from genome.recombine import run_plan; run_plan(\"{where}\")'")
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / plan["config"]).write_text(dump(config))
        (out_dir / "plan.json").write_text(json.dumps(plan, indent=2, default=str))
    return plan


def run_plan(plan_dir: Path, log: Path | None = None,
             evaluate: Callable[[Path], dict[str, float]] | None = None) -> dict[str, Any]:
    """Execute a written plan into PLAN_DIR/out(.safetensors), measure and log the outcome."""
    import yaml

    plan_dir = Path(plan_dir)
    plan = json.loads((plan_dir / "plan.json").read_text())
    config = yaml.safe_load((plan_dir / plan["config"]).read_text())
    t0 = time.perf_counter()
    if plan["config"] == "lora.yaml":
        from genome.recombine.lora import lorafy_models

        out = plan_dir / "adapter"
        summary = lorafy_models(Path(config["base"]), Path(config["tuned"]), out, energy=config["energy"])
        measured = {"benefit": float(np.mean(list(summary["energy"].values()))),
                    "forgetting": 1.0 - min(summary["energy"].values())}
    else:
        from genome.recombine.runner import merge

        out = plan_dir / "out.safetensors"
        merge(plan_dir / plan["config"], out)
        m = plan["models"]
        measured = retention(out, Path(m["a"]), Path(m["b"]), Path(m["base"]) if m["base"] else None)
    seconds = time.perf_counter() - t0
    if evaluate is not None:
        measured.update(evaluate(out))
    context = {"goal": plan["goal"], **{k: plan["analysis"][k] for k in ("lineage", "overlap", "modularity")}}
    outcomes.record(log or outcomes.default_log(), context, plan["strategy"], {"config": plan["config"]},
                    measured["benefit"], measured["forgetting"], seconds, str(out))
    return {"out": str(out), "strategy": plan["strategy"], "seconds": seconds, **measured}


def retention(child: Path, a: Path, b: Path, base: Path | None, seed: int = 0) -> dict[str, float]:
    """Weight-space outcome proxy: cosine of the child's and each parent's task vector (against the
    base, else against the other parent); benefit = their mean, forgetting = 1 - their minimum."""
    rng = np.random.default_rng(seed)
    readers = [open_model(p) for p in (child, a, b, *([base] if base else []))]
    try:
        by = [{i.canonical: i for i in r.tensors()} for r in readers]
        acc = np.zeros((2, 3))
        for c, info in by[0].items():
            if not info.is_float or len(info.shape) != 2 or not all(c in d for d in by[1:]):
                continue
            idx = rng.choice(info.numel, min(SAMPLE, info.numel), replace=False)
            v = [_sample(r, d[c].name, idx) for r, d in zip(readers, by)]
            for j, (parent, other) in enumerate(((v[1], v[2]), (v[2], v[1]))):
                ref = v[3] if base else other
                dc, dp = v[0] - ref, parent - ref
                acc[j] += (dc @ dp, dc @ dc, dp @ dp)
        keep = [acc[j, 0] / np.sqrt(acc[j, 1] * acc[j, 2] + 1e-300) for j in range(2)]
        return {"benefit": float(np.mean(keep)), "forgetting": float(1.0 - min(keep)),
                "retention_a": float(keep[0]), "retention_b": float(keep[1])}
    finally:
        for r in readers:
            r.close()
