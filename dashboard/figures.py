"""Plotly figures for the dashboard: pure functions from data frames to figures (no Streamlit).

Every axis says what it measures and in which unit. Figures are built in one call
(`go.Figure(data=[...], layout=...)`): adding traces one by one costs plotly a validation pass
each time, which dominated the Population page for long runs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboard.phylogeny import OTHER, Tree

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


def _layout(title: str, x_title: str, y_title: str, **extra) -> dict:
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


def _line(df: pd.DataFrame, col: str, name: str, scale: float = 1.0, **style) -> go.Scatter:
    return go.Scatter(x=df["step"].to_numpy(), y=df[col].to_numpy(dtype=float) * scale, name=name,
                      mode="lines", **style)


def lines(df: pd.DataFrame, series: list[tuple[str, str]], title: str, y_title: str, bucket: int = 1,
          scale: float = 1.0, y_range: list[float] | None = None) -> go.Figure:
    """A time-series figure: one line per (column, legend name) present in `df`."""
    traces = [_line(df, col, name, scale) for col, name in series if col in df]
    yaxis = dict(title=dict(text=y_title), range=y_range) if y_range else dict(title=dict(text=y_title),
                                                                                rangemode="tozero")
    return go.Figure(data=traces, layout=_layout(title, step_title(bucket), y_title, yaxis=yaxis))


# ---- Population ------------------------------------------------------------------------------
def population_figure(df: pd.DataFrame, bucket: int = 1, faults: pd.DataFrame | None = None) -> go.Figure:
    """Living agents over time; with `faults` (a `dashboard.faults.fault_table`), a dashed vertical
    line per fault and a marker per fault at the top whose hover says what was lost."""
    if faults is None or faults.empty:
        return lines(df, [("population", "living agents")], "Population: living agents", "agents", bucket)
    steps = faults["step"].astype(float).to_numpy()
    shapes = [dict(type="line", xref="x", yref="paper", x0=x, x1=x, y0=0, y1=1,
                   line=dict(color=FAULT_COLORS.get(k, GREY), width=1, dash="dash"))
              for x, k in zip(steps, faults["kind"])]
    traces = [_line(df, "population", "living agents")] if "population" in df else []
    layout = _layout("Population: living agents", step_title(bucket), "agents", shapes=shapes,
                     yaxis=dict(title=dict(text="agents"), rangemode="tozero"),
                     yaxis2=dict(overlaying="y", range=[0, 1], visible=False, fixedrange=True))
    return go.Figure(data=traces + _fault_markers(faults), layout=layout)


def _fault_markers(faults: pd.DataFrame) -> list[go.Scatter]:
    """One marker trace per fault kind along the top of the plot (the legend and hover of the lines)."""
    traces = []
    for kind, part in faults.groupby("kind", sort=True):
        text = [f"{kind}: {where}" + (f", {a} agents restored" if pd.notna(a) else "")
                + (f", {c} copies moved" if pd.notna(c) else "")
                for where, a, c in zip(part["colony or shard"], part["agents restored"], part["copies moved"])]
        traces.append(go.Scatter(x=part["step"].astype(float).to_numpy(), y=[1.0] * len(part), yaxis="y2",
                                 mode="markers", name=f"fault: {kind.replace('_', ' ')}", text=text,
                                 hovertemplate="step %{x}: %{text}<extra></extra>",
                                 marker=dict(symbol="triangle-down", size=10, color=FAULT_COLORS.get(kind, GREY))))
    return traces


def turnover_figure(df: pd.DataFrame, bucket: int = 1) -> go.Figure:
    return lines(df, [("births", "births"), ("deaths", "deaths")], "Births and deaths per step",
                 "agents / step", bucket)


def fitness_figure(df: pd.DataFrame, bucket: int = 1) -> go.Figure:
    """The 10-90 % band of agent fitness, its median, mean and best, over time."""
    x = df["step"].to_numpy()
    traces = []
    if {"fitness_p10", "fitness_p90"} <= set(df.columns):
        traces += [
            go.Scatter(x=x, y=df["fitness_p10"].to_numpy(), line=dict(width=0), showlegend=False,
                       name="10th percentile", hoverinfo="skip"),
            go.Scatter(x=x, y=df["fitness_p90"].to_numpy(), line=dict(width=0), fill="tonexty",
                       fillcolor="rgba(31,119,180,0.2)", name="10-90 % of agents"),
        ]
    styles = {"fitness_p50": ("median", dict(color="#1f77b4")),
              "fitness_mean": ("mean", dict(color="#ff7f0e", dash="dash")),
              "fitness_max": ("best agent", dict(color="#2ca02c", dash="dot"))}
    traces += [_line(df, c, name, line=style) for c, (name, style) in styles.items() if c in df]
    return go.Figure(data=traces, layout=_layout(
        "Fitness of the agents (spread over the population)", step_title(bucket),
        "fitness (mean reward, cosine)"))


def quality_figure(df: pd.DataFrame, bucket: int = 1) -> go.Figure:
    return lines(df, [("quality", "swarm consensus"), ("agent_quality", "single agent (mean)")],
                 "Answer quality: how close answers are to the right one", "cosine similarity (-1 to 1)",
                 bucket)


def accuracy_figure(df: pd.DataFrame, bucket: int = 1) -> go.Figure:
    return lines(df, [("accuracy", "right answer chosen"), ("thumbs_up", "thumbs up")],
                 "Accuracy and thumbs up", "% of queries", bucket, scale=100.0, y_range=[0, 101])


def speed_figure(df: pd.DataFrame, bucket: int = 1) -> go.Figure:
    return lines(df, [("steps_per_second", "simulation speed")], "Simulation speed", "steps / s", bucket)


# ---- Specialisation ----------------------------------------------------------------------------
def specialization_figure(df: pd.DataFrame, bucket: int = 1) -> go.Figure:
    return lines(df, [("specialization", "specialisation index")],
                 "Specialisation index (0 = every agent serves all niches, 1 = one niche each)",
                 "index (0-1)", bucket, y_range=[0, 1])


def _heatmap(matrix: pd.DataFrame, title: str, rows_are: str, colorbar: str, hover: str, **style) -> go.Figure:
    height = int(min(900, max(HEIGHT, 140 + 7 * len(matrix))))
    trace = go.Heatmap(z=matrix.to_numpy(), x=list(matrix.columns), y=list(matrix.index),
                       colorbar=dict(title=dict(text=colorbar)), hovertemplate=hover, **style)
    layout = _layout(title, "query niche", f"{rows_are} (grouped by main niche)", height=height,
                     hovermode="closest", margin=dict(l=70, r=20, t=50, b=60))
    layout["yaxis"].update(autorange="reversed", showticklabels=len(matrix) <= 40)
    return go.Figure(data=[trace], layout=layout)


def niche_heatmap(matrix: pd.DataFrame, rows_are: str = "agents") -> go.Figure:
    """Rows (agents or lineages) x niches, coloured by mean reward; blank where never served."""
    return _heatmap(matrix, f"Answer quality: {rows_are} x niches (blank: never served)", rows_are,
                    "mean reward<br>(cosine)", "%{y}<br>%{x}: mean reward %{z:.3f}<extra></extra>",
                    colorscale="RdBu", zmid=0.0)


def niche_share_heatmap(share: pd.DataFrame, rows_are: str = "agents") -> go.Figure:
    """Rows x niches, coloured by the share of the row's queries from each niche (a specialist
    is one dark cell in its row, a generalist an even row)."""
    return _heatmap(share * 100.0, f"Workload: share of each {rows_are[:-1]}'s queries per niche", rows_are,
                    "% of its<br>queries", "%{y}<br>%{x}: %{z:.0f} % of its queries<extra></extra>",
                    colorscale="Blues", zmin=0.0, zmax=100.0)


# ---- Lineages --------------------------------------------------------------------------------------
def lineage_colors(names: list[str]) -> dict[str, str]:
    """A colour per lineage column ("lineage 7"), grey for the rest."""
    colors = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(n for n in names if n != OTHER)}
    colors[OTHER] = GREY
    return colors


def muller_figure(shares: pd.DataFrame, colors: dict[str, str] | None = None) -> go.Figure:
    """Muller-style stacked areas: each dominant lineage's share of the living population (%)."""
    colors = colors or lineage_colors(list(shares.columns))
    x = shares.index.to_numpy()
    traces = [go.Scatter(x=x, y=shares[c].to_numpy() * 100.0, name=c, mode="lines", stackgroup="one",
                         line=dict(width=0.5, color=colors.get(c, GREY)),
                         hovertemplate="%{y:.1f} %<extra>" + c + "</extra>")
              for c in shares.columns]
    return go.Figure(data=traces, layout=_layout(
        "Who holds the population: share of each founder lineage", "step", "% of living agents",
        yaxis=dict(title=dict(text="% of living agents"), range=[0, 100])))


