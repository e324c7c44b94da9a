"""The breeding orchestrator: measured lineage, overlap and modularity; a strategy per goal; an
executable plan; outcomes logged in SQLite and read back to change later choices."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from genome.errors import BadInput
from genome.recombine import config as configs
from genome.recombine import outcomes
from genome.recombine.orchestrator import analyse, make_plan, run_plan
from tests.genome.conftest import write_tiny_bert

ROOT = Path(__file__).resolve().parents[2]


def tuned(base: Path, out: Path, prefixes: tuple[str, ...], seed: int, scale: float = 0.2) -> Path:
    """base + a rank-1 change on every matrix whose name starts with one of `prefixes`."""
    rng = np.random.default_rng(seed)
    sd = load_file(str(base / "model.safetensors"))
    for k, v in sd.items():
        if k.startswith(prefixes) and v.ndim == 2:
            sd[k] = v + scale * np.outer(rng.standard_normal(v.shape[0]), rng.standard_normal(v.shape[1])).astype(np.float32)
    out.mkdir()
    save_file(sd, str(out / "model.safetensors"))
    shutil.copy(base / "config.json", out / "config.json")
    return out


@pytest.fixture
def models(tmp_path: Path) -> dict[str, Path]:
    base = write_tiny_bert(tmp_path / "base", hidden=16, inter=32)
    return {"base": base,
            "a": tuned(base, tmp_path / "a", ("encoder.layer.0.intermediate", "encoder.layer.0.output.dense"), 1),
            "b": tuned(base, tmp_path / "b", ("encoder.layer.1.attention.self",), 2),
            "stranger": write_tiny_bert(tmp_path / "stranger", seed=9, hidden=16, inter=32)}


def test_analysis_measures_lineage_overlap_and_modularity(models: dict[str, Path]) -> None:
    an = analyse(models["a"], models["b"], models["base"])
    assert an.lineage == "same" and an.similarity > 0.9
    assert an.overlap == 0.0  # the two fine-tunes changed disjoint tensors
    assert an.modularity > 0.3 and an.low_rank > 0.99  # a few tensors, rank-1 changes
    assert an.top_layers == ["blk.1"]  # where B changed
    assert an.layer_prefix["blk.0"] == "encoder.layer.0."
    same = analyse(models["a"], tuned(models["base"], models["base"].parent / "a2",
                                       ("encoder.layer.0.intermediate",), 3), models["base"])
    assert same.overlap > 0.05  # both changed layer 0's FFN
    assert analyse(models["a"], models["stranger"]).lineage == "different"


def test_plans_per_goal_are_executable_and_logged(models: dict[str, Path], tmp_path: Path) -> None:
    log = tmp_path / "log.sqlite"
    plan = make_plan(models["a"], models["b"], "merge_skills", base=models["base"], out_dir=tmp_path / "p1", log=log)
    assert plan["strategy"] == "ties" and plan["proceed"] and plan["config"] == "merge.yaml"
    cfg, _ = configs.load(tmp_path / "p1" / "merge.yaml")  # a valid mergekit config
    assert cfg.merge_method == "ties" and json.loads((tmp_path / "p1" / "plan.json").read_text())["strategy"] == "ties"
    result = run_plan(tmp_path / "p1", log=log)
    assert Path(result["out"]).is_file() and 0.5 < result["retention_a"] <= 1.0 and 0.5 < result["retention_b"] <= 1.0
    rows = outcomes.rows(log)
    assert len(rows) == 1 and rows[0]["strategy"] == "ties" and rows[0]["goal"] == "merge_skills"

    compress = make_plan(models["a"], models["base"], "compress", out_dir=tmp_path / "p2", log=log)
    assert compress["strategy"] == "lora"
    done = run_plan(tmp_path / "p2", log=log)
    assert (Path(done["out"]) / "adapter_config.json").is_file() and done["benefit"] > 0.99

    add = make_plan(models["a"], models["b"], "capability_add", base=models["base"], out_dir=tmp_path / "p3", log=log)
    assert add["strategy"] == "transfer"
    run_plan(tmp_path / "p3", log=log)
    child, a, b = (load_file(str(p)) for p in (tmp_path / "p3" / "out.safetensors", models["a"] / "model.safetensors",
                                               models["b"] / "model.safetensors"))
    q1 = "encoder.layer.1.attention.self.query.weight"
    np.testing.assert_allclose(child[q1], b[q1], atol=1e-6)  # B's changed layer grafted into A
    np.testing.assert_allclose(child["encoder.layer.0.intermediate.dense.weight"],
                               a["encoder.layer.0.intermediate.dense.weight"], atol=1e-6)  # A kept its own
    assert len(outcomes.rows(log)) == 3

    foreign = make_plan(models["a"], models["stranger"], "merge_skills", log=log)
    assert foreign["strategy"] == "transfer" and not foreign["proceed"] and "flagged" in foreign["rationale"]


def test_logged_outcomes_change_later_choices(models: dict[str, Path], tmp_path: Path) -> None:
    log = tmp_path / "log.sqlite"
    context = {"goal": "merge_skills", "lineage": "same", "overlap": 0.0, "modularity": 0.5}
    for _ in range(3):
        outcomes.record(log, context, "ties", {}, benefit=0.1, forgetting=0.8, seconds=1.0, out="x")
        outcomes.record(log, context, "dare_ties", {}, benefit=0.9, forgetting=0.05, seconds=1.0, out="y")
    plan = make_plan(models["a"], models["b"], "merge_skills", base=models["base"], log=log)
    assert plan["strategy"] == "dare_ties"
    assert plan["scores"]["ties"] == pytest.approx((2 * 0.8 + 3 * (0.1 - 0.8)) / 5)
    assert plan["history"]["dare_ties"]["runs"] == 3
    with pytest.raises(BadInput, match="goal"):
        make_plan(models["a"], models["b"], "world_domination")


def test_cli_plan_run_and_bad_goal(models: dict[str, Path], tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "experiments.cli", "genome", "plan", str(models["a"]), str(models["b"])]
    good = subprocess.Popen([*cmd, "--goal", "merge_skills", "--base", str(models["base"]), "--out",
                             str(tmp_path / "plan"), "--run", "--log", str(tmp_path / "log.sqlite"), "--json"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    bad = subprocess.run([*cmd, "--goal", "nonsense"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300, check=False)
    out, err = good.communicate(timeout=300)
    assert good.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["strategy"] == "ties" and result["outcome"]["out"].endswith("out.safetensors")
    assert (tmp_path / "plan" / "merge.yaml").is_file() and len(outcomes.rows(tmp_path / "log.sqlite")) == 1
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: --goal 'nonsense': expected one of merge_skills, capability_add, compress, repair"]
