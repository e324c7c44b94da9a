"""Data shaping on top of the reader: values checked against hand-made tables and written stores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dashboard import data, phylogeny
from experiments import reader
from tests.dashboard.stores import open_run, write_run


def lineage_frame(rows):
    """rows of (agent, parent, root, birth, death or None)."""
    return pd.DataFrame(
        [(a, p, r, 0, b, np.nan if d is None else float(d)) for a, p, r, b, d in rows],
        columns=["agent_id", "parent_id", "root_id", "colony", "birth_step", "death_step"],
    )


# founders 0 and 1; 0 has children 2 (born 1) and 3 (born 2, dies 4); 2 has child 4 (born 3);
# founder 1 dies at step 2.
TOY = lineage_frame([(0, -1, 0, 0, None), (1, -1, 1, 0, 2), (2, 0, 0, 1, None), (3, 0, 0, 2, 4), (4, 2, 0, 3, None)])


def test_lineage_shares_count_agents_alive_at_each_step():
    shares = phylogeny.lineage_shares(TOY, end_step=4, top=2, points=10)
    assert shares.index.tolist() == [0, 1, 2, 3, 4]
    # step 0: 0 and 1 alive; 1: 0,1,2; 2: 0,2,3 (1 died at 2); 3: 0,2,3,4; 4: 0,2,4 (3 died at 4)
    np.testing.assert_allclose(shares["lineage 0"], [0.5, 2 / 3, 1, 1, 1])
    np.testing.assert_allclose(shares["lineage 1"], [0.5, 1 / 3, 0, 0, 0])
    assert list(shares.columns) == ["lineage 0", "lineage 1"]  # largest first
    top1 = phylogeny.lineage_shares(TOY, end_step=4, top=1)
    assert list(top1.columns) == ["lineage 0", phylogeny.OTHER]
    np.testing.assert_allclose(top1.sum(axis=1), 1.0)


def test_lineage_shares_of_a_written_run_match_its_population_metric(tmp_path):
    run = write_run(tmp_path / "r-1", 30)
    shares = phylogeny.lineage_shares(reader.lineage(run), end_step=30, top=3, points=31)
    np.testing.assert_allclose(shares.sum(axis=1).iloc[1:], 1.0)
    counts = _alive_counts(reader.lineage(run), 30)
    population = reader.metrics(run, ["population"]).set_index("step")["population"]
    np.testing.assert_array_equal(counts[1:], population.to_numpy())


def _alive_counts(lineage, end):
    death = lineage["death_step"].fillna(np.inf).to_numpy()
    birth = lineage["birth_step"].to_numpy()
    return np.array([((birth <= t) & (death > t)).sum() for t in range(end + 1)])


def test_lineage_table():
    table = phylogeny.lineage_table(TOY).set_index("lineage")
    assert table.loc[0, "living"] == 3 and table.loc[0, "ever_born"] == 4 and table.loc[1, "living"] == 0
    assert table.loc[0, "share"] == pytest.approx(1.0)
    assert table.loc[0, "last_birth"] == 3


def test_living_tree_keeps_ancestors_and_orders_rows():
    tree = phylogeny.living_tree(TOY, end_step=5)
    nodes = tree.nodes.set_index("agent_id")
    assert tree.living == 3 and tree.shown == 3
    assert set(nodes.index) == {0, 2, 4}  # living 0, 2, 4; 3 and 1 are dead with no living descendant
    # living parents take the row above their children: 0, then 2, then 4
    assert nodes.loc[0, "y"] < nodes.loc[2, "y"] < nodes.loc[4, "y"]
    assert nodes.loc[4, "end"] == 5 and bool(nodes.loc[4, "alive"])
    many = lineage_frame([(i, -1, i, 0, None) for i in range(50)])
    assert phylogeny.living_tree(many, 1, max_leaves=10).shown == 10


def test_living_tree_places_dead_ancestors_between_their_children():
    rows = lineage_frame([(0, -1, 0, 0, 3), (1, 0, 0, 1, None), (2, 0, 0, 2, None)])
    nodes = phylogeny.living_tree(rows, 5).nodes.set_index("agent_id")
    assert nodes.loc[0, "y"] == pytest.approx((nodes.loc[1, "y"] + nodes.loc[2, "y"]) / 2)


def test_downsample_averages_buckets_and_keeps_last_steps():
    df = pd.DataFrame({"step": np.arange(1, 10_001), "population": np.arange(1, 10_001, dtype=float)})
    small, bucket = data.downsample(df, max_points=1000)
    assert bucket == 10 and len(small) == 1000
    assert small["step"].iloc[0] == 10 and small["step"].iloc[-1] == 10_000
    assert small["population"].iloc[0] == pytest.approx(5.5)
    same, one = data.downsample(df.head(50), max_points=1000)
    assert one == 1 and same.equals(df.head(50))


def test_rates_from_seconds():
    out = data.with_rates(pd.DataFrame({"step": [1, 2], "seconds": [0.5, 0.0]}))
    assert out["steps_per_second"].iloc[0] == 2.0 and np.isnan(out["steps_per_second"].iloc[1])


def test_metrics_follower_reads_only_new_steps_and_reloads_when_needed(tmp_path):
    run = tmp_path / "r-1"
    store = open_run(run)
    for step in range(1, 6):
        store.write_step(step, {"population": float(step)})
    follow = data.MetricsFollower(run, ["population", "pool_genes"])
    assert follow.update(5)["population"].tolist() == [1, 2, 3, 4, 5]
    for step in range(6, 8):
        store.write_step(step, {"population": float(step)})
    assert follow.update(7)["step"].tolist() == list(range(1, 8))
    store.write_step(8, {"population": 8.0, "pool_genes": 3.0})  # a new column: full reload
    frame = follow.update(8)
    assert "pool_genes" in frame and frame["pool_genes"].iloc[-1] == 3.0 and len(frame) == 8
    store.truncate_after(4)  # resumed from a checkpoint
    store.write_step(5, {"population": 50.0})
    assert follow.update(5)["population"].tolist() == [1, 2, 3, 4, 50]
    store.close()


def test_runs_frame_has_headline_and_problems(tmp_path):
    run = write_run(tmp_path / "a-1", 12)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "run.sqlite").write_text("nope")
    frame = data.runs_frame(reader.list_runs(tmp_path)).set_index("run")
    last = reader.metrics(run).iloc[-1]
    assert frame.loc["a-1", "population"] == last["population"]
    assert frame.loc["a-1", "specialization"] == last["specialization"]
    assert frame.loc["bad", "status"] == "unreadable" and "not a Cogitans run database" in frame.loc["bad", "problem"]


def test_column_groups_find_pool_and_shard_columns():
    names = ["population", "pool_genes", "pool_unique_l1", "pool_bytes", "pool_tier_DEAD", "pool_tier_HEALTHY",
             "pool_role_mlp", "pool_dedup_ratio", "shard_1_entries", "shard_0_entries", "shard_0_replicas_ok",
             "shard_x_entries"]
    groups = data.column_groups(names)
    assert groups["levels"] == ["pool_genes", "pool_unique_l1"]
    assert groups["tier"] == ["pool_tier_DEAD", "pool_tier_HEALTHY"] and groups["status"] == []
    assert groups["shard_entries"] == ["shard_0_entries", "shard_1_entries"]
    assert groups["shard_replicas"] == ["shard_0_replicas_ok"]
    assert data.has_pool(names) and not data.has_pool(["population"])


def test_niche_matrix_by_agent_and_lineage():
    snap = pd.DataFrame({
        "agent_id": [1, 2, 3, 4], "root_id": [0, 0, 5, 5], "fitness": [0.9, 0.1, 0.5, 0.3],
        "niche_served": [[3, 1], [0, 2], [0, 0], [4, 0]],
        "niche_quality": [[0.5, 0.1], [None, 0.3], [None, None], [0.2, None]],
    })
    agents = data.niche_matrix(snap, "agent")
    assert "1 young agents" in agents.note  # agent 3 never served
    assert list(agents.quality.index) == ["agent 4 (lineage 5)", "agent 1 (lineage 0)", "agent 2 (lineage 0)"]
    assert agents.share.loc["agent 1 (lineage 0)"].tolist() == [0.75, 0.25]
    assert np.isnan(agents.quality.loc["agent 2 (lineage 0)", "niche 0"])
    lineages = data.niche_matrix(snap, "lineage")
    row = lineages.quality.loc["lineage 0 (2 agents)"]
    assert row["niche 0"] == pytest.approx(0.5) and row["niche 1"] == pytest.approx((0.1 + 0.6) / 3)
    assert lineages.share.loc["lineage 5 (2 agents)"].tolist() == [1.0, 0.0]


def test_sweep_frame_and_summary(tmp_path):
    from tests.dashboard.stores import write_sweep

    runs = [reader.run_info(p) for p in write_sweep(tmp_path, steps=10)]
    frame = data.sweep_frame(runs, ["quality", "population"])
    assert data.varying_params(frame) == ["param mutation.sigma", "param replication.threshold"]
    first = reader.metrics(runs[0].path, ["quality"])
    assert frame["quality"].iloc[0] == pytest.approx(first["quality"].iloc[-1:].mean())  # last tenth of 10 steps
    summary = data.sweep_summary(frame, "quality", "param mutation.sigma")
    assert summary["runs"].tolist() == [2, 2]
    grid = data.sweep_summary(frame, "quality", "param mutation.sigma", "param replication.threshold")
    assert len(grid) == 4 and grid["runs"].tolist() == [1, 1, 1, 1]
