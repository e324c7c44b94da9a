"""The Sharing & faults page and its pieces: sharing columns, fault events, the run's backend."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dashboard import data, faults, figures
from experiments import reader
from experiments.reader import RunInfo
from tests.dashboard.stores import write_run

COLONY_LOST = {"kind": "colony_lost", "colony": 0, "agents": 9, "from_checkpoint": 7, "respawned_from_lineage": 2,
               "checkpoint_step": 10}
SHARD_LOST = {"kind": "shard_lost", "shard": 2, "copies_moved": 14, "replaced_by": 4}
FAULTS = {12: [COLONY_LOST], 25: [SHARD_LOST]}
STEPS = np.arange(1, 11)
SHARING = pd.DataFrame({
    "step": STEPS, "population": 20.0, "shared_entries": 6.0 * STEPS, "shared_rejected": STEPS // 5,
    "entries_voted_out": STEPS // 4, "entries_unvetted_out": STEPS // 10, "registry_size": 6.0 * STEPS,
    "shared_ratio": np.where(STEPS > 1, 8.0, 0.0), "malicious_vote_weight": 0.25,
})
SHARING_BUILDERS = {
    "shared_entries": (figures.shared_entries_figure, "entries / step"),
    "rejected": (figures.rejected_batches_figure, "batches"),
    "removed": (figures.entries_removed_figure, "entries"),
    "registry": (figures.registry_size_figure, "records"),
    "ratio": (figures.compression_ratio_figure, "ratio"),
    "malicious": (figures.malicious_weight_figure, "% of all vote weight"),
}


@pytest.fixture(scope="module")
def sharing_root(tmp_path_factory):
    """A Ray run with sharing metrics and two faults, and a serial run with neither."""
    root = tmp_path_factory.mktemp("sharing")
    write_run(root / "share-1", 30, sharing=True, faults=FAULTS, backend="ray", seed=5, snapshot_every=0)
    write_run(root / "plain-1", 20, snapshot_every=0)
    return root


def test_sharing_columns_match_what_the_swarm_writes():
    from swarm.sharing import METRICS

    assert tuple(data.SHARING_COLUMNS) == METRICS
    assert data.has_sharing(["population", "registry_size"]) and not data.has_sharing(["population", "pool_genes"])


@pytest.mark.parametrize("name", sorted(SHARING_BUILDERS))
def test_sharing_figures_with_and_without_their_columns(name):
    build, unit = SHARING_BUILDERS[name]
    fig = build(data.per_step(SHARING, ["shared_entries"]), 1)
    assert fig.layout.title.text and fig.layout.xaxis.title.text == "step"
    assert unit in fig.layout.yaxis.title.text
    assert len(fig.data) >= 1
    fig.to_json()
    empty = build(SHARING[["step", "population"]], 1)
    assert len(empty.data) == 0 and empty.layout.title.text == fig.layout.title.text


def test_sharing_figures_draw_per_step_totals_shares_and_blank_ratios():
    view = data.per_step(SHARING, ["shared_entries"])
    assert figures.shared_entries_figure(view).data[0].y.tolist() == [6.0] * 10  # 6 entries a step
    assert [t.name for t in figures.entries_removed_figure(view).data] == ["voted out", "unvetted, aged out"]
    assert figures.malicious_weight_figure(view).data[0].y[0] == pytest.approx(25.0)
    ratio = figures.compression_ratio_figure(view).data[0].y
    assert np.isnan(ratio[0]) and ratio[1] == 8.0  # nothing sent yet: blank, not a ratio of 0


def test_per_step_reads_running_totals_as_increments():
    df = pd.DataFrame({"step": [1, 2, 3], "shared_entries": [4.0, 10.0, 10.0]})
    assert data.per_step(df, ["shared_entries", "absent"])["shared_entries_per_step"].tolist() == [4.0, 6.0, 0.0]


def test_fault_table_from_events():
    events = pd.DataFrame({"step": [25, 12, 3, 12], "time": [3.0, 2.0, 1.0, 2.5],
                           "kind": ["fault", "fault", "resumed", "fault"],
                           "detail": [json.dumps(SHARD_LOST), json.dumps(COLONY_LOST),
                                      '{"checkpoint": "x"}', "not json"]})
    table = faults.fault_table(events)
    assert list(table.columns) == faults.FAULT_COLUMNS
    assert table["step"].tolist() == [12, 12, 25]
    assert table["kind"].tolist() == ["colony_lost", "unknown", "shard_lost"]
    assert table["colony or shard"].tolist() == ["colony 0", "", "shard 2"]
    assert table["agents restored"].tolist()[0] == 9 and pd.isna(table["agents restored"].iloc[2])
    assert table["copies moved"].tolist()[2] == 14 and pd.isna(table["copies moved"].iloc[0])
    assert '"replaced_by": 4' in table["detail"].iloc[2]
    assert faults.fault_table(events.iloc[0:0]).columns.tolist() == faults.FAULT_COLUMNS


def test_population_figure_marks_each_fault():
    table = faults.fault_table(pd.DataFrame({"step": [3, 7], "time": [1.0, 2.0], "kind": ["fault", "fault"],
                                             "detail": [json.dumps(COLONY_LOST),
                                                        json.dumps(SHARD_LOST)]}))
    fig = figures.population_figure(SHARING, faults=table)
    assert [s.x0 for s in fig.layout.shapes] == [3.0, 7.0]
    assert [t.name for t in fig.data] == ["living agents", "fault: colony lost", "fault: shard lost"]
    assert "9 agents restored" in fig.data[1].text[0] and "14 copies moved" in fig.data[2].text[0]
    fig.to_json()
    assert len(figures.population_figure(SHARING, faults=table.iloc[0:0]).layout.shapes) == 0


def test_backend_from_the_run_table_and_spec():
    ray = RunInfo(path=None, name="r", status="finished", backend="ray",
                  spec="backend:\n  name: ray\n  shards: 6\n  replication: 2\n")
    assert faults.backend(ray) == {"name": "ray", "shards": 6, "replication": 2}
    assert faults.backend_line(ray).startswith("Backend: ray, 6 memory shards, replication 2")
    odd = RunInfo(path=None, name="r", status="finished", spec=": [not yaml")
    assert faults.backend(odd)["name"] == "serial" and faults.backend_line(odd).startswith("Backend: serial")


def test_page_with_sharing_metrics_and_faults(app, sharing_root):
    a = app(sharing_root, run="share-1").page("sharing")
    assert a.problems() == []
    assert a.texts("title") == ["Sharing & faults"]
    assert any(t.startswith("Backend: ray, 4 memory shards, replication 3") for t in a.texts("caption"))
    titles = a.chart_titles()
    assert len(titles) == 7 and titles[-1] == "Population: living agents"
    assert "Experience shared: entries per step" in titles and "Vote weight held by malicious colonies" in titles
    df = reader.metrics(sharing_root / "share-1")
    assert a.metrics()["Entries shared"] == f"{df['shared_entries'].iloc[-1]:,.0f}"
    population = a.charts()[-1]
    assert [s["x0"] for s in population["layout"]["shapes"]] == [12.0, 25.0]
    table = a.at.dataframe[-1].value
    assert table["kind"].tolist() == ["colony_lost", "shard_lost"]
    assert table["agents restored"].tolist()[0] == 9 and table["copies moved"].tolist()[1] == 14
    assert not any("no sharing metrics" in t for t in a.texts("info"))


def test_page_without_sharing_or_faults_says_so(app, sharing_root):
    a = app(sharing_root, run="plain-1").page("sharing")
    assert a.problems() == [] and a.charts() == []
    infos = a.texts("info")
    assert any("this run has no sharing metrics (sharing.enabled is off)" in t.lower() for t in infos)
    assert any("No faults recorded" in t for t in infos)
    assert any(t.startswith("Backend: serial") for t in a.texts("caption"))


def test_runs_table_counts_faults(app, sharing_root):
    table = app(sharing_root).at.dataframe[0].value.set_index("run")
    assert table.loc["share-1", "faults"] == 2 and table.loc["plain-1", "faults"] == 0


def test_population_page_marks_faults_of_a_ray_run(app, sharing_root):
    ray_run = app(sharing_root, run="share-1").page("population")
    assert ray_run.problems() == []
    population = next(c for c in ray_run.charts() if c["layout"]["title"]["text"] == "Population: living agents")
    assert [s["x0"] for s in population["layout"]["shapes"]] == [12.0, 25.0]
    assert {t["name"] for t in population["data"]} >= {"fault: colony lost", "fault: shard lost"}
    plain = app(sharing_root, run="plain-1").page("population")
    population = next(c for c in plain.charts() if c["layout"]["title"]["text"] == "Population: living agents")
    assert not population["layout"].get("shapes") and [t["name"] for t in population["data"]] == ["living agents"]
