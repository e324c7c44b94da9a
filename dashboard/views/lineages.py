"""Lineages page: which founder families hold the population over time, and the family tree."""

from __future__ import annotations

import streamlit as st

from dashboard import data, figures, phylogeny, ui
from experiments import reader
from experiments.reader import RunInfo

ABOUT = ("Every agent descends from one of the founders placed at step 0; its founder's number is its "
         "lineage. Selection shows up as a few lineages taking over the population while the others "
         "die out.")


def render() -> None:
    ui.header("Lineages", ABOUT)
    info = ui.current_run()
    if info is not None:
        ui.live([info.path], _body, key="lineages")


def _body(runs: list[RunInfo]) -> None:
    info = runs[0]
    ui.status_line(info)
    lineage = reader.lineage(info.path)
    if lineage.empty:
        st.info("No agents recorded yet. The lineage table fills in as the run starts.")
        return
    end = max(info.steps_done, int(lineage["birth_step"].max()))
    top = st.slider("Lineages drawn on their own", 3, len(figures.PALETTE), 8, key="lineage_top",
                    help="The largest lineages (agents summed over time); the rest are grey.")
    shares = phylogeny.lineage_shares(lineage, end, top=top)
    colors = figures.lineage_colors(list(shares.columns))
    ui.chart(figures.muller_figure(shares, colors), "muller_fig")
    df = ui.metrics(info, ["lineages"])
    if "lineages" in df and len(df):
        view, bucket = data.downsample(df)
        ui.chart(figures.lines(view, [("lineages", "founder lineages alive")], "Founder lineages still alive",
                               "lineages", bucket), "lineages_fig")
    tree = phylogeny.living_tree(lineage, end)
    if tree.living == 0:
        st.info("No agent is alive at the last recorded step, so there is no family tree to draw.")
    else:
        ui.chart(figures.phylogeny_figure(tree, colors), "phylogeny_fig")
    st.markdown("**Founder lineages**")
    ui.table(phylogeny.lineage_table(lineage), f"{info.path.name}-lineages", "lineage_summary", height=260)
    ui.csv_button(lineage, f"{info.path.name}-every-agent", "lineage_all",
                  label="Download every agent ever (CSV)")


if __name__ == "__main__":
    render()
