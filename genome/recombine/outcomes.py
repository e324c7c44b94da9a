"""The breeding log: every executed plan's context, strategy and measured outcome, in SQLite.

The orchestrator reads it back to prefer strategies that worked in the same context (goal and
lineage): a strategy's score is its prior from the strategy table shrunk towards the mean logged
outcome (benefit - forgetting) of its past runs, (K prior + sum outcomes) / (K + n), K = 2.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

PRIOR_WEIGHT = 2.0
_SCHEMA = """CREATE TABLE IF NOT EXISTS outcomes (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL, goal TEXT, lineage TEXT, overlap REAL,
    modularity REAL, strategy TEXT, params TEXT, benefit REAL, forgetting REAL, seconds REAL,
    out TEXT)"""


def default_log() -> Path:
    """~/.cogitans/breeding.sqlite (created on first write)."""
    return Path.home() / ".cogitans" / "breeding.sqlite"


def record(log: Path, context: dict[str, Any], strategy: str, params: dict[str, Any], benefit: float,
           forgetting: float, seconds: float, out: str) -> None:
    """Append one outcome."""
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(log) as db:
        db.execute(_SCHEMA)
        db.execute("INSERT INTO outcomes (ts, goal, lineage, overlap, modularity, strategy, params, benefit, "
                   "forgetting, seconds, out) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (time.time(), context["goal"], context["lineage"], context.get("overlap"),
                    context.get("modularity"), strategy, json.dumps(params, sort_keys=True), float(benefit),
                    float(forgetting), float(seconds), out))


def history(log: Path | None, goal: str, lineage: str) -> dict[str, tuple[int, float]]:
    """strategy -> (runs, summed benefit - forgetting) in this context; empty without a log."""
    if log is None or not Path(log).is_file():
        return {}
    with sqlite3.connect(log) as db:
        db.execute(_SCHEMA)
        rows = db.execute("SELECT strategy, COUNT(*), SUM(benefit - forgetting) FROM outcomes "
                          "WHERE goal = ? AND lineage = ? GROUP BY strategy", (goal, lineage)).fetchall()
    return {s: (int(n), float(total)) for s, n, total in rows}


def adjusted(prior: float, runs: int, total: float) -> float:
    """The prior shrunk towards the logged mean outcome."""
    return (PRIOR_WEIGHT * prior + total) / (PRIOR_WEIGHT + runs)


def rows(log: Path) -> list[dict[str, Any]]:
    """Every logged outcome, oldest first."""
    if not Path(log).is_file():
        return []
    with sqlite3.connect(log) as db:
        db.row_factory = sqlite3.Row
        db.execute(_SCHEMA)
        return [dict(r) for r in db.execute("SELECT * FROM outcomes ORDER BY id")]
