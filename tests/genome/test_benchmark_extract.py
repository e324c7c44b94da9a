"""Smoke test: `python -m benchmarks.extract --quick --json` runs and reports its figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_extract_benchmark_quick_json() -> None:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.extract", "--quick", "--repeats", "1", "--json"],
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"ratio", "value", "reference", "unit", "sizes", "cold_ratio", "peak_memory"} <= set(result)
    assert result["unit"] == "MB/s" and result["value"] > 0 and result["reference"] > 0
    assert result["ratio"] == min(f["warm_ratio"] for f in result["formats"].values())
    assert set(result["formats"]) == {"safetensors", "gguf"}
    sizes = result["sizes"]
    assert 0 < sizes["largest_tensor_bytes"] <= sizes["tensor_bytes"] <= sizes["model_bytes"]
    assert result["peak_memory"]["tracemalloc_peak"] > 0
