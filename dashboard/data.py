"""Data shaping for the dashboard pages, on top of `experiments.reader` (pandas and numpy only).

Everything here is pure or reads through the reader, so it is tested without Streamlit. Time
series are thinned with `downsample` before they become figures: a browser gains nothing from
more points than it has pixels, and a 20k-step run stays quick to draw.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from experiments import reader
from experiments.reader import RunInfo, StoreError

#: Metric columns the Population page draws.
POPULATION_COLUMNS = [
    "population", "births", "deaths", "fitness_mean", "fitness_max", "fitness_p10", "fitness_p50",
    "fitness_p90", "quality", "agent_quality", "accuracy", "thumbs_up", "seconds",
]
MEMORY_COLUMNS = ["memory_entries", "memory_hit_rate", "memory_evictions", "routed_share"]
SPECIALISATION_COLUMNS = ["specialization", "lineages", "routed_share"]
#: Headline numbers shown for every run on the Runs page.
HEADLINE_COLUMNS = ["population", "quality", "accuracy", "specialization", "lineages"]
POOL_LEVEL_COLUMNS = ["pool_genes", "pool_unique_l1", "pool_unique_l2", "pool_unique_l3", "pool_unique_l4"]
POOL_GROUPS = ("tier", "role", "status")
#: Experience-sharing columns, present only when `sharing.enabled` is on (`swarm.sharing.METRICS`, which
#: imports torch; a test keeps the two equal). The counters are totals since the run began.
SHARING_COLUMNS = ["shared_batches", "shared_entries", "shared_rejected", "shared_bytes", "shared_ratio",
                   "entries_voted_out", "entries_unvetted_out", "registry_size", "malicious_vote_weight"]
MAX_POINTS = 600  # about one point per pixel of a half-width chart; also evens out per-step noise


# ---- runs -----------------------------------------------------------------------------------
def list_runs(root: Path) -> list[RunInfo]:
    """`reader.list_runs`, but one database with an unexpected layout (a `run` table without
    the expected columns) shows up as unreadable instead of hiding every other run."""
    try:
        return reader.list_runs(root)
    except (KeyError, TypeError, ValueError, IndexError):
        pass
    runs = [run_info(d) for d in run_dirs(root)]
    return sorted(runs, key=lambda r: (r.started or 0.0, str(r.path)), reverse=True)


def run_dirs(root: Path) -> list[Path]:
    """Run directories under `root` without opening them (the reader's layout: the root itself,
    or runs one or two levels down, as sweeps have)."""
    root = Path(root)
    if not root.is_dir():
        return []
    patterns = (reader.DB_NAME, f"*/{reader.DB_NAME}", f"*/*/{reader.DB_NAME}")
    return sorted({p.parent for pattern in patterns for p in root.glob(pattern)})


def run_info(run_dir: Path) -> RunInfo:
    """`reader.run_info`, with a malformed run table reported as an unreadable run."""
    try:
        return reader.run_info(run_dir)
    except (KeyError, TypeError, ValueError, IndexError) as err:
        return RunInfo(path=Path(run_dir), name=Path(run_dir).name, status="unreadable",
                       error=f"unexpected run table ({type(err).__name__}: {err})")


def runs_frame(runs: list[RunInfo]) -> pd.DataFrame:
    """One row per run: identity, status, progress and its latest headline metrics."""
    rows = []
    for info in runs:
        row = {
            "run": info.path.name, "name": info.name, "status": info.status,
            "steps": info.steps_done, "of": info.steps_total, "seed": info.seed,
            "started": when(info.started), "backend": info.backend, "sweep": info.sweep_id or "",
            "params": json.dumps(info.params, sort_keys=True) if info.params else "",
        }
        if info.status != "unreadable":
            row["faults"] = fault_count(info.path)
        if info.status != "unreadable" and info.steps_done > 0:
            row.update(last_values(info.path, HEADLINE_COLUMNS, info.steps_done))
        row["problem"] = info.error or ""
        rows.append(row)
    columns = ["run", "name", "status", "steps", "of", "seed", "started", "backend", "faults", "sweep", "params",
               *HEADLINE_COLUMNS, "problem"]
    return pd.DataFrame(rows, columns=columns)


def last_values(run_dir: Path, columns: list[str], steps_done: int) -> dict[str, float]:
    """The latest recorded value of each column (missing columns and unreadable runs are left out)."""
    try:
        df = reader.metrics(run_dir, columns, since_step=max(0, steps_done - 1))
    except StoreError:
        return {}
    if df.empty:
        return {}
    last = df.iloc[-1]
    return {c: float(last[c]) for c in columns if c in df.columns}


def fault_count(run_dir: Path) -> int:
    """How many fault events (a Ray backend's lost colonies and shards) a run recorded; 0 when unreadable."""
    try:
        return reader.fault_count(run_dir)
    except StoreError:
        return 0


def when(seconds: float | None) -> str:
    if not seconds or (isinstance(seconds, float) and math.isnan(seconds)):
        return ""
    return dt.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")


def run_label(info: RunInfo) -> str:
    """How a run is named in pickers: folder, status and progress."""
    if info.status == "unreadable":
        return f"{info.path.name} (unreadable)"
    return f"{info.path.name} ({info.status}, step {info.steps_done:,}/{info.steps_total:,})"


# ---- metrics --------------------------------------------------------------------------------
@dataclass
class MetricsFollower:
    """Keeps a run's metrics in memory and reads only the new steps on each refresh.

    A resumed run that was cut back (`steps_done` below what is held) or new metric columns
    (a gene pool that starts reporting) trigger a full reload.
    """

    run_dir: Path
    columns: list[str] | None = None
    frame: pd.DataFrame = field(default_factory=pd.DataFrame)
    _names: tuple[str, ...] = ()

    def update(self, steps_done: int | None = None) -> pd.DataFrame:
        names = tuple(reader.metric_names(self.run_dir))
        last = int(self.frame["step"].iloc[-1]) if len(self.frame) else 0
        if names != self._names or (steps_done is not None and steps_done < last):
            self.frame, last, self._names = pd.DataFrame(), 0, names
        new = reader.metrics(self.run_dir, self.columns, since_step=last)
        if len(new):
            self.frame = new if self.frame.empty else pd.concat([self.frame, new], ignore_index=True)
        elif self.frame.empty:
            self.frame = new
        return self.frame


def downsample(df: pd.DataFrame, max_points: int = MAX_POINTS) -> tuple[pd.DataFrame, int]:
    """At most `max_points` rows: consecutive steps averaged in buckets; `step` is each bucket's last.

    Returns the frame and the bucket width in steps (1 when nothing was averaged).
    """
    if len(df) <= max_points:
        return df, 1
    width = math.ceil(len(df) / max_points)
    group = np.arange(len(df)) // width
    out = df.groupby(group).mean(numeric_only=True)
    out["step"] = df["step"].to_numpy()[np.minimum((np.arange(len(out)) + 1) * width, len(df)) - 1]
    return out.reset_index(drop=True), width


def with_rates(df: pd.DataFrame) -> pd.DataFrame:
    """Adds `steps_per_second` (from `seconds`, the wall time of each step)."""
    out = df.copy()
    if "seconds" in out:
        seconds = out["seconds"].to_numpy(dtype=float)
        out["steps_per_second"] = np.divide(1.0, seconds, out=np.full_like(seconds, np.nan), where=seconds > 0)
    return out


def column_groups(names: list[str]) -> dict[str, list[str]]:
    """Gene-pool and shard columns present in a run, grouped for the pages.

    Keys: `levels` (genes left after each dedup level), `bytes`, `ratio`, `tier`, `role`,
    `status` (one column per category), `shard_entries`, `shard_replicas`.
    """
    have = set(names)
    groups: dict[str, list[str]] = {
        "levels": [c for c in POOL_LEVEL_COLUMNS if c in have],
        "bytes": [c for c in ("pool_bytes", "pool_bytes_naive") if c in have],
        "ratio": [c for c in ("pool_dedup_ratio",) if c in have],
    }
    for group in POOL_GROUPS:
        groups[group] = sorted(c for c in names if c.startswith(f"pool_{group}_"))
    shards = sorted({int(c.split("_")[1]) for c in names
                     if c.startswith("shard_") and c.split("_")[1].isdigit()})
    groups["shard_entries"] = [f"shard_{i}_entries" for i in shards if f"shard_{i}_entries" in have]
    groups["shard_replicas"] = [f"shard_{i}_replicas_ok" for i in shards if f"shard_{i}_replicas_ok" in have]
    return groups


def has_pool(names: list[str]) -> bool:
    return any(c.startswith("pool_") for c in names)


def has_sharing(names: list[str]) -> bool:
    return any(c in SHARING_COLUMNS for c in names)


def per_step(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Adds `<column>_per_step` for each running-total column present: the step-to-step increase
    (the first row keeps its own value; a total never shrinks, so drops read as 0)."""
    out = df.copy()
    for c in columns:
        if c in out:
            out[f"{c}_per_step"] = out[c].diff().fillna(out[c]).clip(lower=0)
    return out


# ---- niches ---------------------------------------------------------------------------------
@dataclass
class NicheMatrix:
    """Rows (agents or founder lineages) x niches at one snapshot, rows ordered by main niche.

    quality: mean reward per niche (cosine), NaN where the row never served the niche.
    share: share of the row's served queries that came from each niche (0-1).
    note: what was left out, as a sentence ("" when nothing).
    """

    quality: pd.DataFrame
    share: pd.DataFrame
    note: str = ""


def niche_matrix(snap: pd.DataFrame, by: str = "agent", max_rows: int = 150) -> NicheMatrix:
    """Per-niche quality and workload of agents ("agent": the fittest `max_rows` that served any
    query) or founder lineages ("lineage": served-weighted over their agents) at one snapshot."""
    if snap.empty:
        return NicheMatrix(pd.DataFrame(), pd.DataFrame())
    served = np.array(snap["niche_served"].tolist(), dtype=float)  # (N, K)
    quality = np.array([[np.nan if q is None else q for q in row] for row in snap["niche_quality"]], dtype=float)
    niches = [f"niche {k}" for k in range(served.shape[1])]
    notes = []
    if by == "lineage":
        keys, inv = np.unique(snap["root_id"].to_numpy(), return_inverse=True)
        total = np.zeros((len(keys), served.shape[1]))  # (L, K)
        reward = np.zeros_like(total)
        np.add.at(total, inv, served)
        np.add.at(reward, inv, np.nan_to_num(quality) * served)
        quality = np.divide(reward, total, out=np.full_like(total, np.nan), where=total > 0)
        served = total
        labels = np.array([f"lineage {k} ({n} agents)" for k, n in zip(keys, np.bincount(inv))])
    else:
        labels = np.array([f"agent {a} (lineage {r})" for a, r in snap[["agent_id", "root_id"]].to_numpy()])
        idle = served.sum(1) == 0
        if idle.any():
            notes.append(f"{int(idle.sum())} young agents that have not answered a query yet are left out.")
        order = np.argsort(-snap["fitness"].to_numpy(), kind="stable")
        order = order[~idle[order]]
        if len(order) > max_rows:
            notes.append(f"Showing the {max_rows} fittest of {len(order)} agents that answered queries.")
            order = order[:max_rows]
        served, quality, labels = served[order], quality[order], labels[order]
    share = served / np.maximum(served.sum(1, keepdims=True), 1.0)
    main = share.argmax(1)
    strength = share[np.arange(len(main)), main]
    order = np.lexsort((-strength, main))
    return NicheMatrix(pd.DataFrame(quality[order], index=labels[order], columns=niches),
                       pd.DataFrame(share[order], index=labels[order], columns=niches), " ".join(notes))


# ---- sweeps ---------------------------------------------------------------------------------
def final_values(info: RunInfo, columns: list[str], tail: float = 0.1) -> dict[str, float]:
    """Mean of each column over the last `tail` share of a run's steps (its 'final' value)."""
    if info.status == "unreadable" or info.steps_done <= 0:
        return {}
    since = info.steps_done - max(1, int(info.steps_done * tail))
    try:
        df = reader.metrics(info.path, columns, since_step=since)
    except StoreError:
        return {}
    return {c: float(df[c].mean()) for c in columns if c in df.columns and len(df)}


def sweep_frame(runs: list[RunInfo], columns: list[str]) -> pd.DataFrame:
    """One row per run of a sweep: folder, status, seed, each swept parameter, final metrics."""
    rows = []
    for info in runs:
        row = {"run": info.path.name, "status": info.status, "seed": info.seed}
        row.update({f"param {k}": _scalar(v) for k, v in sorted(info.params.items())})
        row.update(final_values(info, columns))
        rows.append(row)
    return pd.DataFrame(rows)


def _scalar(value: object) -> object:
    return value if isinstance(value, (int, float, str, bool)) or value is None else json.dumps(value)


def varying_params(frame: pd.DataFrame) -> list[str]:
    """Parameter columns that take more than one value across the sweep."""
    return [c for c in frame.columns if c.startswith("param ") and frame[c].nunique(dropna=False) > 1]


def sweep_summary(frame: pd.DataFrame, metric: str, x: str, y: str | None = None) -> pd.DataFrame:
    """Mean, spread and count of `metric` for each value of `x` (and `y`), over seeds and the rest."""
    keys = [x] if y is None else [x, y]
    if metric not in frame:
        return pd.DataFrame(columns=[*keys, "mean", "std", "runs"])
    grouped = frame.groupby(keys, dropna=False)[metric]
    out = grouped.agg(["mean", "std", "count"]).reset_index()
    return out.rename(columns={"count": "runs"})
