"""Figures across runs: one metric over several runs, and sweep results against their parameters."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from dashboard.figures.base import METRICS, figure_layout, line, metric_label


def compare_figure(frames: dict[str, pd.DataFrame], metric: str) -> go.Figure:
    """One line per run for the same metric."""
    traces = [line(df, metric, name) for name, df in frames.items() if metric in df]
    what, unit = METRICS.get(metric, (metric.replace("_", " "), ""))
    return go.Figure(data=traces, layout=figure_layout(f"{what} across runs", "step", unit or what, showlegend=True))


def sweep_line_figure(summary: pd.DataFrame, x: str, metric: str) -> go.Figure:
    """Final metric against one swept parameter: mean over runs, error bars one standard deviation."""
    data = summary.sort_values(x)
    trace = go.Scatter(x=data[x], y=data["mean"], mode="lines+markers", name=metric_label(metric),
                       error_y=dict(type="data", array=data["std"].fillna(0.0).to_numpy(), visible=True),
                       customdata=data["runs"], hovertemplate="%{x}: %{y:.4g} (%{customdata} runs)<extra></extra>")
    label = metric_label(metric)
    return go.Figure(data=[trace], layout=figure_layout(f"Final value: {label} against {x.removeprefix('param ')}",
                                                  x.removeprefix("param "), label, hovermode="closest"))


def sweep_heatmap_figure(summary: pd.DataFrame, x: str, y: str, metric: str) -> go.Figure:
    """Final metric over a grid of two swept parameters (mean over seeds and other parameters)."""
    grid = summary.pivot_table(index=y, columns=x, values="mean", aggfunc="mean")
    label = metric_label(metric)
    trace = go.Heatmap(z=grid.to_numpy(), x=[str(v) for v in grid.columns], y=[str(v) for v in grid.index],
                       colorscale="Viridis", colorbar=dict(title=dict(text=label.replace(" (", "<br>("))),
                       texttemplate="%{z:.3g}",
                       hovertemplate=f"{x}=%{{x}}<br>{y}=%{{y}}<br>%{{z:.4g}}<extra></extra>")
    return go.Figure(data=[trace], layout=figure_layout(f"Final value: {label}", x.removeprefix("param "),
                                                  y.removeprefix("param "), hovermode="closest"))
