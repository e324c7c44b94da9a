"""Faults and backend settings of a run, shaped for the dashboard (pandas and pyyaml only).

The Ray backend records every fault as an event of kind `fault` whose detail is JSON:
`{"kind": "colony_lost", "colony", "agents", "from_checkpoint", ...}` or
`{"kind": "shard_lost", "shard", "copies_moved", "replaced_by"?}` (swarm/ray_backend.py, swarm/dht.py).
The backend's shards and replication live in the run's stored spec (its `backend` section).
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import yaml

from dashboard import data
from experiments.reader import RunInfo

#: Columns of `fault_table`, in order.
FAULT_COLUMNS = ["step", "time", "kind", "colony or shard", "agents restored", "copies moved", "detail"]
_NAMED = ("kind", "colony", "shard", "agents", "copies_moved")  # keys with a column of their own


def _detail(text: object) -> dict[str, Any]:
    """An event's JSON detail as a dict ({} when it is empty or not a JSON object)."""
    try:
        value = json.loads(text) if isinstance(text, str) and text else {}
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def fault_table(events: pd.DataFrame) -> pd.DataFrame:
    """One row per fault event, oldest first (columns `FAULT_COLUMNS`).

    `agents restored` is filled for lost colonies, `copies moved` for lost shards; `detail` holds
    the detail's other keys (checkpoint step, replacement shard) as JSON.
    """
    if events.empty or "kind" not in events:
        return pd.DataFrame(columns=FAULT_COLUMNS)
    rows = []
    for event in events[events["kind"] == "fault"].itertuples(index=False):
        d = _detail(getattr(event, "detail", ""))
        where = f"colony {d['colony']}" if "colony" in d else f"shard {d['shard']}" if "shard" in d else ""
        rest = {k: v for k, v in d.items() if k not in _NAMED}
        rows.append({"step": event.step, "time": data.when(event.time), "kind": d.get("kind", "unknown"),
                     "colony or shard": where, "agents restored": d.get("agents"),
                     "copies moved": d.get("copies_moved"), "detail": json.dumps(rest) if rest else ""})
    out = pd.DataFrame(rows, columns=FAULT_COLUMNS)
    for col in ("step", "agents restored", "copies moved"):
        out[col] = pd.to_numeric(out[col], errors="coerce").astype("Int64")
    return out.sort_values("step", kind="stable").reset_index(drop=True)


def backend(info: RunInfo) -> dict[str, Any]:
    """The run's backend: `name` (serial or ray, from the run table), `shards` and `replication`
    (from the stored spec's `backend` section; None when the spec does not say)."""
    try:
        spec = yaml.safe_load(info.spec) if info.spec else {}
    except yaml.YAMLError:
        spec = {}
    section = spec.get("backend") if isinstance(spec, dict) else None
    section = section if isinstance(section, dict) else {}
    return {"name": info.backend or section.get("name") or "serial", "shards": section.get("shards"),
            "replication": section.get("replication")}


def backend_line(info: RunInfo) -> str:
    """'Backend: ray, 4 memory shards, replication 3' (or the serial backend in words)."""
    b = backend(info)
    if b["name"] != "ray":
        return f"Backend: {b['name']} (colonies and shared memory in one process; no shards, no faults)."
    parts = [f"Backend: {b['name']}"]
    if b["shards"] is not None:
        parts.append(f"{b['shards']} memory shards")
    if b["replication"] is not None:
        parts.append(f"replication {b['replication']} (each memory entry on that many shards)")
    return ", ".join(parts) + "."
