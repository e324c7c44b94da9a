"""Sweeps: planning and validation (fast), mesa.batch_run, and Ray Tune with kill and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from experiments import reader
from experiments.batch import batch_sweep
from experiments.spec import read_yaml
from experiments.sweep import plan
from genome.errors import BadInput

SMOKE = Path(__file__).resolve().parents[2] / "experiments" / "configs" / "smoke.yaml"
GRID = ["--grid", "mutation.sigma=0.001,0.01,0.1", "--grid", "replication.threshold=10,20", "--repeats", "2"]


def test_plan_is_every_combination_times_repeats_with_distinct_seeds():
    trials = plan({"run": {"seed": 5}}, ["mutation.sigma=0.001,0.01,0.1", "replication.threshold=10,20"], [], 1, 2)
    assert len(trials) == 12
    combos = {(t.params["mutation.sigma"], t.params["replication.threshold"]) for t in trials}
    assert combos == {(s, r) for s in (0.001, 0.01, 0.1) for r in (10, 20)}
    assert {t.seed for t in trials} == {5, 6}


def test_random_search_draws_inside_the_bounds_reproducibly():
    a = plan({}, [], ["mutation.sigma=0.001:0.1:log"], 5, 1)
    b = plan({}, [], ["mutation.sigma=0.001:0.1:log"], 5, 1)
    values = [t.params["mutation.sigma"] for t in a]
    assert values == [t.params["mutation.sigma"] for t in b]
    assert all(0.001 <= v <= 0.1 for v in values) and len(set(values)) == 5


@pytest.mark.parametrize("args, message", [
    (["--grid", "mutation.sigmaa=0.1,0.2"], "unknown key 'mutation.sigmaa'"),
    (["--grid", "mutation.sigma=low,high"], "mutation.sigma = 'low'"),
    (["--grid", "mutation.sigma="], "has no values"),
    ([], "nothing to sweep"),
    (["--random", "mutation.sigma=0.1:0.01"], "low < high"),
])
def test_bad_sweeps_are_refused_before_anything_runs(tmp_path, args, message):
    out = subprocess.run([sys.executable, "-m", "experiments.cli", "sweep", str(SMOKE), *args,
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and message in out.stderr, out.stderr
    assert not list(tmp_path.iterdir())


def test_local_sweep_through_mesa_batch_run():
    df = batch_sweep(read_yaml(SMOKE), {"mutation.sigma": [0.0, 0.05]}, repeats=2, steps=8)
    assert len(df) == 4 and sorted(df["mutation.sigma"].tolist()) == [0.0, 0.0, 0.05, 0.05]
    assert set(df["seed"]) == {0, 1} and (df["steps"] == 8).all()
    assert df["quality_last"].between(-1, 1).all()


def _wait_until_no_run_is_written(sweep_dir: Path, quiet: float = 5.0, limit: float = 120.0) -> None:
    """Ray's worker processes are not in the killed process group: they die when their raylet
    notices the driver is gone, and one may still finish a trial meanwhile. Wait until no run
    store file (database or WAL; written every step) has changed for `quiet` seconds."""
    deadline = time.time() + limit
    while time.time() < deadline:
        stamps = [p.stat().st_mtime for p in sweep_dir.glob("t*/run.sqlite*")]
        if not stamps or time.time() - max(stamps) > quiet:
            return
        time.sleep(0.5)


@pytest.mark.ray
def test_tune_sweep_killed_and_resumed_runs_only_the_missing_trials(tmp_path):
    cmd = [sys.executable, "-m", "experiments.cli", "sweep", str(SMOKE), *GRID, "--set", "run.steps=12",
           "--max-concurrent", "2", "--out", str(tmp_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    done = 0
    while time.time() < deadline and proc.poll() is None:
        runs = [reader.run_info(p.parent) for p in tmp_path.glob("sweep-*/t*/run.sqlite")]
        done = sum(r.status == "finished" for r in runs)
        if done >= 3:
            break
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    sweep_dir = next(tmp_path.glob("sweep-*"))
    _wait_until_no_run_is_written(sweep_dir)
    finished_before = sum(reader.run_info(p.parent).status == "finished" for p in sweep_dir.glob("t*/run.sqlite"))
    assert 3 <= finished_before < 12

    out = subprocess.run([sys.executable, "-m", "experiments.cli", "sweep", "--resume", str(sweep_dir),
                          "--max-concurrent", "2", "--json"], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["trials"] == 12 and result["failed"] == 0
    assert result["ran"] == 12 - finished_before
    table = pd.read_csv(sweep_dir / "trials.csv")
    assert len(table) == 12 and (table["status"] == "finished").all()
    assert sorted(zip(table["mutation.sigma"], table["replication.threshold"], table["seed"])) == sorted(
        (s, r, seed) for s in (0.001, 0.01, 0.1) for r in (10, 20) for seed in (0, 1))
    summary = pd.read_parquet(sweep_dir / "summary.parquet")
    assert len(summary) == 6 and (summary["repeats"] == 2).all()
    assert set(result["best"]) >= {"mutation.sigma", "replication.threshold", "quality_last_mean"}
    info = reader.run_info(Path(table["run_dir"][0]))
    assert info.sweep_id == sweep_dir.name and set(info.params) == {"mutation.sigma", "replication.threshold"}
