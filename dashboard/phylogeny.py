"""Lineages from the run store's lineage table: who held the population when, and the family tree.

The lineage table has one row per agent that ever lived (agent_id, parent_id, root_id, colony,
birth_step, death_step; parent -1 for founders, death NaN while alive). An agent counts as alive
at step t when birth_step <= t < death_step, matching the per-step `population` metric.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

OTHER = "other lineages"


def lineage_shares(lineage: pd.DataFrame, end_step: int, top: int = 8, points: int = 200) -> pd.DataFrame:
    """Share of the living population held by each dominant founder lineage over time.

    Args:
        lineage: the reader's lineage table.
        end_step: last step to cover (the run's steps done).
        top: lineages drawn on their own, chosen by their population summed over time; the rest
            are added up as "other lineages".
        points: at most this many evenly spaced steps.
    Returns:
        A frame indexed by `step` with one column of shares (0-1) per lineage ("lineage 7"),
        largest first, plus OTHER when needed; rows sum to 1 where anyone lives.
    """
    if lineage.empty:
        return pd.DataFrame()
    grid = np.unique(np.linspace(0, max(end_step, 0), min(points, end_step + 1)).round().astype(np.int64))
    roots, inv = np.unique(lineage["root_id"].to_numpy(), return_inverse=True)
    birth = lineage["birth_step"].to_numpy(dtype=float)
    death = lineage["death_step"].to_numpy(dtype=float)
    death = np.where(np.isnan(death), np.inf, death)
    # An agent enters at the first grid step >= birth and leaves at the first grid step >= death.
    delta = np.zeros((len(roots), len(grid) + 1))  # (R, T + 1)
    np.add.at(delta, (inv, np.searchsorted(grid, birth, side="left")), 1.0)
    np.add.at(delta, (inv, np.searchsorted(grid, death, side="left")), -1.0)
    counts = delta.cumsum(1)[:, :-1]  # (R, T) living agents per lineage
    total = counts.sum(0)  # (T,)
    keep = np.argsort(-counts.sum(1), kind="stable")[:top]  # largest first: drawn at the bottom
    shares = np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)
    frame = pd.DataFrame({f"lineage {roots[k]}": shares[k] for k in keep}, index=pd.Index(grid, name="step"))
    if len(roots) > len(keep):
        rest = np.delete(np.arange(len(roots)), keep)
        frame[OTHER] = shares[rest].sum(0)
    return frame


def lineage_table(lineage: pd.DataFrame) -> pd.DataFrame:
    """Per founder lineage: living agents, share of the living, agents ever born, first and last birth."""
    if lineage.empty:
        return pd.DataFrame(columns=["lineage", "living", "share", "ever_born", "first_birth", "last_birth"])
    alive = lineage["death_step"].isna()
    g = lineage.assign(alive=alive).groupby("root_id")
    out = pd.DataFrame({
        "living": g["alive"].sum().astype(int),
        "ever_born": g.size(),
        "first_birth": g["birth_step"].min(),
        "last_birth": g["birth_step"].max(),
    })
    out.insert(1, "share", out["living"] / max(int(alive.sum()), 1))
    out = out.reset_index().rename(columns={"root_id": "lineage"})
    return out.sort_values(["living", "ever_born"], ascending=False, ignore_index=True)


@dataclass
class Tree:
    """A drawable family tree: one row per agent in `nodes` (agent_id, root_id, y, start, end, alive).

    Each agent is a horizontal line at height y from its birth to its death (or the last step),
    joined to its parent by a vertical line at its birth step.
    """

    nodes: pd.DataFrame
    living: int
    shown: int


def living_tree(lineage: pd.DataFrame, end_step: int, max_leaves: int = 300) -> Tree:
    """The ancestry of the living population (every k-th living agent when there are too many)."""
    empty = pd.DataFrame(columns=["agent_id", "parent_id", "root_id", "y", "start", "end", "alive"])
    if lineage.empty:
        return Tree(empty, 0, 0)
    ids = lineage["agent_id"].to_numpy()
    parents = lineage["parent_id"].to_numpy()
    alive = lineage["death_step"].isna().to_numpy()
    living = np.flatnonzero(alive)
    if len(living) == 0:
        return Tree(empty, 0, 0)
    leaves = living[:: max(1, int(np.ceil(len(living) / max_leaves)))]
    index = pd.Index(ids)
    keep = np.zeros(len(ids), dtype=bool)
    frontier = leaves
    while len(frontier):  # walk up one generation at a time
        keep[frontier] = True
        up = index.get_indexer(parents[frontier])
        frontier = np.unique(up[(up >= 0) & ~keep[np.maximum(up, 0)]])
    rows = np.flatnonzero(keep)
    sub = lineage.iloc[rows].reset_index(drop=True)
    death = sub["death_step"].to_numpy(dtype=float)
    y = _leaf_order(sub["agent_id"].to_numpy(), sub["parent_id"].to_numpy(), sub["birth_step"].to_numpy(),
                    np.isnan(death))
    nodes = pd.DataFrame({
        "agent_id": sub["agent_id"], "parent_id": sub["parent_id"], "root_id": sub["root_id"], "y": y,
        "start": sub["birth_step"].astype(float), "end": np.where(np.isnan(death), float(end_step), death),
        "alive": np.isnan(death),
    })
    return Tree(nodes, int(len(living)), int(len(leaves)))


def _leaf_order(ids: np.ndarray, parents: np.ndarray, births: np.ndarray, alive: np.ndarray) -> np.ndarray:
    """Heights for a tree drawing: rows 0, 1, 2, ... in depth-first order for every living agent
    (a living parent takes the row above its children); a dead ancestor sits at the middle of
    its children's span."""
    pos = {int(a): i for i, a in enumerate(ids)}
    children: dict[int, list[int]] = {i: [] for i in range(len(ids))}
    roots = []
    for i, p in enumerate(parents):
        (children[pos[int(p)]] if int(p) in pos else roots).append(i)
    for kids in children.values():
        kids.sort(key=lambda i: (births[i], ids[i]))
    y = np.zeros(len(ids))
    next_leaf = 0.0
    stack: list[tuple[int, bool]] = [(r, False) for r in sorted(roots, key=lambda i: ids[i], reverse=True)]
    while stack:  # iterative post-order, so deep trees do not hit the recursion limit
        node, done = stack.pop()
        kids = children[node]
        if done:
            y[node] = (y[kids[0]] + y[kids[-1]]) / 2.0
        elif not kids or alive[node]:
            y[node], next_leaf = next_leaf, next_leaf + 1.0
            stack.extend((k, False) for k in reversed(kids))
        else:
            stack.append((node, True))
            stack.extend((k, False) for k in reversed(kids))
    return y
