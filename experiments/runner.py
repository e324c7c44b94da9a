"""Run an experiment: build the model, step it, write the run store and checkpoints, resume.

A run directory holds `spec.yaml` (the resolved spec), `run.sqlite` (the run store),
`checkpoints/step-NNNNNNNN.pt` (the latest two) and, at the end, `phylogeny.csv`.
"""

from __future__ import annotations

import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import torch

from experiments.spec import ExperimentSpec, dump_spec, load_spec, read_yaml, validate
from experiments.store import RunStore
from genome.errors import BadInput
from swarm.model import SwarmModel

KEEP_CHECKPOINTS = 2
OnStep = Callable[[SwarmModel, int], None]


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cogitans")
    except PackageNotFoundError:
        return "0+unknown"


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def new_run_dir(root: Path, name: str) -> Path:
    """runs/<name>-<timestamp>/, created exclusively: an existing directory is never reused."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise BadInput(f"--out {root} is a file; runs go into a folder")
    root.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        path = root / (f"{name}-{stamp}" + (f"-{i}" if i else ""))
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise BadInput(f"cannot create a new run directory under {root}")


def check_run_dir(run_dir: Path) -> Path:
    """`run_dir` as a Path if it holds a run (spec.yaml and run.sqlite); `BadInput` saying what is wrong."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise BadInput(f"run directory not found: {run_dir}")
    if not run_dir.is_dir():
        raise BadInput(f"{run_dir} is a file; give the run directory that holds it")
    if not (run_dir / "spec.yaml").is_file() or not (run_dir / "run.sqlite").is_file():
        raise BadInput(f"{run_dir} is not a run directory (spec.yaml and run.sqlite expected)")
    return run_dir


