"""The `cogitans` command end to end, in subprocesses, on the smoke config."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from experiments import reader
from experiments.runner import new_run_dir, start_run

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "experiments" / "configs" / "smoke.yaml"


def cogitans(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300, **kw)


def test_version():
    out = cogitans("--version")
    assert out.returncode == 0 and out.stdout.startswith("cogitans ")


def test_smoke_run_json_summary_and_run_directory(tmp_path):
    out = cogitans("run", SMOKE, "--out", tmp_path, "--json", "--steps", "40")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ("run_dir", "steps", "population", "births", "deaths", "queries", "quality_first",
                "quality_last", "specialization", "seconds"):
        assert key in summary
    assert summary["steps"] == 40 and summary["queries"] == 40 * 32
    run_dir = Path(summary["run_dir"])
    assert run_dir.parent == tmp_path and run_dir.name.startswith("smoke-")
    assert {"spec.yaml", "run.sqlite", "phylogeny.csv", "checkpoints"} <= {p.name for p in run_dir.iterdir()}
    info = reader.run_info(run_dir)
    assert info.status == "finished" and info.steps_done == 40 and info.seed == 0
    assert len(reader.metrics(run_dir)) == 40
    assert len(reader.snapshot(run_dir)) == summary["population"]
    assert len(reader.lineage(run_dir)) == 32 + summary["births"]


def bad(tmp_path, text):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda t: ["run", t / "missing.yaml"], "config file not found"),
        (lambda t: ["run", bad(t, "run: [oops\n")], "YAML syntax error"),
        (lambda t: ["run", bad(t, "mutaton:\n  sigma: 0.1\n")], "unknown key 'mutaton'"),
        (lambda t: ["run", SMOKE, "--set", "mutation.sigma=abc"], "mutation.sigma = 'abc'"),
        (lambda t: ["run", SMOKE, "--set", "mutation.sigma=-1"], "mutation.sigma = -1"),
        (lambda t: ["run", SMOKE, "--set", "replication.threshold=0"], "replication.threshold = 0"),
        (lambda t: ["run", "--resume", t / "nowhere"], "run directory not found"),
        (lambda t: ["run", "--resume", bad(t, "not a run")], "is a file; give the run directory"),
        (lambda t: ["run"], "give a CONFIG file"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, make_args, message):
    out = cogitans(*make_args(tmp_path), "--out", tmp_path / "runs")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], out.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_corrupted_checkpoint_on_resume(tmp_path):
    summary = start_run(SMOKE, steps=20, out=tmp_path, progress=False)
    run_dir = Path(summary["run_dir"])
    ckpt = sorted((run_dir / "checkpoints").glob("*.pt"))[-1]
    ckpt.write_bytes(ckpt.read_bytes()[: 1000])
    before = (run_dir / "run.sqlite").read_bytes()
    out = cogitans("run", "--resume", run_dir)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and "corrupted" in out.stderr
    assert (run_dir / "run.sqlite").read_bytes() == before  # nothing touched


def test_run_directories_are_never_reused(tmp_path):
    a, b = new_run_dir(tmp_path, "x"), new_run_dir(tmp_path, "x")
    assert a != b and a.is_dir() and b.is_dir()


def test_killed_run_resumes_to_the_same_metrics(tmp_path):
    steps = ["--steps", "120", "--set", "run.checkpoint_every=20"]
    whole = start_run(SMOKE, ["run.checkpoint_every=20"], steps=120, out=tmp_path / "whole", progress=False)
    proc = subprocess.Popen([sys.executable, "-m", "experiments.cli", "run", str(SMOKE), "--out",
                             str(tmp_path / "cut"), "--no-progress", *steps],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    run_dir = None
    while time.time() < deadline:
        found = list((tmp_path / "cut").glob("smoke-*/run.sqlite"))
        if found:
            run_dir = found[0].parent
            if reader.run_info(run_dir).steps_done >= 50:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert run_dir is not None
    assert reader.run_info(run_dir).steps_done < 120  # it really was cut short
    out = cogitans("run", "--resume", run_dir, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["steps"] == 120

    a = reader.metrics(Path(whole["run_dir"])).drop(columns="seconds")
    b = reader.metrics(run_dir).drop(columns="seconds")
    assert len(b) == 120
    assert a.equals(b)
    assert "resumed" in reader.events(run_dir)["kind"].tolist()


def test_outputs_that_cannot_be_created_are_one_line_and_exit_code_2(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("in the way")
    model = tmp_path / "m.safetensors"
    save_file({"w": np.ones((4, 4), np.float32)}, str(model))
    merge_yaml = bad(tmp_path, f"models:\n  - model: {model}\n  - model: {model}\nmerge_method: linear\n"
                               "parameters: {weight: 0.5}\n")
    cases = [
        (["run", SMOKE, "--out", blocker], "is a file; runs go into a folder"),
        (["genome", "merge", merge_yaml, blocker / "x.safetensors"], "is a file, not a folder"),
        (["genome", "plan", model, model, "--goal", "merge_skills", "--out", blocker / "p"], "Not a directory"),
    ]
    for args, message in cases:
        out = cogitans(*args)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1 and message in lines[0], (args, out.stderr)
    assert blocker.read_text() == "in the way"


def test_help_paragraphs_are_reflowed_not_the_source_wrapping():
    from typer.testing import CliRunner

    from experiments.cli import app

    out = CliRunner().invoke(app, ["genome", "merge", "--help"], env={"COLUMNS": "200"}, terminal_width=200)
    assert out.exit_code == 0
    assert "dare_linear, breadcrumbs, breadcrumbs_ties, model_stock" in out.output
