"""Runs page: every run under the root with its status, progress and headline numbers."""

from __future__ import annotations

import streamlit as st

from dashboard import data, ui
from experiments import reader
from experiments.reader import RunInfo

ABOUT = ("Every simulation run found under the runs root, newest first. Pick the run the other pages "
         "show in the sidebar; pick several below to compare them on the Compare & sweeps page.")


def render() -> None:
    ui.header("Runs", ABOUT)
    runs = ui.list_runs()
    if not runs:
        ui.no_runs_message()
        return
    with ui.guard("the runs table"):
        ui.live([r.path for r in runs], _table, key="runs")
    readable = [r for r in runs if r.status != "unreadable"]
    labels = {str(r.path): data.run_label(r) for r in readable}
    st.session_state["compare"] = [p for p in st.session_state.get("compare", []) if p in labels]
    st.multiselect("Runs to compare", list(labels), key="compare", format_func=lambda p: labels.get(p, p),
                   help="Shown together on the Compare & sweeps page.")
    current = next((r for r in readable if str(r.path) == st.session_state.get("run")), None)
    if current is not None:
        _details(current)


def _table(runs: list[RunInfo]) -> None:
    frame = data.runs_frame(runs)
    counts = frame["status"].value_counts()
    cols = st.columns(5)
    for col, status in zip(cols, ["running", "finished", "interrupted", "failed", "unreadable"]):
        col.metric(status.capitalize(), int(counts.get(status, 0)))
    shown = frame.drop(columns=["name"]).rename(columns={
        "population": "agents", "quality": "answer quality", "specialization": "specialisation"})
    st.dataframe(shown, hide_index=True, key="runs_table", column_config={
        "steps": st.column_config.NumberColumn("steps done", format="%d"),
        "of": st.column_config.NumberColumn("of", format="%d"),
        "faults": st.column_config.NumberColumn("faults", format="%d",
                                                help="Lost colonies and memory shards (runs on Ray); see Sharing & faults."),
        "agents": st.column_config.NumberColumn("agents (now)", format="%d"),
        "answer quality": st.column_config.NumberColumn("answer quality (cosine)", format="%.3f"),
        "accuracy": st.column_config.NumberColumn("accuracy (share)", format="%.3f"),
        "specialisation": st.column_config.NumberColumn("specialisation (0-1)", format="%.3f"),
        "lineages": st.column_config.NumberColumn("lineages alive", format="%d"),
    })
    ui.csv_button(frame, "runs", "runs")
    for info in runs:
        if info.status == "unreadable":
            st.warning(f"`{info.path}` is not a readable run: {info.error}")


def _details(info: RunInfo) -> None:
    st.subheader(f"Selected run: {info.path.name}")
    st.caption(f"Seed {info.seed}, backend {info.backend or 'serial'}, folder `{info.path}`"
               + (f", sweep `{info.sweep_id}` with {info.params}" if info.sweep_id else ""))
    if info.error:
        st.error(f"The run stopped with an error: {info.error}")
    with st.expander("Experiment spec (YAML)"):
        st.code(info.spec or "# no spec stored", language="yaml")
    with ui.guard("the run's events"):
        events = reader.events(info.path)
        if events.empty:
            st.caption("No events (resumes, faults, interruptions) recorded for this run.")
        else:
            st.markdown("**Events** (resumes, faults, interruptions)")
            events["time"] = events["time"].map(data.when)
            ui.table(events, f"{info.path.name}-events", "events")


if __name__ == "__main__":
    render()