# ---- checkpoints ---------------------------------------------------------------------------
def save_checkpoint(run_dir: Path, model: SwarmModel) -> Path:
    folder = Path(run_dir) / "checkpoints"
    folder.mkdir(exist_ok=True)
    path = folder / f"step-{model.steps:08d}.pt"
    tmp = path.with_suffix(".tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(path)
    for old in sorted(folder.glob("step-*.pt"))[:-KEEP_CHECKPOINTS]:
        old.unlink()
    return path


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = sorted((Path(run_dir) / "checkpoints").glob("step-*.pt"))
    return found[-1] if found else None


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:  # torch raises many types for a damaged file
        raise BadInput(f"checkpoint {path} is corrupted or unreadable ({type(err).__name__})") from None


# ---- running -------------------------------------------------------------------------------
def start_run(config: Path, overrides: list[str] | None = None, steps: int | None = None,
              seed: int | None = None, out: Path = Path("runs"), progress: bool = True,
              sweep_id: str | None = None, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Start a new run from a spec file; returns the summary dict (see `summarize`)."""
    extra = list(overrides or [])
    if steps is not None:
        extra.append(f"run.steps={steps}")
    if seed is not None:
        extra.append(f"run.seed={seed}")
    spec = load_spec(config, extra)
    return run_spec(spec, out, progress=progress, sweep_id=sweep_id, params=params)


def run_spec(spec: ExperimentSpec, out: Path, progress: bool = True, sweep_id: str | None = None,
             params: dict[str, Any] | None = None, on_step: OnStep | None = None) -> dict[str, Any]:
    model = SwarmModel(spec, seed=spec.run.seed)  # first: a backend that cannot start leaves no run directory
    run_dir = new_run_dir(out, spec.run.name)
    spec_yaml = dump_spec(spec)
    (run_dir / "spec.yaml").write_text(spec_yaml)
    store = RunStore.create(
        run_dir / "run.sqlite", name=spec.run.name, spec_yaml=spec_yaml, seed=spec.run.seed,
        version=package_version(), git_commit=git_commit(), steps_total=spec.run.steps,
        sweep_id=sweep_id, params=params, backend=spec.backend.name,
    )
    founders = model.lineage.births.tolist()
    store.write_step(0, {}, births=[(a, p, r, c) for a, p, r, c, _ in founders])
    return drive(model, spec, run_dir, store, spec.run.steps, progress, on_step)


def resume_run(run_dir: Path, steps: int | None = None, progress: bool = True,
               address: str | None = None) -> dict[str, Any]:
    """Continue a run from its latest checkpoint up to `steps` (default: the spec's run.steps)."""
    run_dir = check_run_dir(run_dir)
    data = read_yaml(run_dir / "spec.yaml")
    if address is not None:  # the cluster may have moved since the run started
        data.setdefault("backend", {})["address"] = address
    spec = validate(data)
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        raise BadInput(f"{run_dir} has no checkpoint to resume from")
    state = load_checkpoint(checkpoint)
    model = SwarmModel(spec, seed=spec.run.seed)
    try:
        model.load_state_dict(state)
    except (KeyError, ValueError, TypeError, RuntimeError) as err:
        model.close()
        raise BadInput(f"checkpoint {checkpoint} does not match the run's spec ({err})") from None
    total = steps if steps is not None else spec.run.steps
    store = RunStore(run_dir / "run.sqlite")
    store.truncate_after(model.steps)
    store.set_status("running", steps_total=total)
    store.event(model.steps, "resumed", {"checkpoint": checkpoint.name})
    return drive(model, spec, run_dir, store, total, progress)


def drive(model: SwarmModel, spec: ExperimentSpec, run_dir: Path, store: RunStore, total: int,
          progress: bool, on_step: OnStep | None = None) -> dict[str, Any]:
    """Step `model` until `total` steps, writing every step and every fault; mark the run's final status.

    `on_step(model, step)` runs after each step is recorded (tests use it to inject faults).
    The backend's workers are released at the end, whatever happened.
    """
    from experiments.progress import StepProgress

    if spec.run.threads:
        torch.set_num_threads(spec.run.threads)
    started = time.perf_counter()
    every_ckpt, every_snap = spec.run.checkpoint_every, spec.run.snapshot_every
    try:
        with StepProgress(total, model.steps, enabled=progress) as bar:
            while model.steps < total:
                model.step()
                step = model.steps
                births = model.last_births
                store.write_step(
                    step, model.metrics,
                    births=list(zip(births.agent_id.tolist(), births.parent_id.tolist(),
                                    births.root_id.tolist(), births.colony.tolist())),
                    deaths=model.last_deaths.tolist(),
                    mates=[] if births.mate_id is None else
                    [(a, m) for a, m in zip(births.agent_id.tolist(), births.mate_id.tolist()) if m >= 0],
                )
                for fault in model.backend.drain_faults():
                    store.event(step, "fault", fault)
                if on_step is not None:
                    on_step(model, step)
                if every_snap and step % every_snap == 0:
                    store.write_snapshot(step, snapshot_rows(model))
                if every_ckpt and step % every_ckpt == 0:
                    save_checkpoint(run_dir, model)
                bar.update(step, model.metrics)
        save_checkpoint(run_dir, model)
        model.lineage.export_alife(run_dir / "phylogeny.csv")
    except KeyboardInterrupt:
        model.close()
        store.set_status("interrupted")
        store.event(model.steps, "interrupted")
        store.close()
        raise
    except Exception as err:
        model.close()
        store.set_status("failed", error=f"{type(err).__name__}: {err}")
        store.close()
        raise
    model.close()
    store.set_status("finished")
    store.close()
    return summarize(run_dir, model, time.perf_counter() - started)


def snapshot_rows(model: SwarmModel) -> list[tuple]:
    t = model.agent_table()
    served = t["niche_served"]
    quality = (t["niche_reward"] / served.clamp_min(1)).where(served > 0, torch.nan)
    return list(zip(
        t["agent_id"].tolist(), t["parent_id"].tolist(), t["root_id"].tolist(), t["colony"].tolist(),
        t["fitness"].tolist(), t["counter"].tolist(), t["birth_step"].tolist(),
        served.tolist(), [[None if q != q else round(q, 4) for q in row] for row in quality.tolist()],
    ))


def summarize(run_dir: Path, model: SwarmModel, seconds: float) -> dict[str, Any]:
    """The `--json` summary, computed from the run store so that resumed runs count whole."""
    from experiments import reader

    df = reader.metrics(run_dir)
    tenth = max(1, len(df) // 10)
    last = df.iloc[-1] if len(df) else None
    return {
        "run_dir": str(run_dir),
        "steps": int(model.steps),
        "population": int(last["population"]) if last is not None else 0,
        "births": int(model.totals["births"]),
        "deaths": int(model.totals["deaths"]),
        "queries": int(model.totals["queries"]),
        "quality_first": float(df["quality"].iloc[:tenth].mean()) if len(df) else 0.0,
        "quality_last": float(df["quality"].iloc[-tenth:].mean()) if len(df) else 0.0,
        "accuracy_first": float(df["accuracy"].iloc[:tenth].mean()) if len(df) else 0.0,
        "accuracy_last": float(df["accuracy"].iloc[-tenth:].mean()) if len(df) else 0.0,
        "agent_quality_first": float(df["agent_quality"].iloc[:tenth].mean()) if len(df) else 0.0,
        "agent_quality_last": float(df["agent_quality"].iloc[-tenth:].mean()) if len(df) else 0.0,
        "specialization": float(last["specialization"]) if last is not None else 0.0,
        "lineages": int(last["lineages"]) if last is not None else 0,
        "faults": reader.fault_count(run_dir),
        "seconds": round(seconds, 3),
    }