def phylogeny_figure(tree: Tree, colors: dict[str, str] | None = None) -> go.Figure:
    """Family tree of the living agents: a line per agent from birth to death (or now), joined
    to its parent at its birth step; one colour per founder lineage."""
    nodes = tree.nodes
    if colors is None:
        top = nodes.loc[nodes["alive"], "root_id"].value_counts().index[: len(PALETTE)]
        colors = lineage_colors([f"lineage {r}" for r in top])
    # Parent's row for each agent whose parent is in the tree (NaN otherwise).
    parent_y = nodes["parent_id"].map(pd.Series(nodes["y"].to_numpy(), index=nodes["agent_id"])).to_numpy(float)
    traces = []
    group = nodes["root_id"].map(lambda r: f"lineage {r}" if f"lineage {r}" in colors else OTHER)
    present = set(group)
    for name in [n for n in colors if n != OTHER and n in present] + ([OTHER] if OTHER in present else []):
        mask = (group == name).to_numpy()
        part = nodes[mask]
        start, end, y, up = (part["start"].to_numpy(float), part["end"].to_numpy(float),
                             part["y"].to_numpy(float), parent_y[mask])
        gap = np.full_like(y, np.nan)
        linked = ~np.isnan(up)
        # NaN-separated segments: a life line per agent, then a link per agent with a parent.
        xs = np.concatenate([np.column_stack([start, end, gap]).ravel(),
                             np.column_stack([start, start, gap])[linked].ravel()])
        ys = np.concatenate([np.column_stack([y, y, gap]).ravel(), np.column_stack([up, y, gap])[linked].ravel()])
        traces.append(go.Scatter(x=xs, y=ys, mode="lines", name=name, hoverinfo="skip", connectgaps=False,
                                 line=dict(width=1.2, color=colors.get(name, GREY))))
        tips = part[part["alive"]]
        traces.append(go.Scatter(
            x=tips["end"].to_numpy(), y=tips["y"].to_numpy(), mode="markers", showlegend=False, name=name,
            marker=dict(size=4, color=colors.get(name, GREY)),
            customdata=np.stack([tips["agent_id"], tips["start"], tips["root_id"]], 1),
            hovertemplate="agent %{customdata[0]} (lineage %{customdata[2]})<br>born at step %{customdata[1]}"
                          "<extra></extra>",
        ))
    shown = f"{tree.shown} of {tree.living}" if tree.shown < tree.living else f"all {tree.living}"
    layout = _layout(f"Family tree of the living agents ({shown} shown, with their ancestors)",
                     "step (each line runs from an agent's birth to its death or to now)",
                     "living agents (one row each)", height=int(min(1200, max(460, 160 + 6 * tree.shown))),
                     hovermode="closest")
    layout["yaxis"].update(showticklabels=False, showgrid=False, zeroline=False)
    return go.Figure(data=traces, layout=layout)


