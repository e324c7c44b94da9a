"""Figure functions, without Streamlit: titles, axis titles with units, and the values drawn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dashboard import data, figures, phylogeny
from tests.dashboard.test_data import TOY

STEPS = np.arange(1, 21)
FRAME = pd.DataFrame({
    "step": STEPS, "population": 10.0 + STEPS, "births": 2.0, "deaths": 1.0,
    "fitness_p10": 0.1, "fitness_p50": 0.2, "fitness_p90": 0.3, "fitness_mean": 0.21, "fitness_max": 0.5,
    "quality": 0.4, "agent_quality": 0.2, "accuracy": 0.5, "thumbs_up": 0.25, "seconds": 0.02,
    "specialization": 0.3, "lineages": 4.0, "memory_entries": 100.0 * STEPS, "memory_hit_rate": 0.9,
    "routed_share": 0.3, "evictions_per_step": 1.0, "shard_0_entries": 5.0, "shard_1_entries": 6.0,
    "pool_genes": 100.0, "pool_unique_l1": 80.0, "pool_unique_l4": 50.0, "pool_bytes": 2e6,
    "pool_bytes_naive": 4e6, "pool_dedup_ratio": 2.0, "pool_tier_DEAD": 1.0, "pool_tier_PRISTINE": 9.0,
})
FRAME = data.with_rates(FRAME)
MATRIX = pd.DataFrame([[0.5, np.nan], [0.1, 0.3]], index=["agent 1", "agent 2"], columns=["niche 0", "niche 1"])
SWEEP = pd.DataFrame({"param a": [1, 1, 2, 2], "param b": [5, 6, 5, 6], "quality": [0.1, 0.2, 0.3, 0.4]})

#: every figure builder with arguments, and the words its y axis title must hold (its unit).
BUILDERS = {
    "population": (lambda: figures.population_figure(FRAME), "agents"),
    "turnover": (lambda: figures.turnover_figure(FRAME), "agents / step"),
    "fitness": (lambda: figures.fitness_figure(FRAME), "mean reward, cosine"),
    "quality": (lambda: figures.quality_figure(FRAME), "cosine"),
    "accuracy": (lambda: figures.accuracy_figure(FRAME), "% of queries"),
    "speed": (lambda: figures.speed_figure(FRAME), "steps / s"),
    "specialization": (lambda: figures.specialization_figure(FRAME), "0-1"),
    "niche_quality": (lambda: figures.niche_heatmap(MATRIX), "agents"),
    "niche_share": (lambda: figures.niche_share_heatmap(MATRIX.fillna(0)), "agents"),
    "muller": (lambda: figures.muller_figure(phylogeny.lineage_shares(TOY, 4)), "% of living agents"),
    "phylogeny": (lambda: figures.phylogeny_figure(phylogeny.living_tree(TOY, 5)), "one row each"),
    "memory_entries": (lambda: figures.memory_entries_figure(FRAME), "entries"),
    "memory_rates": (lambda: figures.memory_rates_figure(FRAME), "%"),
    "evictions": (lambda: figures.evictions_figure(FRAME), "entries / step"),
    "shards": (lambda: figures.shard_figure(FRAME, ["shard_0_entries", "shard_1_entries"], "Entries", "entries"),
               "entries"),
    "pool_levels": (lambda: figures.pool_levels_figure(FRAME), "genes"),
    "pool_bytes": (lambda: figures.pool_bytes_figure(FRAME), "MB"),
    "dedup_ratio": (lambda: figures.dedup_ratio_figure(FRAME), "ratio"),
    "breakdown": (lambda: figures.breakdown_figure(FRAME, ["pool_tier_DEAD", "pool_tier_PRISTINE"], "pool_tier_",
                                                   "Tiers", "genes"), "genes"),
    "compare": (lambda: figures.compare_figure({"a": FRAME, "b": FRAME}, "quality"), "cosine"),
    "sweep_line": (lambda: figures.sweep_line_figure(data.sweep_summary(SWEEP, "quality", "param a"), "param a",
                                                     "quality"), "cosine"),
    "sweep_heatmap": (lambda: figures.sweep_heatmap_figure(
        data.sweep_summary(SWEEP, "quality", "param a", "param b"), "param a", "param b", "quality"), "b"),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_every_figure_has_a_title_and_axis_titles_with_units(name):
    build, unit = BUILDERS[name]
    fig = build()
    assert fig.layout.title.text, name
    assert fig.layout.xaxis.title.text, name
    assert unit in fig.layout.yaxis.title.text, (name, fig.layout.yaxis.title.text)
    assert len(fig.data) >= 1
    fig.to_json()  # serialisable as Streamlit will send it


def test_shares_are_drawn_in_percent_and_scaled_series_too():
    accuracy = figures.accuracy_figure(FRAME)
    assert accuracy.data[0].y[0] == pytest.approx(50.0) and accuracy.data[1].y[0] == pytest.approx(25.0)
    assert list(accuracy.layout.yaxis.range) == [0, 101]
    assert figures.pool_bytes_figure(FRAME).data[1].y[0] == pytest.approx(2.0)  # 2e6 bytes = 2 MB
    assert figures.speed_figure(FRAME).data[0].y[0] == pytest.approx(50.0)  # 0.02 s a step


def test_fitness_band_then_lines():
    fig = figures.fitness_figure(FRAME)
    assert [t.name for t in fig.data] == ["10th percentile", "10-90 % of agents", "median", "mean", "best agent"]
    assert fig.data[1].fill == "tonexty"


def test_missing_columns_are_left_out():
    fig = figures.quality_figure(FRAME[["step", "quality"]])
    assert [t.name for t in fig.data] == ["swarm consensus"]


def test_bucketed_series_say_so_on_the_x_axis():
    fig = figures.population_figure(FRAME, bucket=25)
    assert fig.layout.xaxis.title.text == "step (each point averages 25 steps)"


def test_muller_stacks_shares_in_percent():
    shares = phylogeny.lineage_shares(TOY, 4, top=1)
    fig = figures.muller_figure(shares)
    assert [t.name for t in fig.data] == ["lineage 0", phylogeny.OTHER]
    assert all(t.stackgroup == "one" for t in fig.data)
    assert fig.data[0].y[0] + fig.data[1].y[0] == pytest.approx(100.0)
    assert fig.data[1].line.color == figures.GREY


def test_phylogeny_draws_a_line_per_agent_and_a_link_to_its_parent():
    tree = phylogeny.living_tree(TOY, 5)
    fig = figures.phylogeny_figure(tree)
    lines, tips = fig.data[0], fig.data[1]
    segments = [s for s in _segments(lines.x, lines.y)]
    assert len(segments) == 3 + 2  # three life lines, two parent links (2 -> 0, 4 -> 2)
    assert sorted(tips.customdata[:, 0].tolist()) == [0, 2, 4]
    assert "all 3 shown" in fig.layout.title.text


def _segments(xs, ys):
    seg = []
    for x, y in zip(xs, ys):
        if x is None or np.isnan(x):
            yield seg
            seg = []
        else:
            seg.append((x, y))


def test_niche_heatmaps():
    fig = figures.niche_heatmap(MATRIX, "agents")
    assert fig.data[0].zmid == 0 and list(fig.data[0].y) == ["agent 1", "agent 2"]
    share = figures.niche_share_heatmap(pd.DataFrame([[0.25, 0.75]], index=["a"], columns=["n0", "n1"]))
    assert share.data[0].z[0][1] == pytest.approx(75.0)


def test_compare_and_sweep_figures():
    fig = figures.compare_figure({"run-a": FRAME, "run-b": FRAME.assign(quality=0.6)}, "quality")
    assert [t.name for t in fig.data] == ["run-a", "run-b"] and fig.layout.showlegend
    summary = data.sweep_summary(SWEEP, "quality", "param a")
    line = figures.sweep_line_figure(summary, "param a", "quality")
    assert list(line.data[0].y) == pytest.approx([0.15, 0.35]) and line.layout.xaxis.title.text == "a"
    grid = data.sweep_summary(SWEEP, "quality", "param a", "param b")
    heat = figures.sweep_heatmap_figure(grid, "param a", "param b", "quality")
    np.testing.assert_allclose(np.asarray(heat.data[0].z, dtype=float), [[0.1, 0.3], [0.2, 0.4]])  # rows: b


def test_category_order_puts_known_tiers_first():
    cols = ["pool_tier_zeta", "pool_tier_DEAD", "pool_tier_PRISTINE", "pool_tier_alpha"]
    assert figures.category_order(cols, "pool_tier_") == [
        "pool_tier_PRISTINE", "pool_tier_DEAD", "pool_tier_alpha", "pool_tier_zeta"]


def test_metric_labels_carry_units():
    assert figures.metric_label("population") == "Living agents (agents)"
    assert figures.metric_label("pool_role_mlp") == "pool role mlp"
