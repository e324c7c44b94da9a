"""Specialisation page: do agents split the query niches between them?"""

from __future__ import annotations

import streamlit as st

from dashboard import data, figures, ui
from experiments import reader
from experiments.reader import RunInfo

ABOUT = ("Queries come from a few niches (clusters of related questions). A swarm specialises when "
         "each agent, or each family of agents, answers mostly one niche. The heatmap shows, for each "
         "living agent in a snapshot, which niches its queries came from, or how well it answered them.")
LATEST = "latest"


def render() -> None:
    ui.header("Specialisation", ABOUT)
    info = ui.current_run()
    if info is not None:
        ui.live([info.path], _body, key="specialisation")


def _body(runs: list[RunInfo]) -> None:
    info = runs[0]
    ui.status_line(info)
    df = ui.metrics(info, data.SPECIALISATION_COLUMNS)
    if df.empty:
        st.info(ui.NO_STEPS)
        return
    if "specialization" in df:
        view, bucket = data.downsample(df)
        ui.chart(figures.specialization_figure(view, bucket), "specialization_fig")
    steps = reader.snapshot_steps(info.path)
    if not steps:
        st.info("No snapshot of the living agents yet: the run writes one every `run.snapshot_every` steps.")
        return
    left, middle, right = st.columns(3)
    picked = left.selectbox("Snapshot", [LATEST, *reversed(steps)], key="spec_snapshot",
                            format_func=lambda s: f"latest (step {steps[-1]:,})" if s == LATEST else f"step {s:,}")
    by = middle.radio("Rows", ["agent", "lineage"], key="spec_rows", horizontal=True,
                      format_func=lambda b: "agents" if b == "agent" else "founder lineages")
    colour = right.radio("Colour", ["share", "quality"], key="spec_colour", horizontal=True,
                         format_func=lambda c: "share of its queries" if c == "share" else "answer quality")
    snap = reader.snapshot(info.path, steps[-1] if picked == LATEST else int(picked))
    niches = data.niche_matrix(snap, by=by)
    if niches.quality.empty:
        st.info("No agent in this snapshot has answered a query yet.")
        return
    if niches.note:
        st.caption(niches.note)
    rows = "agents" if by == "agent" else "founder lineages"
    fig = (figures.niche_share_heatmap(niches.share, rows) if colour == "share"
           else figures.niche_heatmap(niches.quality, rows))
    ui.chart(fig, "niche_fig")
    with st.expander("Data: per-niche share of queries and mean reward"):
        table = niches.share.add_prefix("share ").join(niches.quality.add_prefix("reward ")).reset_index(names=by)
        ui.table(table, f"{info.path.name}-niches-{by}", "niches", height=300)


if __name__ == "__main__":
    render()
