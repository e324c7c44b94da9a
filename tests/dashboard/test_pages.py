"""Every page of the app, run with Streamlit's AppTest against run stores the tests write."""

from __future__ import annotations

import pytest

from experiments import reader
from tests.dashboard.stores import open_run, write_run


def test_runs_page_lists_every_run_with_status_and_headline(app, runs_root):
    a = app(runs_root)
    assert a.texts("title") == ["Runs"]
    assert a.problems() == []
    table = a.at.dataframe[0].value
    assert sorted(table["run"]) == sorted(["plain-1", "pool-1", "swp-00", "swp-01", "swp-10", "swp-11"])
    plain = table.set_index("run").loc["plain-1"]
    assert plain["status"] == "finished" and plain["steps"] == 40
    assert plain["agents"] == reader.metrics(runs_root / "plain-1", ["population"])["population"].iloc[-1]
    assert a.metrics()["Finished"] == "6"
    assert "Download CSV" in a.downloads()
    assert len(a.at.multiselect[0].options) == 6  # pick several runs to compare
    assert "Experiment spec (YAML)" in [e.label for e in a.at.expander]


def test_sidebar_picks_a_run_and_the_address_can_name_one(app, runs_root):
    a = app(runs_root, run="plain-1")
    assert a.at.session_state["run"] == str(runs_root / "plain-1")
    a.at.sidebar.selectbox[0].select(str(runs_root / "pool-1")).run()
    a.page("population")
    assert any("pool-1" in t for t in a.texts("caption"))


def test_population_page_draws_its_figures_and_numbers(app, runs_root):
    a = app(runs_root, run="plain-1").page("population")
    assert a.problems() == []
    assert a.chart_titles() == [
        "Population: living agents", "Fitness of the agents (spread over the population)",
        "Accuracy and thumbs up", "Births and deaths per step",
        "Answer quality: how close answers are to the right one", "Simulation speed",
    ]
    df = reader.metrics(runs_root / "plain-1")
    population = a.charts()[0]["data"][0]
    assert population["x"] == df["step"].tolist() and population["y"] == df["population"].tolist()
    numbers = a.metrics()
    assert numbers["Step"] == "40"
    assert numbers["Living agents"] == f"{int(df['population'].iloc[-1]):,}"
    assert numbers["Accuracy"] == f"{100 * df['accuracy'].tail(2).mean():.1f} %"  # 40 steps: mean of the last 2
    assert "Download CSV" in a.downloads()


def test_specialisation_page_heatmap_by_agent_and_lineage(app, runs_root):
    a = app(runs_root, run="plain-1").page("specialisation")
    assert a.problems() == []
    titles = a.chart_titles()
    assert titles[0].startswith("Specialisation index")
    assert titles[1] == "Workload: share of each agent's queries per niche"
    assert a.at.selectbox(key="spec_snapshot").options[0] == "latest (step 40)"
    a.at.radio(key="spec_rows").set_value("lineage")
    a.at.radio(key="spec_colour").set_value("quality")
    a.rerun()
    heat = a.charts()[1]
    assert heat["layout"]["title"]["text"].startswith("Answer quality: founder lineages x niches")
    assert all(label.startswith("lineage ") for label in heat["data"][0]["y"])
    assert a.problems() == []


def test_lineages_page_muller_tree_and_table(app, runs_root):
    a = app(runs_root, run="plain-1").page("lineages")
    assert a.problems() == []
    titles = a.chart_titles()
    assert titles[0] == "Who holds the population: share of each founder lineage"
    assert titles[1] == "Founder lineages still alive"
    assert titles[2].startswith("Family tree of the living agents")
    muller = a.charts()[0]["data"]
    last = sum(trace["y"][-1] for trace in muller)
    assert last == pytest.approx(100.0)
    assert "Download every agent ever (CSV)" in a.downloads()
    table = a.at.dataframe[0].value
    living = reader.lineage(runs_root / "plain-1")["death_step"].isna().sum()
    assert table["living"].sum() == living


def test_memory_page_without_and_with_shards(app, runs_root):
    a = app(runs_root, run="plain-1").page("memory")
    assert a.problems() == []
    assert a.chart_titles() == ["Shared memory: entries stored", "Memory evictions per step",
                                "Memory hit rate and routing"]
    assert any("No per-shard data in this run" in t for t in a.texts("info"))
    b = app(runs_root, run="pool-1").page("memory")
    assert b.problems() == []
    assert "Memory entries per shard" in b.chart_titles() and "Healthy replicas per shard" in b.chart_titles()
    shards = b.at.dataframe[0].value
    assert shards["shard"].tolist() == [0, 1]


