"""Gene pool page: how many genes the run holds, how far dedup shrinks them, and their make-up."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import data, figures, ui
from experiments import reader
from experiments.reader import RunInfo

ABOUT = ("Agents' weights are stored as genes in a shared pool. Dedup finds genes that are the same at "
         "four levels: L1 identical bytes, L2 the same after a canonical re-encoding, L3 the same "
         "behaviour on probe inputs, L4 near-duplicates (MinHash, then verified).")
BREAKDOWNS = [
    ("tier", "Genes by quality tier", "Quality score out of 100: PRISTINE > 90, HEALTHY 70-90, DEGRADED 50-70, "
     "DEAD < 50."),
    ("role", "Genes by role", "What part of a network a gene is: attention (Q, K, V, O), MLP (gate, up, down), "
     "embedding, norm, head."),
    ("status", "Genes by status", "A gene's life cycle: ACTIVE -> OPTIMIZED -> DEPRECATED -> ARCHIVED."),
]


def render() -> None:
    ui.header("Gene pool", ABOUT)
    info = ui.current_run()
    if info is not None:
        ui.live([info.path], _body, key="gene_pool")


def _body(runs: list[RunInfo]) -> None:
    info = runs[0]
    ui.status_line(info)
    names = reader.metric_names(info.path)
    if not data.has_pool(names):
        st.info("This run has no gene-pool data yet. Gene-pool statistics (metric columns `pool_*`) are "
                "recorded by runs that keep their agents' weights in the gene pool; this page fills in "
                "as soon as such a run reports them.")
        return
    groups = data.column_groups(names)
    columns = [c for c in names if c.startswith("pool_")]
    df = ui.metrics(info, columns)
    if df.empty:
        st.info(ui.NO_STEPS)
        return
    last = df.ffill().iloc[-1]  # pool columns are empty for steps before the pool reported
    _numbers(last)
    view, bucket = data.downsample(df)
    left, right = st.columns(2)
    with left:
        if groups["levels"]:
            ui.chart(figures.pool_levels_figure(view, bucket), "pool_levels_fig")
        if groups["ratio"]:
            ui.chart(figures.dedup_ratio_figure(view, bucket), "pool_ratio_fig")
    with right:
        if groups["bytes"]:
            ui.chart(figures.pool_bytes_figure(view, bucket), "pool_bytes_fig")
    for group, title, legend in BREAKDOWNS:
        cols = groups[group]
        if not cols:
            st.caption(f"{title}: not reported by this run.")
            continue
        prefix = f"pool_{group}_"
        cols = figures.category_order(cols, prefix)
        chart_col, table_col = st.columns([2, 1])
        with chart_col:
            ui.chart(figures.breakdown_figure(view, cols, prefix, title, "genes", bucket), f"pool_{group}_fig")
            st.caption(legend)
        with table_col:
            latest = pd.DataFrame({group: [c.removeprefix(prefix) for c in cols],
                                   "genes": [last[c] for c in cols]})
            st.caption(f"At step {int(df['step'].iloc[-1]):,}:")
            ui.table(latest, f"{info.path.name}-pool-{group}", f"pool_{group}")
    with st.expander("Data: gene-pool metrics per step"):
        ui.table(df, f"{info.path.name}-gene-pool", "pool", height=300, show=df.tail(500))


def _numbers(last: pd.Series) -> None:
    shown = {"pool_genes": ("Genes", "{:,.0f}"), "pool_unique_l4": ("Unique after L4", "{:,.0f}"),
             "pool_bytes": ("Stored", "{:,.1f} MB"), "pool_dedup_ratio": ("Dedup ratio", "{:.2f} x")}
    items = []
    for col, (label, fmt) in shown.items():
        if col in last and pd.notna(last[col]):
            items.append((label, fmt.format(last[col] / 1e6 if col == "pool_bytes" else last[col])))
    for col, (label, value) in zip(st.columns(max(1, len(items))), items):
        col.metric(label, value)


if __name__ == "__main__":
    render()
