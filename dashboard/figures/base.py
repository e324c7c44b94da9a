"""Shared pieces of the dashboard's figures: palette, metric names and units, layout, time-series lines.

Every axis says what it measures and in which unit. Figures are built in one call
(`go.Figure(data=[...], layout=...)`): adding traces one by one costs plotly a validation pass
each time, which dominated the Population page for long runs.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
           "#bcbd22", "#7f7f7f", "#393b79", "#ad494a"]
GREY = "#c7c7c7"
FAULT_COLORS = {"colony_lost": "#d62728", "shard_lost": "#ff7f0e"}  # fault kinds (dashboard.faults)
HEIGHT = 380

#: metric column -> (what it is, unit). Units are "" for pure counts of a kind named in the label.
METRICS: dict[str, tuple[str, str]] = {
    "population": ("Living agents", "agents"),
    "births": ("Births", "agents / step"),
    "deaths": ("Deaths", "agents / step"),
    "queries": ("Queries answered", "queries / step"),
    "fitness_mean": ("Mean fitness", "mean reward, cosine"),
    "fitness_max": ("Best fitness", "mean reward, cosine"),
    "fitness_p10": ("Fitness, 10th percentile", "mean reward, cosine"),
    "fitness_p50": ("Median fitness", "mean reward, cosine"),
    "fitness_p90": ("Fitness, 90th percentile", "mean reward, cosine"),
    "quality": ("Consensus answer quality", "cosine to the right answer"),
    "agent_quality": ("Single-agent answer quality", "cosine to the right answer"),
    "accuracy": ("Accuracy", "share of queries"),
    "thumbs_up": ("Thumbs up", "share of queries"),
    "memory_entries": ("Shared-memory entries", "entries"),
    "memory_hit_rate": ("Memory hit rate", "share of queries"),
    "memory_evictions": ("Memory evictions (total)", "entries"),
    "routed_share": ("Routed to memory authors", "share of agent slots"),
    "specialization": ("Specialisation index", "0 = generalists, 1 = one niche each"),
    "lineages": ("Founder lineages alive", "lineages"),
    "seconds": ("Wall time per step", "s"),
    "steps_per_second": ("Simulation speed", "steps / s"),
    "pool_genes": ("Genes in the pool", "genes"),
    "pool_bytes": ("Stored bytes", "bytes"),
    "pool_bytes_naive": ("Bytes without dedup", "bytes"),
    "pool_dedup_ratio": ("Dedup ratio", "naive bytes / stored bytes"),
    "shared_batches": ("Shared batches accepted (total)", "batches"),
    "shared_entries": ("Shared entries accepted (total)", "entries"),
    "shared_rejected": ("Shared batches rejected (total)", "batches"),
    "shared_bytes": ("Bytes shared (total)", "bytes"),
    "shared_ratio": ("BitDelta compression ratio", "raw bytes / bytes sent"),
    "entries_voted_out": ("Entries voted out (total)", "entries"),
    "entries_unvetted_out": ("Unvetted entries aged out (total)", "entries"),
    "registry_size": ("Experience registry size", "records"),
    "malicious_vote_weight": ("Malicious colonies' vote weight", "share of all vote weight"),
}


def metric_label(name: str) -> str:
    """'Living agents (agents)' for known metrics; a readable form of the column name otherwise."""
    if name in METRICS:
        what, unit = METRICS[name]
        return f"{what} ({unit})"
    return name.replace("_", " ")


def figure_layout(title: str, x_title: str, y_title: str, **extra) -> dict:
    """The common layout: title, axis titles, template, height, legend below; `extra` overrides."""
    layout = dict(
        title=dict(text=title, x=0.01, font=dict(size=16)), template="none", height=HEIGHT,
        margin=dict(l=70, r=20, t=50, b=100), font=dict(size=13), hovermode="x unified",
        legend=dict(orientation="h", yanchor="top", y=-0.3, xanchor="left", x=0.0),
        xaxis=dict(title=dict(text=x_title)), yaxis=dict(title=dict(text=y_title)),
    )
    layout.update(extra)
    return layout


def step_title(bucket: int = 1) -> str:
    return "step" if bucket <= 1 else f"step (each point averages {bucket:,} steps)"


def line(df: pd.DataFrame, col: str, name: str, scale: float = 1.0, **style) -> go.Scatter:
    return go.Scatter(x=df["step"].to_numpy(), y=df[col].to_numpy(dtype=float) * scale, name=name,
                      mode="lines", **style)


def lines(df: pd.DataFrame, series: list[tuple[str, str]], title: str, y_title: str, bucket: int = 1,
          scale: float = 1.0, y_range: list[float] | None = None) -> go.Figure:
    """A time-series figure: one line per (column, legend name) present in `df`."""
    traces = [line(df, col, name, scale) for col, name in series if col in df]
    yaxis = dict(title=dict(text=y_title), range=y_range) if y_range else dict(title=dict(text=y_title),
                                                                                rangemode="tozero")
    return go.Figure(data=traces, layout=figure_layout(title, step_title(bucket), y_title, yaxis=yaxis))
