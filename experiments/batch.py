"""Small local sweeps without Ray: `mesa.batch_run` on `SwarmModel`.

mesa passes each parameter combination as keyword arguments to the model class; dotted spec keys
are written with '__' (`mutation__sigma`). No run store is written: results come back as a table.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import mesa
import pandas as pd

from experiments.spec import apply_overrides, validate
from swarm.model import SwarmModel


class BatchSwarm(SwarmModel):
    """A `SwarmModel` built from a base spec dict plus keyword overrides, for `mesa.batch_run`."""

    def __init__(self, base: dict[str, Any] | None = None, seed: int = 0, **params: Any):
        overrides = [f"{key.replace('__', '.')}={json.dumps(value)}" for key, value in params.items()]
        super().__init__(validate(apply_overrides(base or {}, overrides)), seed=seed)


def batch_sweep(base: dict[str, Any], grid: dict[str, list[Any]], repeats: int, steps: int) -> pd.DataFrame:
    """One row per (combination, repeat) with final metrics, like the Ray Tune sweep's trial table."""
    seed = validate(base).run.seed
    parameters = {key.replace(".", "__"): values for key, values in grid.items()}
    parameters["seed"] = [seed + r for r in range(repeats)]
    rows = mesa.batch_run(partial(BatchSwarm, base), parameters, number_processes=1,
                          data_collection_period=1, max_steps=steps - 1, display_progress=False)
    df = pd.DataFrame(rows)
    out = []
    for run_id, run in df.groupby("RunId"):
        run = run.sort_values("Step")
        tenth = max(1, len(run) // 10)
        first = run.iloc[0]
        out.append({
            "trial": int(run_id),
            **{key: first[key.replace(".", "__")] for key in grid},
            "seed": int(first["seed"]), "repeat": int(first["seed"]) - seed, "status": "finished",
            "quality_first": run["quality"].iloc[:tenth].mean(),
            "quality_last": run["quality"].iloc[-tenth:].mean(),
            "accuracy_last": run["accuracy"].iloc[-tenth:].mean(),
            "agent_quality_last": run["agent_quality"].iloc[-tenth:].mean(),
            "specialization": run["specialization"].iloc[-1],
            "population": run["population"].iloc[-1],
            "steps": len(run),
        })
    return pd.DataFrame(out)
