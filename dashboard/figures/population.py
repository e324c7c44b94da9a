"""Population and specialisation figures: living agents (with fault markers), turnover, fitness,
answer quality, accuracy, speed, and the agents x niches heatmaps."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from dashboard.figures.base import (
    FAULT_COLORS,
    GREY,
    HEIGHT,
    figure_layout,
    line,
    lines,
    step_title,
)


def population_figure(df: pd.DataFrame, bucket: int = 1, faults: pd.DataFrame | None = None) -> go.Figure:
    """Living agents over time; with `faults` (a `dashboard.faults.fault_table`), a dashed vertical
    line per fault and a marker per fault at the top whose hover says what was lost."""
    if faults is None or faults.empty:
        return lines(df, [("population", "living agents")], "Population: living agents", "agents", bucket)
    steps = faults["step"].astype(float).to_numpy()
    shapes = [dict(type="line", xref="x", yref="paper", x0=x, x1=x, y0=0, y1=1,
                   line=dict(color=FAULT_COLORS.get(k, GREY), width=1, dash="dash"))
              for x, k in zip(steps, faults["kind"])]
    traces = [line(df, "population", "living agents")] if "population" in df else []
    layout = figure_layout("Population: living agents", step_title(bucket), "agents", shapes=shapes,
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
    traces += [line(df, c, name, line=style) for c, (name, style) in styles.items() if c in df]
    return go.Figure(data=traces, layout=figure_layout(
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


def specialization_figure(df: pd.DataFrame, bucket: int = 1) -> go.Figure:
    return lines(df, [("specialization", "specialisation index")],
                 "Specialisation index (0 = every agent serves all niches, 1 = one niche each)",
                 "index (0-1)", bucket, y_range=[0, 1])


def _heatmap(matrix: pd.DataFrame, title: str, rows_are: str, colorbar: str, hover: str, **style) -> go.Figure:
    height = int(min(900, max(HEIGHT, 140 + 7 * len(matrix))))
    trace = go.Heatmap(z=matrix.to_numpy(), x=list(matrix.columns), y=list(matrix.index),
                       colorbar=dict(title=dict(text=colorbar)), hovertemplate=hover, **style)
    layout = figure_layout(title, "query niche", f"{rows_are} (grouped by main niche)", height=height,
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
