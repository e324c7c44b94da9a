"""Smoke tests: the gene-pool benchmarks run with --quick --json and report their figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(name: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--quick", "--json"], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"ratio", "value", "reference", "unit", "sizes"} <= set(result)
    assert result["value"] > 0 and result["reference"] > 0
    assert result["ratio"] == pytest.approx(result["value"] / result["reference"])
    return result


def test_minhash_benchmark_signatures_are_identical():
    r = _run("minhash")
    assert r["identical"] is True and r["unit"] == "signatures/s" and r["sizes"]["sets"] == 200


def test_ingest_benchmark_reports_cold_and_warm():
    r = _run("ingest")
    assert r["unit"] == "MB/s" and r["warm_value"] > r["value"] and r["sizes"]["genes"] > 1000
    assert r["copy_value"] > 0 and r["copy_ratio"] == pytest.approx(r["copy_value"] / r["reference"])


def test_scale_benchmark_counts_distinct_agents():
    r = _run("scale")
    assert r["agents"] == r["value"] and r["distinct_agents"] == r["measured_agents"] == 2000
    assert r["marginal_bytes_per_agent"] < r["dense_bytes_per_agent"] and r["steps_per_s"] > 0
