"""Parameter sweeps: every combination of swept spec keys (times repeats) as Ray Tune trials.

A sweep directory `RUNS_ROOT/sweep-<timestamp>/` holds `sweep.json` (the base spec, the swept
keys and the planned trials), one normal run directory per trial (`tNNN-<timestamp>/`, tagged in
its run store with the sweep id and its parameters), and the results: `trials.csv` /
`trials.parquet` (one row per trial) and `summary.csv` / `summary.parquet` (one row per parameter
combination: mean and 95% interval over repeats). Random values are drawn up front from the
sweep's seed, so a resumed sweep runs exactly the trials it planned and skips finished ones.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from experiments.spec import apply_overrides, dump_spec, parse_override, read_yaml, validate
from genome.errors import BadInput

METRICS = ("quality_last", "accuracy_last", "agent_quality_last", "specialization", "population")


@dataclass(frozen=True)
class Trial:
    index: int
    params: dict[str, Any]  # swept key -> value
    seed: int
    repeat: int

    @property
    def name(self) -> str:
        return f"t{self.index:03d}"

    def overrides(self) -> list[str]:
        values = [f"{k}={json.dumps(v)}" for k, v in self.params.items()]
        return values + [f"run.seed={self.seed}", f"run.name={self.name}"]


# ---- parsing and planning ------------------------------------------------------------------
def parse_grid(text: str) -> tuple[str, list[Any]]:
    """'mutation.sigma=0.001,0.01' -> ('mutation.sigma', [0.001, 0.01])."""
    path, raw = parse_override(text)
    key = ".".join(path)
    items = [item.strip() for item in str(raw).split(",")] if raw is not None else []
    items = [item for item in items if item]
    if not items:
        raise BadInput(f"--grid {key} has no values (expected {key}=v1,v2,...)")
    return key, [yaml.safe_load(item) for item in items]


def parse_random(text: str) -> tuple[str, float, float, bool]:
    """'mutation.sigma=0.001:0.1:log' -> ('mutation.sigma', 0.001, 0.1, True)."""
    path, raw = parse_override(text)
    key, parts = ".".join(path), str(raw).split(":")
    try:
        low, high = float(parts[0]), float(parts[1])
    except (IndexError, ValueError):
        raise BadInput(f"--random {text}: expected key=low:high[:log]") from None
    log = len(parts) > 2 and parts[2] == "log"
    if len(parts) > 3 or (len(parts) == 3 and not log) or not low < high or (log and low <= 0):
        raise BadInput(f"--random {text}: expected key=low:high[:log] with low < high (and low > 0 for log)")
    return key, low, high, log


def plan(base: dict[str, Any], grids: list[str], randoms: list[str], samples: int, repeats: int) -> list[Trial]:
    """Every grid combination x random sample x repeat, each checked against the spec first."""
    if not grids and not randoms:
        raise BadInput("nothing to sweep: give at least one --grid key=v1,v2 or --random key=low:high")
    if repeats < 1 or samples < 1:
        raise BadInput("--repeats and --samples must be at least 1")
    grid = dict(parse_grid(g) for g in grids)
    rand = [parse_random(r) for r in randoms]
    for key, values in grid.items():  # every value must make a valid spec: fail before running
        for value in values:
            validate(apply_overrides(base, [f"{key}={json.dumps(value)}"]))
    base_seed = validate(base).run.seed
    rng = np.random.default_rng(base_seed)
    draws = [{} for _ in range(samples if rand else 1)]
    for key, low, high, log in rand:
        values = np.exp(rng.uniform(math.log(low), math.log(high), len(draws))) if log \
            else rng.uniform(low, high, len(draws))
        for draw, value in zip(draws, values):
            draw[key] = float(value)
            validate(apply_overrides(base, [f"{key}={value}"]))
    trials = []
    for combo in itertools.product(*grid.values()):
        for draw in draws:
            for repeat in range(repeats):
                params = dict(zip(grid, combo)) | draw
                trials.append(Trial(len(trials), params, base_seed + repeat, repeat))
    return trials


# ---- the sweep directory -------------------------------------------------------------------
def create(config: Path, overrides: list[str], grids: list[str], randoms: list[str], samples: int,
           repeats: int, out: Path) -> tuple[Path, list[Trial]]:
    base = apply_overrides(read_yaml(config), overrides)
    trials = plan(base, grids, randoms, samples, repeats)
    from experiments.runner import new_run_dir

    sweep_dir = new_run_dir(out, "sweep")
    record = {"id": sweep_dir.name, "base": base, "base_spec": dump_spec(validate(base)),
              "grids": grids, "randoms": randoms, "samples": samples, "repeats": repeats,
              "trials": [asdict(t) for t in trials]}
    (sweep_dir / "sweep.json").write_text(json.dumps(record, indent=1))
    return sweep_dir, trials


def load(sweep_dir: Path) -> tuple[dict[str, Any], list[Trial]]:
    path = Path(sweep_dir) / "sweep.json"
    if not path.is_file():
        raise BadInput(f"{sweep_dir} is not a sweep directory (no sweep.json)")
    try:
        record = json.loads(path.read_text())
        return record, [Trial(**t) for t in record["trials"]]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise BadInput(f"{path} is damaged ({err})") from None


def trial_runs(sweep_dir: Path, trial: Trial) -> list[Path]:
    return sorted(p.parent for p in Path(sweep_dir).glob(f"{trial.name}-*/run.sqlite"))


def finished(sweep_dir: Path, trial: Trial) -> Path | None:
    """The trial's finished run directory, if it has one."""
    from experiments import reader

    for run_dir in reversed(trial_runs(sweep_dir, trial)):
        if reader.run_info(run_dir).status == "finished":
            return run_dir
    return None