# ---- Memory, shards, gene pool ----------------------------------------------------------------------
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
    return go.Figure(data=traces, layout=_layout(title, step_title(bucket), unit))


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


# ---- Compare and sweeps ------------------------------------------------------------------------------
def compare_figure(frames: dict[str, pd.DataFrame], metric: str) -> go.Figure:
    """One line per run for the same metric."""
    traces = [_line(df, metric, name) for name, df in frames.items() if metric in df]
    what, unit = METRICS.get(metric, (metric.replace("_", " "), ""))
    return go.Figure(data=traces, layout=_layout(f"{what} across runs", "step", unit or what, showlegend=True))


def sweep_line_figure(summary: pd.DataFrame, x: str, metric: str) -> go.Figure:
    """Final metric against one swept parameter: mean over runs, error bars one standard deviation."""
    data = summary.sort_values(x)
    trace = go.Scatter(x=data[x], y=data["mean"], mode="lines+markers", name=metric_label(metric),
                       error_y=dict(type="data", array=data["std"].fillna(0.0).to_numpy(), visible=True),
                       customdata=data["runs"], hovertemplate="%{x}: %{y:.4g} (%{customdata} runs)<extra></extra>")
    label = metric_label(metric)
    return go.Figure(data=[trace], layout=_layout(f"Final value: {label} against {x.removeprefix('param ')}",
                                                  x.removeprefix("param "), label, hovermode="closest"))


def sweep_heatmap_figure(summary: pd.DataFrame, x: str, y: str, metric: str) -> go.Figure:
    """Final metric over a grid of two swept parameters (mean over seeds and other parameters)."""
    grid = summary.pivot_table(index=y, columns=x, values="mean", aggfunc="mean")
    label = metric_label(metric)
    trace = go.Heatmap(z=grid.to_numpy(), x=[str(v) for v in grid.columns], y=[str(v) for v in grid.index],
                       colorscale="Viridis", colorbar=dict(title=dict(text=label.replace(" (", "<br>("))),
                       texttemplate="%{z:.3g}",
                       hovertemplate=f"{x}=%{{x}}<br>{y}=%{{y}}<br>%{{z:.4g}}<extra></extra>")
    return go.Figure(data=[trace], layout=_layout(f"Final value: {label}", x.removeprefix("param "),
                                                  y.removeprefix("param "), hovermode="closest"))
