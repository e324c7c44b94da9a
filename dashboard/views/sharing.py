"""Sharing & faults page: experience shared between colonies, and faults of runs on Ray."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import data, faults, figures, ui
from experiments import reader
from experiments.reader import RunInfo

ABOUT = ("With `sharing.enabled`, colonies send each other signed, BitDelta-compressed batches of good "
         "answers. Other colonies vote on what they receive: entries voted down, or never vetted, are "
         "removed; accepted entries are logged in a Merkle-tree registry. On Ray, a lost colony comes back "
         "from its last checkpoint and a lost memory shard is replaced; each such fault is listed here.")
#: (columns it draws, figure, chart key): drawn when any of its columns exists, in two columns in this order.
SHARING_FIGURES: list[tuple[tuple[str, ...], Callable[[pd.DataFrame, int], go.Figure], str]] = [
    (("shared_entries",), figures.shared_entries_figure, "shared_entries_fig"),
    (("shared_rejected",), figures.rejected_batches_figure, "shared_rejected_fig"),
    (("entries_voted_out", "entries_unvetted_out"), figures.entries_removed_figure, "entries_removed_fig"),
    (("registry_size",), figures.registry_size_figure, "registry_size_fig"),
    (("shared_ratio",), figures.compression_ratio_figure, "shared_ratio_fig"),
    (("malicious_vote_weight",), figures.malicious_weight_figure, "malicious_weight_fig"),
]


def render() -> None:
    ui.header("Sharing & faults", ABOUT)
    info = ui.current_run()
    if info is not None:
        ui.live([info.path], _body, key="sharing")


def _body(runs: list[RunInfo]) -> None:
    info = runs[0]
    ui.status_line(info)
    st.caption(faults.backend_line(info))
    names = reader.metric_names(info.path)
    columns = ["population"] + [c for c in data.SHARING_COLUMNS if c in names]
    df = ui.metrics(info, columns)
    if df.empty:
        st.info(ui.NO_STEPS)
        return
    view, bucket = data.downsample(data.per_step(df, ["shared_entries"]))
    st.subheader("Experience sharing")
    if not data.has_sharing(names):
        st.info("This run has no sharing metrics (sharing.enabled is off). Runs with `sharing.enabled: true` "
                "record what colonies share, reject and vote out; this page fills in for them.")
    else:
        _sharing(info, df, view, bucket)
    st.subheader("Faults")
    _faults(info, view, bucket)


def _sharing(info: RunInfo, df: pd.DataFrame, view: pd.DataFrame, bucket: int) -> None:
    last = df.ffill().iloc[-1]  # sharing columns are empty for steps before sharing reported
    shown = {"shared_entries": ("Entries shared", "{:,.0f}", 1), "shared_rejected": ("Batches rejected", "{:,.0f}", 1),
             "registry_size": ("Registry records", "{:,.0f}", 1), "shared_ratio": ("Compression", "{:.1f} x", 1),
             "malicious_vote_weight": ("Malicious vote weight", "{:.1f} %", 100)}
    items = [(label, fmt.format(scale * last[c])) for c, (label, fmt, scale) in shown.items()
             if c in last and pd.notna(last[c])]
    for col, (label, value) in zip(st.columns(max(1, len(items))), items):
        col.metric(label, value)
    drawn = [(build, key) for cols, build, key in SHARING_FIGURES if any(c in df for c in cols)]
    left, right = st.columns(2)
    for i, (build, key) in enumerate(drawn):
        with left if i % 2 == 0 else right:
            ui.chart(build(view, bucket), key)
    missing = [c for c in data.SHARING_COLUMNS if c not in df]
    if missing:
        st.caption("Not reported by this run: " + ", ".join(f"`{c}`" for c in missing) + ".")
    with st.expander("Data: sharing metrics per step"):
        ui.table(df, f"{info.path.name}-sharing", "sharing", height=300, show=df.tail(500))


def _faults(info: RunInfo, view: pd.DataFrame, bucket: int) -> None:
    table = faults.fault_table(reader.events(info.path))
    if table.empty:
        st.info("No faults recorded for this run. Runs on Ray (`cogitans run ... --ray`) record every lost "
                "colony or memory shard here; a serial run has none.")
        return
    kinds = table["kind"].value_counts()
    st.caption(f"{len(table)} faults: " + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in kinds.items())
               + ". Dashed lines mark them on the population.")
    ui.chart(figures.population_figure(view, bucket, faults=table), "fault_population_fig")
    ui.table(table, f"{info.path.name}-faults", "faults")


if __name__ == "__main__":
    render()