# ---- running -------------------------------------------------------------------------------
def run_trial(base: dict[str, Any], trial: dict[str, Any], sweep_dir: str, sweep_id: str) -> dict[str, Any]:
    """One trial as a normal run in the sweep directory; returns its summary."""
    import torch

    from experiments.runner import run_spec

    t = Trial(**trial)
    spec = validate(apply_overrides(base, t.overrides()))
    if spec.run.threads == 0:
        torch.set_num_threads(1)  # trials run side by side: one thread each
    return run_spec(spec, Path(sweep_dir), progress=False, sweep_id=sweep_id, params=t.params)


def _tune_trainable(config: dict[str, Any]) -> None:
    from ray import tune

    summary = run_trial(config["base"], config["trial"], config["sweep_dir"], config["sweep_id"])
    tune.report({k: v for k, v in summary.items() if isinstance(v, (int, float))})


def run_with_tune(sweep_dir: Path, record: dict[str, Any], trials: list[Trial],
                  max_concurrent: int | None, address: str | None) -> dict[int, str]:
    """Run `trials` as Ray Tune trials; returns {trial index: error} for the ones that failed."""
    import os

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the classic reporter stays quiet at verbose=0
    import ray
    from ray import tune

    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    space = {
        "trial": tune.grid_search([asdict(t) for t in trials]),
        "base": record["base"], "sweep_dir": str(Path(sweep_dir).resolve()), "sweep_id": record["id"],
    }
    tuner = tune.Tuner(
        tune.with_resources(_tune_trainable, {"cpu": 1}),
        param_space=space,
        tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent),
        # a fresh experiment folder per invocation: a killed sweep's Tune state is never reused
        run_config=tune.RunConfig(name=f"tune-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}",
                                  storage_path=str((Path(sweep_dir) / "ray").resolve()),
                                  # one retry: a trial whose worker died (not its code) runs again
                                  failure_config=tune.FailureConfig(max_failures=1), verbose=0),
    )
    results = tuner.fit()
    errors = {}
    for position, result in enumerate(results):
        if result.error is not None:  # a trial that never started has no config: grid order names it
            index = result.config["trial"]["index"] if result.config else trials[position].index
            errors[index] = str(result.error).strip().splitlines()[-1][:500]
    return errors


def run_local(sweep_dir: Path, record: dict[str, Any], trials: list[Trial]) -> dict[int, str]:
    """Run `trials` one after another in this process (no Ray)."""
    errors = {}
    for t in trials:
        try:
            run_trial(record["base"], asdict(t), str(sweep_dir), record["id"])
        except Exception as err:  # a failing trial is recorded; the others go on
            errors[t.index] = f"{type(err).__name__}: {err}"
    return errors
