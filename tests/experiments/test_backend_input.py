"""Bad backend input: one error line, exit code 2, no run directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SMOKE = Path(__file__).resolve().parents[2] / "experiments" / "configs" / "smoke.yaml"


def cli(*args):
    return subprocess.run([sys.executable, "-m", "experiments.cli", "run", str(SMOKE), *args],
                          capture_output=True, text=True, timeout=120)


def test_unknown_backend_and_unreachable_address_fail_cleanly(tmp_path):
    bad = cli("--set", "backend.name=spark", "--out", str(tmp_path))
    assert bad.returncode == 2 and "backend.name" in bad.stderr and "Traceback" not in bad.stderr
    far = cli("--ray", "--address", "127.0.0.1:1", "--out", str(tmp_path))
    assert far.returncode == 2 and "cannot reach a Ray cluster" in far.stderr
    assert len(far.stderr.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())
