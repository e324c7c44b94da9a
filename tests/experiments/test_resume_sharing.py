"""`cogitans run --resume` of a run with experience sharing continues exactly as an uninterrupted run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import reader
from experiments.runner import latest_checkpoint, load_checkpoint, run_spec
from experiments.spec import load_spec
from swarm.sharing import ExperienceRegistry
from tests.conftest import states_equal

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "experiments" / "configs" / "smoke.yaml"
STEPS = 40
SHARING = ["sharing.enabled=true", "sharing.malicious_colonies=1", "sharing.flood=4", "colony.count=3",
           f"run.steps={STEPS}", f"run.checkpoint_every={STEPS // 2}"]


def _root(sharing: dict) -> str:
    registry = ExperienceRegistry()
    registry.load_state_dict(sharing["registry"])
    return registry.root()


def test_interrupted_shared_run_resumes_to_the_same_metrics_registry_and_votes(tmp_path):
    spec = load_spec(SMOKE, SHARING)
    whole = Path(run_spec(spec, tmp_path / "whole", progress=False)["run_dir"])

    def interrupt(model, step):  # a few steps past the checkpoint at STEPS // 2, as a Ctrl-C would
        if step == STEPS // 2 + 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_spec(spec, tmp_path / "cut", progress=False, on_step=interrupt)
    cut = next((tmp_path / "cut").iterdir())
    assert latest_checkpoint(cut).name == f"step-{STEPS // 2:08d}.pt"
    halfway = load_checkpoint(latest_checkpoint(cut))["sharing"]
    assert halfway["counts"]["entries_voted_out"] > 0 and bool((halfway["votes"]["votes"] != 0).any())

    out = subprocess.run([sys.executable, "-m", "experiments.cli", "run", "--resume", str(cut), "--json"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["steps"] == STEPS

    a, b = reader.metrics(whole).drop(columns="seconds"), reader.metrics(cut).drop(columns="seconds")
    assert len(b) == STEPS and a.equals(b)
    assert a["registry_size"].iloc[-1] > len(halfway["registry"]["lengths"])  # it kept growing after the resume
    end_a, end_b = load_checkpoint(latest_checkpoint(whole)), load_checkpoint(latest_checkpoint(cut))
    assert _root(end_a["sharing"]) == _root(end_b["sharing"]) != _root(halfway)
    assert states_equal(end_a["sharing"], end_b["sharing"])  # registry, votes, reports, counters, identities
    assert states_equal(end_a["memory"], end_b["memory"])
