"""Memory page: the shared answer memory, and per-shard health when the run is on Ray."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import data, figures, ui
from experiments import reader
from experiments.reader import RunInfo

ABOUT = ("Agents store good answers in a shared memory indexed by hashes of the query. A new query "
         "looks up similar past queries first (a hit), and some of its agent slots are routed to the "
         "agents that wrote those answers. Full memory evicts its oldest, least useful entries.")


def render() -> None:
    ui.header("Memory", ABOUT)
    info = ui.current_run()
    if info is not None:
        ui.live([info.path], _body, key="memory")


def _body(runs: list[RunInfo]) -> None:
    info = runs[0]
    ui.status_line(info)
    groups = data.column_groups(reader.metric_names(info.path))
    shards = groups["shard_entries"] + groups["shard_replicas"]
    df = ui.metrics(info, data.MEMORY_COLUMNS + shards)
    if df.empty:
        st.info(ui.NO_STEPS)
        return
    if "memory_evictions" in df:
        df = df.assign(evictions_per_step=df["memory_evictions"].diff().fillna(df["memory_evictions"]).clip(lower=0))
    last = df.ffill().iloc[-1]
    cols = st.columns(3)
    if "memory_entries" in df:
        cols[0].metric("Entries stored", f"{int(last['memory_entries']):,}")
    if "memory_hit_rate" in df:
        cols[1].metric("Hit rate", f"{100 * last['memory_hit_rate']:.1f} %",
                       help="Queries with a memory hit, last step.")
    if "memory_evictions" in df:
        cols[2].metric("Evicted so far", f"{int(last['memory_evictions']):,}")
    view, bucket = data.downsample(df)
    left, right = st.columns(2)
    with left:
        ui.chart(figures.memory_entries_figure(view, bucket), "memory_entries_fig")
        ui.chart(figures.evictions_figure(view, bucket), "evictions_fig")
    with right:
        ui.chart(figures.memory_rates_figure(view, bucket), "memory_rates_fig")
    st.subheader("Shards (Ray)")
    if not shards:
        st.info(f"No per-shard data in this run (backend: {info.backend or 'serial'}). Shard entries and "
                "replication health appear here for runs on Ray (`cogitans run ... --ray`).")
    else:
        left, right = st.columns(2)
        with left:
            ui.chart(figures.shard_figure(view, groups["shard_entries"], "Memory entries per shard", "entries",
                                          bucket), "shard_entries_fig")
        with right:
            ui.chart(figures.shard_figure(view, groups["shard_replicas"], "Healthy replicas per shard",
                                          "replicas", bucket), "shard_replicas_fig")
        ids = sorted({int(c.split("_")[1]) for c in shards})
        latest = pd.DataFrame({
            "shard": ids,
            "entries": [last.get(f"shard_{i}_entries") for i in ids],
            "healthy replicas": [last.get(f"shard_{i}_replicas_ok") for i in ids],
        })
        st.caption(f"At step {int(last['step']):,}:")
        ui.table(latest, f"{info.path.name}-shards", "shards")
    with st.expander("Data: memory metrics per step"):
        ui.table(df, f"{info.path.name}-memory", "memory", height=300, show=df.tail(500))


if __name__ == "__main__":
    render()
