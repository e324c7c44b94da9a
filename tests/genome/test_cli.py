"""`cogitans genome ...`: every command runs; every bad input is one error line, exit code 2,
and nothing written."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from experiments.cli import app
from tests.genome.conftest import write_tiny_bert

ROOT = Path(__file__).resolve().parents[2]


def cogitans(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run the real console entry point (`experiments.cli.main`) in a subprocess."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "experiments.cli", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def _gguf(path: Path) -> Path:
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_tensor("blk.0.ffn_up.weight", np.arange(64, dtype=np.float32).reshape(2, 32))
    writer.add_tensor("blk.0.attn_q.weight", np.ones((2, 32), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


class _Evil:
    def __reduce__(self):
        return os.system, ("echo pwned",)


def _bad_inputs(tmp: Path) -> dict[str, tuple[Path, str]]:
    """case -> (input path, text the error line must contain)."""
    good = _gguf(tmp / "good.gguf")
    data = good.read_bytes()
    cases: dict[str, tuple[Path, str]] = {}
    (tmp / "magic.gguf").write_bytes(b"GGUX" + data[4:])
    cases["wrong magic"] = (tmp / "magic.gguf", "magic")
    (tmp / "trunc.gguf").write_bytes(data[:30])
    cases["truncated header"] = (tmp / "trunc.gguf", "truncated")
    last = max(gguf.GGUFReader(good).tensors, key=lambda t: t.data_offset)
    (tmp / "past.gguf").write_bytes(data[: last.data_offset + 16])
    cases["data past end"] = (tmp / "past.gguf", "past the end")
    field = gguf.GGUFReader(good).tensors[0].field
    off = field.offset + sum(int(p.nbytes) for p in field.parts[:4])
    patched = bytearray(data)
    struct.pack_into("<I", patched, off, 77)
    (tmp / "qtype.gguf").write_bytes(bytes(patched))
    cases["unknown quant type"] = (tmp / "qtype.gguf", "unknown quantisation type")
    torch.save({"w": torch.zeros(2), "x": _Evil()}, tmp / "evil.pt")
    cases["pickle with code"] = (tmp / "evil.pt", "refused")
    (tmp / "empty.safetensors").write_bytes(b"")
    cases["empty file"] = (tmp / "empty.safetensors", "empty")
    (tmp / "noweights").mkdir()
    (tmp / "noweights" / "config.json").write_text("{}")
    cases["folder without weights"] = (tmp / "noweights", "no weights")
    return cases


def test_bad_inputs_give_one_line_exit_2_and_write_nothing(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for case, (path, text) in _bad_inputs(inputs).items():
        out = tmp_path / f"out_{case.replace(' ', '_')}"
        proc = cogitans("genome", "extract", path, out)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, (case, proc.stderr)
        assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], (case, proc.stderr)
        assert "Traceback" not in proc.stderr and not out.exists(), case
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]  # no outputs, no temporary leftovers
    assert "pwned" not in proc.stdout


def test_graft_shape_mismatch_via_cli(tmp_path: Path) -> None:
    rec, don = write_tiny_bert(tmp_path / "rec"), write_tiny_bert(tmp_path / "don", inter=12)
    proc = cogitans("genome", "graft", rec, don, tmp_path / "out.gguf", "--organs", "organ")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "shape" in proc.stderr
    assert not (tmp_path / "out.gguf").exists()


def test_every_command_runs(tmp_path: Path) -> None:
    runner = CliRunner()
    model = write_tiny_bert(tmp_path / "m")
    other = write_tiny_bert(tmp_path / "o", seed=3)

    def ok(*args: str | Path) -> str:
        result = runner.invoke(app, ["genome", *map(str, args)])
        assert result.exit_code == 0, (args, result.output, result.exception)
        return result.output

    out = json.loads(ok("inspect", model, "--json").splitlines()[-1])
    assert out["totals"]["organ"]["tensors"] == 8 and {r["tier"] for r in out["tensors"]} <= {
        "PRISTINE", "HEALTHY", "DEGRADED", "DEAD"}
    assert "totals per role" in ok("inspect", model)
    assert json.loads(ok("extract", model, tmp_path / "organs", "--json").splitlines()[-1])["tensors"] == 38
    ok("assemble", tmp_path / "organs", tmp_path / "m.gguf")
    graft_out = json.loads(ok("graft", tmp_path / "m.gguf", other, tmp_path / "g.gguf", "--organs", "organ",
                              "--json").splitlines()[-1])
    assert graft_out["mode"] == "direct" and graft_out["replaced"] == 8
    measured = json.loads(ok("measure", model, "--organs", "norm", "--json").splitlines()[-1])
    assert len(measured["tensors"]) == 10
    assert "tiers:" in ok("measure", tmp_path / "m.gguf")
    purified = json.loads(ok("purify", model, tmp_path / "p.safetensors", "--strength", "0.3",
                             "--json").splitlines()[-1])
    assert len(purified["tensors"]) == 24
    quant = json.loads(ok("quantize", model, tmp_path / "q.safetensors", "--method", "twn",
                          "--json").splitlines()[-1])
    assert quant["ratio"] > 1 and quant["tensors"] == 24
    bd = json.loads(ok("quantize", other, tmp_path / "bd.safetensors", "--method", "bitdelta", "--base", model,
                       "--per-row", "--json").splitlines()[-1])
    assert bd["tensors"] == 24 and bd["ratio"] > 1


@pytest.mark.parametrize("args", [["quantize", "{m}", "{t}/x.gguf"], ["purify", "{m}", "{t}/p.gguf", "--strength", "3"],
                                  ["assemble", "{m}", "{t}/folder"], ["inspect", "{t}/missing.gguf"]])
def test_bad_options_are_one_line(tmp_path: Path, args: list[str]) -> None:
    model = write_tiny_bert(tmp_path / "m")
    proc = cogitans("genome", *[a.format(m=model, t=tmp_path) for a in args])
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
