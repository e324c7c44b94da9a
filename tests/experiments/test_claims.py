"""Quick variants of the claim experiments: each asserts the direction of its result."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from experiments.claims import REGISTRY


def test_specialisation_beats_both_controls():
    result = REGISTRY["specialisation"](quick=True)
    spec = dict(zip(result.table["variant"], result.table["specialization"]))
    assert spec["evolution"] > spec["no selection (sigma=0, s=0)"] + 0.08
    assert spec["evolution"] > spec["no memory routing"] + 0.08
    assert result.held


def test_malicious_agents_starve_and_robust_rules_hold_in_a_trained_swarm():
    result = REGISTRY["starvation"](quick=True)
    table = result.table
    assert len(table) == 12 and set(table["rule"]) == {"mean", "weighted_mean", "median", "trimmed_mean"}
    assert (table["malicious_share_end"] < table["malicious"] / 2).all()
    assert result.held
    turned = table[table["appear"] == "step 60"].set_index("rule")  # a third of a trained swarm turns malicious
    window, run = turned["quality_window_vs_clean"], turned["quality_run_vs_clean"]
    # until their share halves (measured: median 0.94, trimmed mean 0.94, mean -0.35)
    assert window["median"] >= 0.9 and window["trimmed_mean"] >= 0.9
    assert 1 - window["mean"] >= max(0.1, 2 * (1 - min(window["median"], window["trimmed_mean"])))
    # to the end of the run (measured: median 0.97, trimmed mean 0.98, mean 0.85)
    assert run["median"] >= 0.9 and run["trimmed_mean"] >= 0.9
    assert 1 - run["mean"] >= max(0.1, 2 * (1 - min(run["median"], run["trimmed_mean"])))
    founders = table[(table["appear"] == "founders") & (table["malicious"] == 0.33)].set_index("rule")
    assert (founders["quality_window_vs_clean"] < 0.9).all()  # an untrained swarm: no rule holds at first


def test_cli_writes_a_report_and_refuses_unknown_names(tmp_path):
    out = subprocess.run([sys.executable, "-m", "experiments.cli", "experiment", "bitdelta", "--quick",
                          "--out", str(tmp_path), "--json"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    folder = tmp_path / result["report"].split("/")[-2]
    text = (folder / "report.md").read_text()
    assert "31.7" in text and (folder / "table.csv").is_file()
    wide, memory = result["table"]
    assert wide["ratio"] == pytest.approx(3840 * 4 / (3840 / 8 + 4), rel=1e-6)  # 31.74x
    assert memory["ratio"] == pytest.approx(512 * 4 / (512 / 8 + 4), rel=1e-6)  # 30.1x
    assert 0.8 < wide["cosine_mean"] < 1.0
    assert (folder / "bitdelta.png").is_file() or (folder / "bitdelta.html").is_file()
    bad = subprocess.run([sys.executable, "-m", "experiments.cli", "experiment", "nope", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "unknown experiment 'nope'" in bad.stderr


def test_mutation_sweep_memory_buffers_strong_mutation():
    result = REGISTRY["mutation-sweep"](quick=True)
    q = dict(zip(result.table["sigma"], result.table["quality_last"]))
    agents = dict(zip(result.table["sigma"], result.table["agent_quality_last"]))
    assert q[0.1] > q[0.01] + 0.03  # stronger mutation than the source's 0.01 adapts faster here
    assert q[1.0] > q[0.01]  # the shared memory keeps consensus up even when children are near random
    assert agents[0.1] > agents[0.01]


def test_threshold_sweep_fast_division_loses_diversity():
    result = REGISTRY["threshold-sweep"](quick=True)
    t = result.table.set_index("threshold")
    assert t.loc[5, "lineages_at_shift"] < t.loc[80, "lineages_at_shift"]
    assert t.loc[5, "births"] > t.loc[80, "births"]
    assert t.loc[80, "quality_after_shift_100"] > t.loc[5, "quality_after_shift_100"]


def test_dedup_family_collapses_most_genes_and_levels_only_shrink():
    result = REGISTRY["dedup-family"](quick=True)
    genes = list(result.table["genes"].iloc[:5])  # in, after L1..L4
    assert all(a >= b for a, b in zip(genes, genes[1:]))  # every level keeps or removes genes
    assert genes[4] < genes[1]  # L2-L4 find something L1 (exact bytes) missed
    assert result.table["fewer_genes"].iloc[4] > 0.5
    assert len(result.notes.splitlines()) >= 2 + 5  # per-model table has all five models
