"""Population page: how many agents live, how fit they are, how good the swarm's answers are."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import data, faults, figures, ui
from experiments import reader
from experiments.reader import RunInfo

ABOUT = ("The swarm answers a stream of queries. Agents that answer well gain fitness and divide; "
         "unfit agents die. Quality is the cosine similarity between an answer and the right answer "
         "(1 = perfect, 0 = unrelated).")


def render() -> None:
    ui.header("Population", ABOUT)
    info = ui.current_run()
    if info is not None:
        ui.live([info.path], _body, key="population")


def _body(runs: list[RunInfo]) -> None:
    info = runs[0]
    ui.status_line(info)
    df = ui.metrics(info, data.POPULATION_COLUMNS)
    if df.empty:
        st.info(ui.NO_STEPS)
        return
    _numbers(df)
    view, bucket = data.downsample(data.with_rates(df))
    left, right = st.columns(2)
    with left:
        lost = faults.fault_table(reader.events(info.path))  # Ray runs: lost colonies and shards
        ui.chart(figures.population_figure(view, bucket, faults=lost), "population_fig")
        ui.chart(figures.fitness_figure(view, bucket), "fitness_fig")
        ui.chart(figures.accuracy_figure(view, bucket), "accuracy_fig")
    with right:
        ui.chart(figures.turnover_figure(view, bucket), "turnover_fig")
        ui.chart(figures.quality_figure(view, bucket), "quality_fig")
        ui.chart(figures.speed_figure(view, bucket), "speed_fig")
    with st.expander("Data: per-step metrics"):
        ui.table(df, f"{info.path.name}-population", "population", height=300, show=df.tail(500))


def _numbers(df: pd.DataFrame) -> None:
    """Latest values; noisy per-step rates are averaged over the last `w` steps. Deltas compare
    with the same measure a tenth of the run earlier."""
    w = max(1, min(50, len(df) // 20))
    back = max(1, len(df) // 10)
    now, then = df.tail(w), df.iloc[max(0, len(df) - back - w): max(1, len(df) - back)]
    last = df.iloc[-1]
    items = [("Step", f"{int(last['step']):,}", None, None)]
    if "population" in df:
        change = int(last["population"] - df["population"].iloc[max(0, len(df) - 1 - back)])
        items.append(("Living agents", f"{int(last['population']):,}", f"{change:+,}",
                      "Change over the last tenth of the run."))
    averaged = f"Mean over the last {w} steps; the change is against the same a tenth of the run earlier."
    if "quality" in df:
        q, q0 = now["quality"].mean(), then["quality"].mean()
        items.append(("Answer quality (cosine)", f"{q:.3f}", f"{q - q0:+.3f}", averaged))
    if "accuracy" in df:
        a, a0 = 100 * now["accuracy"].mean(), 100 * then["accuracy"].mean()
        items.append(("Accuracy", f"{a:.1f} %", f"{a - a0:+.1f} pts", averaged))
    if "seconds" in df:
        seconds = df["seconds"].tail(50).mean()
        items.append(("Steps / s", f"{1 / seconds:.1f}" if seconds > 0 else "n/a", None,
                      "Simulation speed, mean over the last 50 steps."))
    for col, (label, value, delta, help_) in zip(st.columns(len(items)), items):
        col.metric(label, value, delta=delta, delta_color="off" if label == "Living agents" else "normal",
                   help=help_)


if __name__ == "__main__":
    render()
