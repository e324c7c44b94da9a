"""Population page cost: load a long run's metrics and build the page's figures, against plain sqlite3.

    python -m benchmarks.dashboard [--quick] [--json]

Builds a run store with 20k steps x 40 metric columns (2k with --quick) with the real writer,
then times, in the same process and on the same rows:

- dashboard: what the Population page does on a first load (run info, the page's 13 metric
  columns through `experiments.reader`, bucket averaging, the six plotly figures);
- reference: `SELECT step, <the same 13 columns> FROM metrics ORDER BY step` with plain sqlite3,
  fetching every row into Python tuples.

Each side runs once to warm up, then `repeats` times alternately; medians are reported. The JSON
`ratio` is dashboard seconds / reference seconds (target <= 3). Serialising the figures to JSON
(what Streamlit sends to the browser) is timed too and shown apart; it is not in the ratio.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import plotly.io as pio

from dashboard import data, figures
from experiments import reader
from experiments.store import RunStore

SIM_COLUMNS = [
    "population", "births", "deaths", "queries", "fitness_mean", "fitness_max", "fitness_p10", "fitness_p50",
    "fitness_p90", "quality", "agent_quality", "accuracy", "thumbs_up", "memory_entries", "memory_hit_rate",
    "memory_evictions", "routed_share", "specialization", "lineages", "seconds",
]
EXTRA_COLUMNS = [
    "pool_genes", "pool_unique_l1", "pool_unique_l2", "pool_unique_l3", "pool_unique_l4", "pool_bytes",
    "pool_bytes_naive", "pool_dedup_ratio", "pool_tier_PRISTINE", "pool_tier_HEALTHY", "pool_tier_DEGRADED",
    "pool_tier_DEAD", "pool_status_ACTIVE", "pool_status_OPTIMIZED", "pool_status_DEPRECATED",
    "pool_status_ARCHIVED", "shard_0_entries", "shard_0_replicas_ok", "shard_1_entries", "shard_1_replicas_ok",
]
PAGE_FIGURES = [figures.population_figure, figures.turnover_figure, figures.fitness_figure,
                figures.quality_figure, figures.accuracy_figure, figures.speed_figure]


def build_store(run_dir: Path, steps: int, seed: int = 0) -> Path:
    """A finished run with `steps` steps of the 40 metric columns, written with `RunStore`."""
    run_dir.mkdir(parents=True, exist_ok=True)
    store = RunStore.create(run_dir / "run.sqlite", name="bench", spec_yaml="run: {}\n", seed=seed,
                            version="bench", git_commit="bench", steps_total=steps)
    names = SIM_COLUMNS + EXTRA_COLUMNS
    values = np.random.default_rng(seed).random((steps, len(names)))
    values[:, names.index("seconds")] = 0.01 + 0.01 * values[:, names.index("seconds")]
    for step in range(1, steps + 1):
        store.write_step(step, dict(zip(names, values[step - 1].tolist())))
    store.set_status("finished")
    store.close()
    return run_dir


def dashboard_page(run_dir: Path) -> list:
    """The Population page's work on a first load, without Streamlit."""
    info = reader.run_info(run_dir)
    df = data.MetricsFollower(run_dir, data.POPULATION_COLUMNS).update(info.steps_done)
    view, bucket = data.downsample(data.with_rates(df))
    return [make(view, bucket) for make in PAGE_FIGURES]


def raw_rows(run_dir: Path) -> list[tuple]:
    db = sqlite3.connect(f"file:{run_dir / reader.DB_NAME}?mode=ro", uri=True)
    try:
        cols = ", ".join(["step", *data.POPULATION_COLUMNS])
        return db.execute(f"SELECT {cols} FROM metrics ORDER BY step").fetchall()
    finally:
        db.close()


def _time(fn, *args) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def measure(steps: int, repeats: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="cogitans-bench-dashboard-") as tmp:
        run_dir = build_store(Path(tmp) / "run", steps)
        figs, rows = dashboard_page(run_dir), raw_rows(run_dir)  # warm-up (imports, page cache)
        assert len(rows) == steps, (len(rows), steps)
        dash, raw = [], []
        for _ in range(repeats):
            seconds, figs = _time(dashboard_page, run_dir)
            dash.append(seconds)
            raw.append(_time(raw_rows, run_dir)[0])
        serialise = statistics.median(_time(lambda: [pio.to_json(f) for f in figs])[0] for _ in range(repeats))
    points = max(len(t.x) for f in figs for t in f.data)
    value, reference = statistics.median(dash), statistics.median(raw)
    return {
        "ratio": round(value / reference, 3), "value": round(value, 4), "reference": round(reference, 4),
        "unit": "s", "steps": steps, "metric_columns": len(SIM_COLUMNS) + len(EXTRA_COLUMNS),
        "columns_read": len(data.POPULATION_COLUMNS) + 1, "figures": len(figs), "points_per_trace": points,
        "repeats": repeats, "serialise_seconds": round(serialise, 4), "target_ratio": 3.0,
        "sizes": {"steps": steps, "metric_columns": len(SIM_COLUMNS) + len(EXTRA_COLUMNS),
                  "columns_read": len(data.POPULATION_COLUMNS) + 1, "figures": len(figs),
                  "points_per_trace": points, "repeats": repeats},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2k steps, 3 repeats (seconds)")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args(argv)
    steps, repeats = (2_000, 3) if args.quick else (20_000, 7)
    result = measure(steps, repeats)
    print(f"Population page, {result['steps']:,} steps x {result['metric_columns']} metrics "
          f"({result['columns_read']} columns read, {result['figures']} figures, "
          f"<= {result['points_per_trace']} points a trace), median of {repeats}")
    print(f"{'':34}{'seconds':>10}")
    print(f"{'dashboard: load + build figures':34}{result['value']:>10.4f}")
    print(f"{'reference: plain sqlite3 rows':34}{result['reference']:>10.4f}")
    print(f"{'ratio (target <= 3)':34}{result['ratio']:>10.2f}")
    print(f"{'(apart) figures to JSON':34}{result['serialise_seconds']:>10.4f}")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
