"""Figures of what the swarm stores and shares: the shared memory and its shards, the gene pool
(dedup levels, bytes, tiers and statuses) and experience sharing between colonies."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from dashboard.figures.base import figure_layout, lines, step_title


def memory_entries_figure(df: pd.DataFrame, bucket: int = 1) -> go.Figure:
    return lines(df, [("memory_entries", "entries stored")], "Shared memory: entries stored", "entries", bucket)


def memory_rates_figure(df: pd.DataFrame, bucket: int = 1) -> go.Figure:
    return lines(df, [("memory_hit_rate", "queries with a memory hit"),
                      ("routed_share", "agent slots routed to memory authors")],
                 "Memory hit rate and routing", "% of queries / slots", bucket, scale=100.0, y_range=[0, 101])


def evictions_figure(df: pd.DataFrame, bucket: int = 1) -> go.Figure:
    return lines(df, [("evictions_per_step", "evicted")], "Memory evictions per step", "entries / step", bucket)


def shard_figure(df: pd.DataFrame, columns: list[str], title: str, y_title: str, bucket: int = 1) -> go.Figure:
    return lines(df, [(c, f"shard {c.split('_')[1]}") for c in columns], title, y_title, bucket)


def pool_levels_figure(df: pd.DataFrame, bucket: int = 1) -> go.Figure:
    names = {"pool_genes": "all genes", "pool_unique_l1": "unique after L1 (exact)",
             "pool_unique_l2": "after L2 (canonical form)", "pool_unique_l3": "after L3 (behaviour)",
             "pool_unique_l4": "after L4 (near-duplicate)"}
    return lines(df, list(names.items()), "Genes left after each dedup level", "genes", bucket)


def pool_bytes_figure(df: pd.DataFrame, bucket: int = 1) -> go.Figure:
    return lines(df, [("pool_bytes_naive", "without dedup"), ("pool_bytes", "stored")],
                 "Gene-pool size on disk", "MB", bucket, scale=1e-6)


def dedup_ratio_figure(df: pd.DataFrame, bucket: int = 1) -> go.Figure:
    return lines(df, [("pool_dedup_ratio", "dedup ratio")], "Dedup ratio (bytes without dedup / stored)",
                 "ratio (x)", bucket)


#: known categories in their natural order (best or newest first), with colours that say so.
CATEGORY_COLORS = {
    "PRISTINE": "#1a9850", "HEALTHY": "#91cf60", "DEGRADED": "#fdae61", "DEAD": "#d73027",
    "ACTIVE": "#1f77b4", "OPTIMIZED": "#2ca02c", "DEPRECATED": "#ff7f0e", "ARCHIVED": "#7f7f7f",
}


def category_order(columns: list[str], prefix: str) -> list[str]:
    """Known categories (tiers, statuses) in their natural order, then the rest alphabetically."""
    known = list(CATEGORY_COLORS)
    rank = {f"{prefix}{name}": i for i, name in enumerate(known)}
    return sorted(columns, key=lambda c: (rank.get(c, len(known)), c.lower()))


def breakdown_figure(df: pd.DataFrame, columns: list[str], prefix: str, title: str, unit: str,
                     bucket: int = 1) -> go.Figure:
    """Stacked areas of category columns (`pool_tier_HEALTHY` -> "HEALTHY") over time."""
    traces = []
    for c in category_order(columns, prefix):
        name = c.removeprefix(prefix)
        color = CATEGORY_COLORS.get(name.upper())
        traces.append(go.Scatter(x=df["step"].to_numpy(), y=df[c].to_numpy(dtype=float), name=name, mode="lines",
                                 stackgroup="one", line=dict(width=0.5, color=color) if color else dict(width=0.5)))
    return go.Figure(data=traces, layout=figure_layout(title, step_title(bucket), unit))


# ---- Experience sharing ---------------------------------------------------------------------------
def shared_entries_figure(df: pd.DataFrame, bucket: int = 1) -> go.Figure:
    """Entries accepted from other colonies per step (from `data.per_step` of `shared_entries`)."""
    return lines(df, [("shared_entries_per_step", "entries shared")], "Experience shared: entries per step",
                 "entries / step", bucket)


def rejected_batches_figure(df: pd.DataFrame, bucket: int = 1) -> go.Figure:
    return lines(df, [("shared_rejected", "batches rejected")],
                 "Rejected batches (failed the receiver's checks; total so far)", "batches", bucket)


def entries_removed_figure(df: pd.DataFrame, bucket: int = 1) -> go.Figure:
    return lines(df, [("entries_voted_out", "voted out"), ("entries_unvetted_out", "unvetted, aged out")],
                 "Shared entries removed (total so far)", "entries", bucket)


def registry_size_figure(df: pd.DataFrame, bucket: int = 1) -> go.Figure:
    return lines(df, [("registry_size", "records")], "Experience registry size (one record per shared entry)",
                 "records", bucket)


def compression_ratio_figure(df: pd.DataFrame, bucket: int = 1) -> go.Figure:
    """BitDelta compression of what was sent; 0 (nothing sent yet) is left blank."""
    if "shared_ratio" in df:
        df = df.assign(shared_ratio=df["shared_ratio"].where(df["shared_ratio"] > 0))
    return lines(df, [("shared_ratio", "compression ratio")], "BitDelta compression (raw bytes / bytes sent)",
                 "ratio (x)", bucket)


def malicious_weight_figure(df: pd.DataFrame, bucket: int = 1) -> go.Figure:
    return lines(df, [("malicious_vote_weight", "malicious colonies")], "Vote weight held by malicious colonies",
                 "% of all vote weight", bucket, scale=100.0, y_range=[0, 101])
