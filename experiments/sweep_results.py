"""Sweep results: one row per trial from the run stores, and mean +- 95% interval over repeats."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.sweep import METRICS, Trial, finished, trial_runs

# two-sided 95% Student-t quantiles for 1..30 degrees of freedom; 1.96 beyond
_T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def t95(n: int) -> float:
    """Half-width multiplier of a 95% interval of a mean of n values (nan for n < 2)."""
    return math.nan if n < 2 else (_T95[n - 2] if n - 2 < len(_T95) else 1.96)


def _final_metrics(run_dir: Path) -> dict[str, float]:
    from experiments import reader

    df = reader.metrics(run_dir)
    if df.empty:
        return {}
    tenth = max(1, len(df) // 10)
    last = df.iloc[-1]
    return {
        "quality_first": float(df["quality"].iloc[:tenth].mean()),
        "quality_last": float(df["quality"].iloc[-tenth:].mean()),
        "accuracy_last": float(df["accuracy"].iloc[-tenth:].mean()),
        "agent_quality_last": float(df["agent_quality"].iloc[-tenth:].mean()),
        "specialization": float(last["specialization"]),
        "population": float(last["population"]),
        "steps": int(last["step"]),
    }


def trial_table(sweep_dir: Path, trials: list[Trial], errors: dict[int, str] | None = None) -> pd.DataFrame:
    """One row per planned trial: parameters, seed, status, run dir and final metrics."""
    from experiments import reader

    rows = []
    for t in trials:
        row: dict[str, Any] = {"trial": t.index, **t.params, "seed": t.seed, "repeat": t.repeat}
        done = finished(sweep_dir, t)
        runs = trial_runs(sweep_dir, t)
        if done is not None:
            row |= {"status": "finished", "run_dir": str(done), **_final_metrics(done)}
        elif runs:
            info = reader.run_info(runs[-1])
            row |= {"status": info.status if info.status != "running" else "interrupted",
                    "run_dir": str(runs[-1]), "error": info.error}
        else:
            row |= {"status": "failed" if errors and t.index in errors else "not run", "run_dir": ""}
        if errors and t.index in errors:
            row["error"] = errors[t.index]
        rows.append(row)
    return pd.DataFrame(rows)


def summary_table(trials: pd.DataFrame, params: list[str]) -> pd.DataFrame:
    """Mean and 95% interval half-width of each metric per parameter combination, best first."""
    done = trials[trials["status"] == "finished"]
    if done.empty:
        return pd.DataFrame(columns=params + ["repeats"])
    rows = []
    for key, group in done.groupby(params, dropna=False, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(params, key)) | {"repeats": len(group)}
        for metric in METRICS:
            values = group[metric].astype(float)
            row[f"{metric}_mean"] = values.mean()
            row[f"{metric}_ci95"] = t95(len(values)) * values.std(ddof=1) / math.sqrt(len(values)) \
                if len(values) > 1 else math.nan
        rows.append(row)
    return pd.DataFrame(rows).sort_values("quality_last_mean", ascending=False, ignore_index=True)


def write(sweep_dir: Path, trials: pd.DataFrame, summary: pd.DataFrame) -> None:
    """CSV and Parquet of both tables, each written atomically."""
    for name, df in (("trials", trials), ("summary", summary)):
        for suffix, writer in ((".csv", lambda d, p: d.to_csv(p, index=False)),
                               (".parquet", lambda d, p: d.to_parquet(p, index=False))):
            path = Path(sweep_dir) / f"{name}{suffix}"
            tmp = path.with_name(path.name + ".tmp")
            writer(df.astype({c: str for c in df.columns if df[c].dtype == object}), tmp)
            tmp.replace(path)


def print_ranked(summary: pd.DataFrame, params: list[str]) -> None:
    """The summary as a rich table on stderr, best quality first."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="sweep: final metrics, mean ± 95% interval over repeats", expand=False)
    for col in ["rank", *params, "repeats", "quality_last", "accuracy_last", "specialization"]:
        table.add_column(col, justify="right")
    for i, row in enumerate(summary.to_dict("records")):
        cells = [str(i + 1), *(str(row[p]) for p in params), str(row["repeats"])]
        for metric in ("quality_last", "accuracy_last", "specialization"):
            ci = row[f"{metric}_ci95"]
            cells.append(f"{row[f'{metric}_mean']:.3f}" + ("" if math.isnan(ci) else f" ± {ci:.3f}"))
        table.add_row(*cells)
    Console(stderr=True).print(table)
