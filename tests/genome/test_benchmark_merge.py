"""Smoke test: `python -m benchmarks.merge --quick --json` runs both contenders and reports its figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_merge_benchmark_quick_json() -> None:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.merge", "--quick", "--json"], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"ratio", "value", "reference", "unit", "sizes", "peak_rss_mb", "model_mb"} <= set(result)
    assert result["unit"] == "s" and result["value"] > 0 and result["reference"] > 0
    assert result["ratio"] == result["reference"] / result["value"]
    assert result["max_abs_diff"] == 0.0  # both contenders computed the same merge
    assert result["sizes"]["models"] == 3 and result["sizes"]["parameters"] > 100_000
    assert 0 < result["model_mb"] and result["peak_rss_mb"] > 0 and result["baseline_peak_rss_mb"] > 0
