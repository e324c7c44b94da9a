"""The run store writer: one SQLite database per run, in WAL mode so readers follow live.

Tables: `run` (one row: spec, seed, version, git commit, status, times), `metrics` (one row per
step, one column per metric, columns added as new metrics appear), `snapshots` (living agents
every few steps), `lineage` (every agent that ever lived), `events` (resume, faults, errors),
`meta` (schema version). Only this module writes; `experiments.reader` is the only reader.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS run (
    id INTEGER PRIMARY KEY CHECK (id = 1), name TEXT, spec TEXT, seed INTEGER, version TEXT,
    git_commit TEXT, backend TEXT, status TEXT, started REAL, ended REAL, heartbeat REAL,
    steps_total INTEGER, steps_done INTEGER, pid INTEGER, sweep_id TEXT, params TEXT, error TEXT);
CREATE TABLE IF NOT EXISTS metrics (step INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS snapshots (
    step INTEGER, agent_id INTEGER, parent_id INTEGER, root_id INTEGER, colony INTEGER,
    fitness REAL, counter INTEGER, birth_step INTEGER, niche_served TEXT, niche_quality TEXT);
CREATE INDEX IF NOT EXISTS snapshots_step ON snapshots (step);
CREATE TABLE IF NOT EXISTS lineage (
    agent_id INTEGER PRIMARY KEY, parent_id INTEGER, root_id INTEGER, colony INTEGER,
    birth_step INTEGER, death_step INTEGER, mate_id INTEGER);
CREATE TABLE IF NOT EXISTS events (step INTEGER, time REAL, kind TEXT, detail TEXT);
"""

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class RunStore:
    """Writes one run's database. Every method commits, so a reader never sees half a step."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.db = sqlite3.connect(self.path, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        self.db.commit()
        self._columns = {row[1] for row in self.db.execute("PRAGMA table_info(metrics)")}
        if "mate_id" not in {row[1] for row in self.db.execute("PRAGMA table_info(lineage)")}:
            self.db.execute("ALTER TABLE lineage ADD COLUMN mate_id INTEGER")  # stores from before crossover mates
            self.db.commit()

    @classmethod
    def create(cls, path: Path, *, name: str, spec_yaml: str, seed: int, version: str, git_commit: str,
               steps_total: int, backend: str = "serial", sweep_id: str | None = None,
               params: Mapping[str, Any] | None = None) -> RunStore:
        store = cls(path)
        store.db.execute(
            "INSERT INTO run (id, name, spec, seed, version, git_commit, backend, status, started,"
            " heartbeat, steps_total, steps_done, pid, sweep_id, params)"
            " VALUES (1, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, 0, ?, ?, ?)",
            (name, spec_yaml, seed, version, git_commit, backend, time.time(), time.time(),
             steps_total, os.getpid(), sweep_id, json.dumps(dict(params or {}))),
        )
        store.db.commit()
        return store

    def set_status(self, status: str, error: str | None = None, steps_total: int | None = None) -> None:
        ended = time.time() if status in ("finished", "failed", "interrupted") else None
        self.db.execute(
            "UPDATE run SET status = ?, error = ?, ended = ?, heartbeat = ?, pid = ?,"
            " steps_total = COALESCE(?, steps_total) WHERE id = 1",
            (status, error, ended, time.time(), os.getpid(), steps_total),
        )
        self.db.commit()

    def write_step(self, step: int, metrics: Mapping[str, float],
                   births: Sequence[tuple[int, int, int, int]] = (), deaths: Sequence[int] = (),
                   mates: Sequence[tuple[int, int]] = ()) -> None:
        """One step: its metrics row, its births (id, parent, root, colony), the second parents of
        crossover births (id, mate) and its deaths."""
        for name in metrics:
            if name not in self._columns:
                if not _NAME.match(name):
                    raise ValueError(f"metric name {name!r} is not an identifier")
                self.db.execute(f"ALTER TABLE metrics ADD COLUMN {name} REAL")
                self._columns.add(name)
        names = list(metrics)
        if names:
            self.db.execute(
                f"INSERT OR REPLACE INTO metrics (step, {', '.join(names)}) VALUES (?{', ?' * len(names)})",
                (step, *(float(metrics[n]) for n in names)),
            )
        self.db.executemany(
            "INSERT OR REPLACE INTO lineage (agent_id, parent_id, root_id, colony, birth_step) VALUES (?, ?, ?, ?, ?)",
            [(a, p, r, c, step) for a, p, r, c in births],
        )
        self.db.executemany("UPDATE lineage SET mate_id = ? WHERE agent_id = ?", [(m, a) for a, m in mates])
        self.db.executemany("UPDATE lineage SET death_step = ? WHERE agent_id = ?", [(step, a) for a in deaths])
        self.db.execute("UPDATE run SET steps_done = ?, heartbeat = ? WHERE id = 1", (step, time.time()))
        self.db.commit()

    def write_snapshot(self, step: int, rows: Sequence[tuple]) -> None:
        """Rows of (agent_id, parent_id, root_id, colony, fitness, counter, birth_step,
        niche_served list, niche_quality list)."""
        self.db.executemany(
            "INSERT INTO snapshots VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(step, *r[:7], json.dumps(r[7]), json.dumps(r[8])) for r in rows],
        )
        self.db.commit()

    def event(self, step: int, kind: str, detail: Mapping[str, Any] | str = "") -> None:
        text = detail if isinstance(detail, str) else json.dumps(dict(detail))
        self.db.execute("INSERT INTO events VALUES (?, ?, ?, ?)", (step, time.time(), kind, text))
        self.db.commit()

    def truncate_after(self, step: int) -> None:
        """Forget everything recorded after `step` (used when resuming from a checkpoint)."""
        self.db.execute("DELETE FROM metrics WHERE step > ?", (step,))
        self.db.execute("DELETE FROM snapshots WHERE step > ?", (step,))
        self.db.execute("DELETE FROM lineage WHERE birth_step > ?", (step,))
        self.db.execute("UPDATE lineage SET death_step = NULL WHERE death_step > ?", (step,))
        self.db.execute("UPDATE run SET steps_done = ? WHERE id = 1", (step,))
        self.db.commit()

    def close(self) -> None:
        self.db.close()
