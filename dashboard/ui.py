"""Streamlit pieces shared by the pages: runs root, run picker, live refresh, tables, error guard.

Only the app and its pages import this module (it imports Streamlit).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import data
from dashboard.launch import ROOT_ENV
from experiments.reader import RunInfo, StoreError

REFRESH_SECONDS = 3.0  # live pages
WATCH_SECONDS = 3.0  # looking for new run directories
NO_STEPS = "No steps recorded yet. This page fills in by itself as the run advances."


def runs_root() -> Path:
    return Path(os.environ.get(ROOT_ENV, "runs")).expanduser()


def list_runs() -> list[RunInfo]:
    try:
        return data.list_runs(runs_root())
    except (OSError, StoreError) as err:
        st.error(f"Cannot list the runs under {runs_root()}: {err}")
        return []


def sidebar(runs: list[RunInfo]) -> None:
    """Root, the current-run picker (key `run`, or `?run=<folder>` in the address) and the
    live-refresh switch (key `live`)."""
    with st.sidebar:
        st.caption(f"Runs root: `{runs_root()}`")
        if runs:
            options = [str(r.path) for r in runs]
            labels = {str(r.path): data.run_label(r) for r in runs}
            wanted = st.query_params.get("run")  # ?run=<folder> links to a run
            if wanted and st.session_state.get("_run_param") != wanted:
                st.session_state["_run_param"] = wanted
                match = [o for o in options if Path(o).name == wanted or o == wanted]
                if match:
                    st.session_state["run"] = match[0]
            if st.session_state.get("run") not in options:
                running = [str(r.path) for r in runs if r.status == "running"]
                st.session_state["run"] = (running or options)[0]
            st.selectbox("Run", options, key="run", format_func=lambda p: labels.get(p, Path(p).name),
                         help="The run the Population, Specialisation, Lineages, Memory, Gene pool and Sharing & faults pages show.")
        st.session_state.setdefault("live", True)
        st.toggle("Live refresh", key="live",
                  help=f"While the run is running, its pages redraw every {REFRESH_SECONDS:g} s.")


def watch_for_new_runs(runs: list[RunInfo]) -> None:
    """While live refresh is on, look for new run directories every few seconds and redraw the
    whole app when one appears (a run started after the page was opened shows up by itself)."""
    if not st.session_state.get("live", True):
        return
    known = sorted(str(r.path) for r in runs)

    @st.fragment(run_every=WATCH_SECONDS)
    def _watch() -> None:
        if sorted(str(p) for p in data.run_dirs(runs_root())) != known:
            st.rerun()

    with st.sidebar:
        _watch()


def keep_state(*keys: str) -> None:
    """Keep widget values across page switches (Streamlit drops a widget's state when a page
    that does not draw it runs)."""
    for key in keys:
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


def header(title: str, about: str) -> None:
    st.title(title)
    st.caption(about)


def current_run() -> RunInfo | None:
    """The run picked in the sidebar, or None after saying why there is none."""
    path = st.session_state.get("run")
    if not path:
        no_runs_message()
        return None
    info = data.run_info(Path(path))
    if info.status == "unreadable":
        st.warning(f"Run `{Path(path).name}` cannot be read: {info.error}")
        return None
    return info


def no_runs_message() -> None:
    root = runs_root()
    where = "does not exist yet" if not root.exists() else "has no runs yet"
    st.info(f"The runs root `{root}` {where}. Start a run with "
            f"`cogitans run experiments/configs/smoke.yaml --out {root}`; it appears here by itself.")


def status_line(info: RunInfo) -> None:
    total = f" of {info.steps_total:,}" if info.steps_total else ""
    text = f"**{info.path.name}**: {info.status}, step {info.steps_done:,}{total}"
    if info.status == "running":
        st.caption(text + (" (updating live)" if st.session_state.get("live", True) else " (live refresh off)"))
    elif info.status == "failed":
        st.error(text + f". Error: {info.error or 'unknown'}")
    else:
        st.caption(text)


@contextmanager
def guard(what: str) -> Iterator[None]:
    """A clear message instead of a traceback when a run cannot be read or shaped."""
    try:
        yield
    except StoreError as err:
        st.warning(f"Cannot read {what}: {err}")
    except Exception as err:  # a dashboard shows the problem and keeps running
        st.error(f"Cannot draw {what}: {type(err).__name__}: {err}")


def live(paths: list[Path], body: Callable[[list[RunInfo]], None], key: str) -> None:
    """Draw `body(fresh run infos)` in a fragment that redraws itself every few seconds while any
    of the runs is running; when the last one stops, one full rerun draws it without a timer."""
    first = [data.run_info(p) for p in paths]
    running = any(i.status == "running" for i in first) and st.session_state.get("live", True)

    @st.fragment(run_every=REFRESH_SECONDS if running else None)
    def _fragment() -> None:
        fresh = [data.run_info(p) for p in paths]
        if running and not any(i.status == "running" for i in fresh):
            st.rerun()
        with guard(f"page {key}"):
            body(fresh)

    _fragment()


def metrics(info: RunInfo, columns: list[str] | None) -> pd.DataFrame:
    """A run's metrics, read incrementally across refreshes (one follower per run and column set)."""
    followers = st.session_state.setdefault("_followers", {})
    cache_key = (str(info.path), tuple(columns) if columns else None)
    if cache_key not in followers:
        followers[cache_key] = data.MetricsFollower(info.path, columns)
    return followers[cache_key].update(info.steps_done)


def chart(fig: go.Figure, key: str) -> None:
    # Two plotly buttons only, so the toolbar does not cover the chart's title.
    st.plotly_chart(fig, key=key, config={"displaylogo": False, "modeBarButtons": [["toImage", "resetScale2d"]]})


def table(df: pd.DataFrame, name: str, key: str, height: int | str = "auto", show: pd.DataFrame | None = None,
          label: str = "Download CSV") -> None:
    """A table and its CSV download (`df` whole; `show` what is drawn, default `df`)."""
    st.dataframe(df if show is None else show, height=height, hide_index=True, key=f"{key}_table")
    csv_button(df, name, key, label)


def csv_button(df: pd.DataFrame, name: str, key: str, label: str = "Download CSV") -> None:
    """A CSV download; the file is written only when clicked (live pages redraw every few seconds)."""
    st.download_button(label, partial(df.to_csv, index=False), file_name=f"{name}.csv", mime="text/csv",
                       key=f"{key}_csv", on_click="ignore")
