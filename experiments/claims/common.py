"""What every claim experiment returns, and a helper to run the swarm in process."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

SMALL = {  # a spec that runs ~300 steps in about ten seconds
    "colony": {"count": 2, "capacity": 64, "initial_agents": 32},
    "brain": {"hidden": 32},
    "memory": {"capacity": 4000},
    "replication": {"threshold": 10},
    "environment": {"batch": 32},
}


@dataclass
class ClaimResult:
    title: str
    claim: str  # what the source says, in its words or close to them
    verdict: str  # one honest sentence: did it hold here, and why
    held: bool
    table: pd.DataFrame
    figures: dict[str, Any] = field(default_factory=dict)  # file stem -> plotly figure
    notes: str = ""


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Two-level merge of spec dicts (sections of overrides replace keys inside base's sections)."""
    out = {k: dict(v) for k, v in base.items()}
    for section, values in overrides.items():
        out.setdefault(section, {}).update(values)
    return out


def trajectory(data: dict[str, Any], seed: int, steps: int, rules: tuple[str, ...] = ()) -> pd.DataFrame:
    """Per-step metrics of one in-process run (no run store).

    `rules` adds a column `quality_RULE` per consensus rule: the step's candidates (agent answers
    and memory hits) combined with that rule instead of the spec's. The rule never feeds back into
    the run (rewards grade the agents' own answers), so one run measures every rule, paired.
    """
    import torch

    from experiments.spec import validate
    from swarm import consensus
    from swarm.model import SwarmModel

    torch.set_num_threads(1)
    model = SwarmModel(validate(data), seed=seed)
    rows = []
    for _ in range(steps):
        model.step()
        row = {"step": model.steps, **model.metrics}
        r, target = model.last_response, model.last_batch.target
        for rule in rules:
            answer = consensus.REGISTRY[rule](r.candidates, r.weight, r.valid, model.spec.consensus)  # (B, D)
            row[f"quality_{rule}"] = float(model.environment.feedback(answer, target).mean())
        rows.append(row)
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame) -> str:
    """A DataFrame as a markdown table, floats to 3 significant digits."""
    cols = list(table.columns)
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) and not math.isnan(v) else str(v)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def tail_mean(df: pd.DataFrame, column: str, share: float = 0.1) -> float:
    n = max(1, int(len(df) * share))
    return float(df[column].iloc[-n:].mean())
