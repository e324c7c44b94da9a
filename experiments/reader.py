"""The run store reader: the only way other packages (the dashboard) read runs.

Opens databases read-only, never imports torch or ray, and turns every problem with a file
(missing, corrupted, foreign, from a newer version) into a `RunInfo` with status `unreadable`
or a `StoreError` with a clear message, never a traceback.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

DB_NAME = "run.sqlite"
STALE_SECONDS = 120.0  # a "running" run silent for longer is shown as interrupted


class StoreError(Exception):
    """A run store that cannot be read; the message says why."""


@dataclass
class RunInfo:
    path: Path
    name: str
    status: str  # running, finished, failed, interrupted, unreadable
    seed: int | None = None
    started: float | None = None
    ended: float | None = None
    steps_done: int = 0
    steps_total: int = 0
    backend: str = ""
    sweep_id: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    spec: str = ""
    error: str | None = None


def connect(run_dir: Path) -> sqlite3.Connection:
    """A read-only connection to a run's database, or `StoreError`."""
    path = Path(run_dir) / DB_NAME
    if not path.is_file():
        raise StoreError(f"no run database at {path}")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.DatabaseError as err:
        raise StoreError(f"{path} is not a Cogitans run database ({err})") from None
    if version is None:
        raise StoreError(f"{path} has no schema version")
    from experiments.store import SCHEMA_VERSION

    if int(version[0]) > SCHEMA_VERSION:
        raise StoreError(f"{path} was written by a newer Cogitans (schema {version[0]} > {SCHEMA_VERSION})")
    return db


def _query(run_dir: Path, sql: str, params: tuple = ()) -> pd.DataFrame:
    db = connect(run_dir)
    try:
        return pd.read_sql_query(sql, db, params=params)
    except (sqlite3.DatabaseError, pd.errors.DatabaseError) as err:
        raise StoreError(f"cannot read {run_dir}: {err}") from None
    finally:
        db.close()


def run_info(run_dir: Path) -> RunInfo:
    """The run's row, with `running` turned into `interrupted` when its heartbeat went stale."""
    run_dir = Path(run_dir)
    try:
        df = _query(run_dir, "SELECT * FROM run WHERE id = 1")
    except StoreError as err:
        return RunInfo(path=run_dir, name=run_dir.name, status="unreadable", error=str(err))
    if df.empty:
        return RunInfo(path=run_dir, name=run_dir.name, status="unreadable", error="run row missing")
    row = df.iloc[0].to_dict()
    try:
        status = row["status"]
        if status == "running" and time.time() - (row["heartbeat"] or 0) > STALE_SECONDS:
            status = "interrupted"
        return RunInfo(
            path=run_dir, name=row["name"], status=status, seed=int(row["seed"]), started=row["started"],
            ended=row["ended"], steps_done=int(row["steps_done"] or 0), steps_total=int(row["steps_total"] or 0),
            backend=row["backend"] or "", sweep_id=row["sweep_id"],
            params=json.loads(row["params"] or "{}"), spec=row["spec"] or "", error=row["error"],
        )
    except (KeyError, TypeError, ValueError) as err:  # a run table of another shape
        return RunInfo(path=run_dir, name=run_dir.name, status="unreadable",
                       error=f"unexpected run table ({type(err).__name__}: {err})")


def list_runs(root: Path) -> list[RunInfo]:
    """Every run directory under `root` (one level, or two for sweeps), newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    dirs = {p.parent for p in root.glob(DB_NAME)} | {p.parent for p in root.glob(f"*/{DB_NAME}")}
    dirs |= {p.parent for p in root.glob(f"*/*/{DB_NAME}")}
    runs = [run_info(d) for d in dirs]
    return sorted(runs, key=lambda r: (r.started or 0.0, str(r.path)), reverse=True)


def metrics(run_dir: Path, columns: list[str] | None = None, since_step: int = 0) -> pd.DataFrame:
    """Per-step metrics (one row per step, `step` first), optionally only some columns."""
    if columns:
        available = set(metric_names(run_dir))
        cols = ", ".join(["step"] + [c for c in columns if c in available])
    else:
        cols = "*"
    return _query(run_dir, f"SELECT {cols} FROM metrics WHERE step > ? ORDER BY step", (since_step,))


def metric_names(run_dir: Path) -> list[str]:
    db = connect(run_dir)
    try:
        return [r[1] for r in db.execute("PRAGMA table_info(metrics)") if r[1] != "step"]
    finally:
        db.close()


def snapshot_steps(run_dir: Path) -> list[int]:
    return _query(run_dir, "SELECT DISTINCT step FROM snapshots ORDER BY step")["step"].tolist()


def snapshot(run_dir: Path, step: int | None = None) -> pd.DataFrame:
    """Living agents at a snapshot step (the latest when None); niche columns decoded to lists."""
    if step is None:
        steps = snapshot_steps(run_dir)
        if not steps:
            return pd.DataFrame()
        step = steps[-1]
    df = _query(run_dir, "SELECT * FROM snapshots WHERE step = ?", (step,))
    for col in ("niche_served", "niche_quality"):
        df[col] = df[col].map(json.loads)
    return df


def lineage(run_dir: Path) -> pd.DataFrame:
    """Every agent that ever lived: agent_id, parent_id, root_id, colony, birth_step, death_step."""
    return _query(run_dir, "SELECT * FROM lineage ORDER BY agent_id")


def events(run_dir: Path) -> pd.DataFrame:
    return _query(run_dir, "SELECT * FROM events ORDER BY time")


def fault_count(run_dir: Path) -> int:
    """How many fault events (a Ray backend's lost colonies and shards) a run recorded."""
    return int(_query(run_dir, "SELECT COUNT(*) AS n FROM events WHERE kind = 'fault'")["n"].iloc[0])
