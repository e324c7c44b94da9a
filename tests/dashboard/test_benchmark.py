"""Smoke run of `python -m benchmarks.dashboard --quick --json`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_benchmark_quick_prints_a_table_and_json():
    out = subprocess.run([sys.executable, "-m", "benchmarks.dashboard", "--quick", "--json"], capture_output=True,
                         text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert {"ratio", "value", "reference", "unit", "steps", "metric_columns"} <= set(result)
    assert result["steps"] == 2000 and result["metric_columns"] == 40 and result["unit"] == "s"
    assert result["ratio"] == round(result["value"] / result["reference"], 3) or result["ratio"] > 0
    assert any("ratio (target <= 3)" in line for line in lines)
