"""Compare & sweeps page: several runs on one chart; a sweep's final metrics against its parameters."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import data, figures, ui
from experiments import reader
from experiments.reader import RunInfo

ABOUT = ("Put the same metric of several runs on one chart, or look at a parameter sweep: each run's "
         "final value (mean over its last tenth of steps) against the parameters it was run with.")
DEFAULT_METRIC = "quality"


def render() -> None:
    ui.header("Compare & sweeps", ABOUT)
    runs = [r for r in ui.list_runs() if r.status != "unreadable"]
    if not runs:
        ui.no_runs_message()
        return
    labels = {str(r.path): data.run_label(r) for r in runs}
    st.session_state["compare"] = [p for p in st.session_state.get("compare", []) if p in labels]
    if not st.session_state["compare"]:
        st.session_state["compare"] = list(labels)[:3]
    chosen = st.multiselect("Runs to compare", list(labels), key="compare", format_func=lambda p: labels[p])
    if chosen:
        ui.live([Path(p) for p in chosen], _compare, key="compare")
    else:
        st.info("Pick one or more runs above.")
    st.header("Sweeps")
    sweeps = sorted({r.sweep_id for r in runs if r.sweep_id})
    if not sweeps:
        st.info("No sweeps under this root. Runs started by a sweep carry a sweep id and their "
                "parameters, and are compared here.")
        return
    sweep = st.selectbox("Sweep", sweeps, key="sweep")
    members = [r.path for r in runs if r.sweep_id == sweep]
    ui.live(members, _sweep, key="sweep")


def _compare(runs: list[RunInfo]) -> None:
    names = sorted({n for r in runs for n in _names(r)})
    if not names:
        st.info(ui.NO_STEPS)
        return
    default = DEFAULT_METRIC if DEFAULT_METRIC in names else names[0]
    metric = st.selectbox("Metric", names, index=names.index(default), key="compare_metric",
                          format_func=figures.metric_label)
    frames = {}
    for info in runs:
        df = ui.metrics(info, [metric])
        if len(df) and metric in df:
            frames[info.path.name] = data.downsample(df)[0]
    if not frames:
        st.info("None of the chosen runs has recorded this metric yet.")
        return
    ui.chart(figures.compare_figure(frames, metric), "compare_fig")
    finals = data.sweep_frame(runs, [metric])
    st.caption(f"`{metric}`: final value, the mean over the last tenth of each run's steps.")
    ui.table(finals, "compare-final", "compare_final")


def _names(info: RunInfo) -> list[str]:
    try:
        return reader.metric_names(info.path) if info.status != "unreadable" else []
    except reader.StoreError:
        return []


def _sweep(runs: list[RunInfo]) -> None:
    names = sorted({n for r in runs for n in _names(r)})
    if not names:
        st.info(ui.NO_STEPS)
        return
    default = DEFAULT_METRIC if DEFAULT_METRIC in names else names[0]
    metric = st.selectbox("Final metric", names, index=names.index(default), key="sweep_metric",
                          format_func=figures.metric_label)
    frame = data.sweep_frame(runs, [metric])
    params = data.varying_params(frame)
    done = sum(r.status == "finished" for r in runs)
    swept = ", ".join(p.removeprefix("param ") for p in params) or "nothing"
    st.caption(f"{len(runs)} runs ({done} finished); swept: {swept}.")
    if metric not in frame or frame[metric].isna().all():
        st.info("No run of this sweep has recorded this metric yet.")
    elif not params:
        st.info("The runs of this sweep do not differ in any parameter; see the table below.")
    else:
        short = lambda p: p.removeprefix("param ")  # noqa: E731
        left, right = st.columns(2)
        x = left.selectbox("Parameter (x)", params, key="sweep_x", format_func=short)
        others = [p for p in params if p != x]
        y = right.selectbox("Second parameter (heatmap)", ["none", *others], key="sweep_y",
                            index=1 if others else 0, format_func=lambda p: p if p == "none" else short(p))
        if y == "none":
            summary = data.sweep_summary(frame, metric, x)
            ui.chart(figures.sweep_line_figure(summary, x, metric), "sweep_fig")
        else:
            summary = data.sweep_summary(frame, metric, x, y)
            ui.chart(figures.sweep_heatmap_figure(summary, x, y, metric), "sweep_fig")
        if len(params) > (1 if y == "none" else 2):
            st.caption("Values are averaged over the other swept parameters and seeds.")
    st.caption(f"`{metric}`: final value, the mean over the last tenth of each run's steps.")
    ui.table(frame, "sweep-runs", "sweep_runs")


if __name__ == "__main__":
    render()
