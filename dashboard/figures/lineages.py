"""Lineage figures: Muller plot of founder lineages' shares and the family tree of living agents."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboard.figures.base import GREY, PALETTE, figure_layout
from dashboard.phylogeny import OTHER, Tree


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
    return go.Figure(data=traces, layout=figure_layout(
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
    layout = figure_layout(f"Family tree of the living agents ({shown} shown, with their ancestors)",
                     "step (each line runs from an agent's birth to its death or to now)",
                     "living agents (one row each)", height=int(min(1200, max(460, 160 + 6 * tree.shown))),
                     hovermode="closest")
    layout["yaxis"].update(showticklabels=False, showgrid=False, zeroline=False)
    return go.Figure(data=traces, layout=layout)