def test_gene_pool_page_says_when_there_is_no_pool_data(app, runs_root):
    a = app(runs_root, run="plain-1").page("gene_pool")
    assert a.problems() == []
    assert a.charts() == []
    assert any("no gene-pool data yet" in t for t in a.texts("info"))


def test_gene_pool_page_with_pool_columns(app, runs_root):
    a = app(runs_root, run="pool-1").page("gene_pool")
    assert a.problems() == []
    assert a.chart_titles() == ["Genes left after each dedup level", "Dedup ratio (bytes without dedup / stored)",
                                "Gene-pool size on disk", "Genes by quality tier", "Genes by role",
                                "Genes by status"]
    last = reader.metrics(runs_root / "pool-1").iloc[-1]
    assert a.metrics()["Genes"] == f"{last['pool_genes']:,.0f}"
    tiers = a.charts()[3]["data"]
    assert [t["name"] for t in tiers] == ["PRISTINE", "HEALTHY", "DEGRADED", "DEAD"]
    assert a.downloads().count("Download CSV") == 4  # tier, role, status tables and the data table


def test_compare_page_runs_on_one_chart_and_a_sweep_heatmap(app, runs_root):
    a = app(runs_root)
    a.at.session_state["compare"] = [str(runs_root / "plain-1"), str(runs_root / "pool-1")]
    a.page("compare")
    assert a.problems() == []
    charts = a.charts()
    assert charts[0]["layout"]["title"]["text"] == "Consensus answer quality across runs"
    assert sorted(t["name"] for t in charts[0]["data"]) == ["plain-1", "pool-1"]
    heat = charts[1]["data"][0]
    assert heat["type"] == "heatmap" and heat["x"] == ["0.01", "0.02"] and heat["y"] == ["10", "20"]
    sweep = a.at.dataframe[1].value
    assert len(sweep) == 4 and {"param mutation.sigma", "param replication.threshold"} <= set(sweep.columns)
    a.at.selectbox(key="sweep_y").set_value("none").run()
    line = a.charts()[1]
    assert line["data"][0]["type"] == "scatter" and line["data"][0]["x"] == [0.01, 0.02]
    assert a.problems() == []


def test_live_run_updates_then_stops(app, tmp_path):
    """A running run is drawn live; the next run of the page shows the new steps; a finished
    run is shown as finished (and no longer refreshes)."""
    run_dir = tmp_path / "live-1"
    store = open_run(run_dir, steps_total=100)
    store.write_step(0, {}, births=[(0, -1, 0, 0), (1, -1, 1, 0)])
    for step in range(1, 6):
        store.write_step(step, {"population": 2.0 + step, "births": 1.0, "deaths": 0.0})
    a = app(tmp_path).page("population")
    assert a.problems() == []
    assert any("running, step 5 of 100 (updating live)" in t for t in a.texts("caption"))
    assert a.metrics()["Living agents"] == "7"
    for step in range(6, 11):
        store.write_step(step, {"population": 2.0 + step, "births": 1.0, "deaths": 0.0})
    a.rerun()
    assert a.metrics()["Living agents"] == "12" and a.metrics()["Step"] == "10"
    store.set_status("finished")
    store.close()
    a.rerun()
    assert any("finished, step 10 of 100" in t for t in a.texts("caption"))
    assert not any("updating live" in t for t in a.texts("caption"))


def test_every_page_handles_a_failed_run(app, tmp_path):
    write_run(tmp_path / "fail-1", 12, status="failed")
    a = app(tmp_path)
    for page in ["population", "specialisation", "lineages", "memory", "gene_pool", "sharing", "compare"]:
        a.page(page)
        assert a.at.exception == [], page
        if page != "compare":
            assert any("RuntimeError: boom" in e for e in a.texts("error")), page


def test_live_refresh_can_be_switched_off(app, tmp_path):
    store = open_run(tmp_path / "live-2", steps_total=50)
    store.write_step(1, {"population": 3.0})
    a = app(tmp_path)
    a.at.sidebar.toggle(key="live").set_value(False).run()
    a.page("population")
    assert any("(live refresh off)" in t for t in a.texts("caption"))
    store.close()
