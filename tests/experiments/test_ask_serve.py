"""`cogitans ask`, `cogitans serve` (FastAPI app and a real server) and the serve benchmark."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experiments import reader
from experiments.runner import latest_checkpoint, load_checkpoint, start_run
from experiments.spec import dump_spec, validate

ROOT = Path(__file__).resolve().parents[2]
TEXT_SMOKE = ROOT / "experiments" / "configs" / "text_smoke.yaml"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished smoke-size text_qa run (40 steps)."""
    out = tmp_path_factory.mktemp("runs")
    return Path(start_run(TEXT_SMOKE, steps=40, out=out, progress=False)["run_dir"])


@pytest.fixture
def run_copy(trained, tmp_path) -> Path:
    """A copy of the trained run that a test may change."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


def cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """Run `cogitans ARGS` in process through the console-script entry point."""
    from experiments.cli import main

    monkeypatch.setattr(sys, "argv", ["cogitans", *map(str, args)])
    with pytest.raises(SystemExit) as exit_:
        main()
    out = capsys.readouterr()
    return exit_.value.code, out.out, out.err


# ---- cogitans ask -----------------------------------------------------------------------------
def test_ask_prints_an_answer_from_a_finished_run(trained):
    out = subprocess.run([sys.executable, "-m", "experiments.cli", "ask", str(trained), "What is 3 plus 4?"],
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("answer: ") and "confidence" in lines[0]
    assert lines[1] == "agents:" and sum(line.startswith("  #") for line in lines) == 4  # gossip.fanout
    assert any(line.startswith("memory hits: ") for line in lines)


def test_ask_json_names_agents_with_fitness_and_lineage(trained, monkeypatch, capsys):
    code, out, err = cli(monkeypatch, capsys, "ask", trained, "Which city is the capital of France?", "--json")
    assert code == 0, err
    result = json.loads(out)
    from swarm.text_qa import TextQAEnvironment

    env = TextQAEnvironment(validate(json.loads(json.dumps(reader_spec(trained)))).environment, 64)
    assert result["answer"] in env.answer_texts
    assert 0.0 <= result["confidence"] <= 1.0 and -1.0 <= result["similarity"] <= 1.0
    assert result["niche"] in ("capitals", "sums", "units", "opposites")
    assert len(result["agents"]) == 4
    lineage = reader.lineage(trained).set_index("agent_id")
    for agent in result["agents"]:
        row = lineage.loc[agent["agent_id"]]
        assert agent["parent_id"] == row["parent_id"] and agent["root_id"] == row["root_id"]
        assert agent["generation"] == len(agent["ancestors"]) or len(agent["ancestors"]) == 5
        assert agent["ancestors"][:1] == ([agent["parent_id"]] if agent["parent_id"] >= 0 else [])
        assert -1.0 <= agent["fitness"] <= 1.0 and agent["answer"] in env.answer_texts
    total = sum(a["weight"] for a in result["agents"]) + sum(h["weight"] for h in result["memory_hits"])
    assert abs(total - 1.0) < 1e-3
    assert all(0.5 <= h["similarity"] <= 1.0 for h in result["memory_hits"])  # memory.min_similarity


def reader_spec(run_dir: Path) -> dict:
    import yaml

    return yaml.safe_load((run_dir / "spec.yaml").read_text())


def test_ask_feedback_is_stored_in_the_run(run_copy, monkeypatch, capsys):
    before = load_checkpoint(latest_checkpoint(run_copy))["steps"]
    code, out, err = cli(monkeypatch, capsys, "ask", run_copy, "What is 3 plus 4?", "--feedback", "up", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["feedback"]["step"] == before + 1 and len(result["feedback"]["rewards"]) <= 4
    assert load_checkpoint(latest_checkpoint(run_copy))["steps"] == before + 1
    events = reader.events(run_copy)
    stored = [json.loads(d) for d in events.loc[events["kind"] == "feedback", "detail"]]
    assert len(stored) == 1 and stored[0]["vote"] == "up" and stored[0]["answer"] == result["answer"]
    row = reader.metrics(run_copy).set_index("step").loc[before + 1]
    assert row["thumbs_up"] == 1.0 and row["queries"] == 1.0


def no_checkpoints(run_copy: Path) -> Path:
    shutil.rmtree(run_copy / "checkpoints")
    return run_copy


def niches_run(tmp: Path) -> Path:
    tmp.mkdir()
    (tmp / "spec.yaml").write_text(dump_spec(validate({})))
    (tmp / "run.sqlite").write_bytes(b"")
    return tmp


@pytest.mark.parametrize("make_args, message", [
    (lambda run, tmp: ["ask", tmp / "nowhere", "What is 3 plus 4?"], "run directory not found"),
    (lambda run, tmp: ["ask", run, ""], "the question is empty"),
    (lambda run, tmp: ["ask", run, "   "], "the question is empty"),
    (lambda run, tmp: ["ask", no_checkpoints(run), "What is 3 plus 4?"], "has no checkpoint"),
    (lambda run, tmp: ["ask", tmp, "What is 3 plus 4?"], "is not a run directory"),
    (lambda run, tmp: ["ask", niches_run(tmp / "n"), "What is 3 plus 4?"], "without text"),
    (lambda run, tmp: ["ask", run, "What is 3 plus 4?", "--feedback", "maybe"], "--feedback must be up or down"),
    (lambda run, tmp: ["ask", run, "x" * 1001], "at most 1000"),
])
def test_ask_bad_input_is_one_line_and_exit_code_2(run_copy, tmp_path, monkeypatch, capsys, make_args, message):
    code, _, err = cli(monkeypatch, capsys, *make_args(run_copy, tmp_path))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err


# ---- the HTTP API -----------------------------------------------------------------------------
def test_api_ask_feedback_docs_and_errors(run_copy):
    from fastapi.testclient import TestClient

    from experiments.serve import MAX_BODY, SwarmService, create_app

    service = SwarmService(run_copy, checkpoint_every=2)
    start = service.model.steps
    with TestClient(create_app(service)) as http:
        asked = http.post("/ask", json={"question": "What is 3 plus 4?"})
        assert asked.status_code == 200
        body = asked.json()
        assert len(body["id"]) == 16 and body["answer"] and len(body["agents"]) == 4
        voted = http.post("/feedback", json={"id": body["id"], "vote": "down"})
        assert voted.status_code == 200 and voted.json()["step"] == start + 1
        assert all(r <= 0 for r in voted.json()["rewards"])  # a down vote never rewards the answer given
        agreeing = [h for h in body["memory_hits"] if h["answer"] == body["answer"]]
        assert voted.json()["memory_demoted"] >= len(agreeing)
        rerun = http.post("/ask", json={"question": "What is 3 plus 4?"}).json()
        assert all(h["fitness"] <= 0 for h in rerun["memory_hits"] if h["answer"] == body["answer"])
        again = http.post("/feedback", json={"id": body["id"], "vote": "up"})
        assert again.status_code == 409 and "already has a vote" in again.json()["error"]
        second = http.post("/ask", json={"question": "Convert 3 meters to centimeters."}).json()
        assert http.post("/feedback", json={"id": second["id"], "vote": "up"}).status_code == 200

        assert http.get("/docs").status_code == 200
        paths = http.get("/openapi.json").json()["paths"]
        assert {"/ask", "/feedback", "/health"} <= set(paths)
        bad = {
            "malformed": http.post("/ask", content=b'{"question": ', headers={"content-type": "application/json"}),
            "huge": http.post("/ask", json={"question": "x" * (MAX_BODY + 1)}),
            "long": http.post("/ask", json={"question": "x" * 1001}),
            "blank": http.post("/ask", json={"question": " \n\t "}),
            "type": http.post("/ask", json={"question": ["a"]}),
            "extra": http.post("/ask", json={"question": "a", "admin": True}),
            "vote": http.post("/feedback", json={"id": second["id"], "vote": "sideways"}),
            "unknown": http.post("/feedback", json={"id": "0123abcd", "vote": "up"}),
            "surrogate": http.post("/ask", content=b'{"question": "\\ud800"}', headers={"content-type": "application/json"}),
        }
        status = {name: r.status_code for name, r in bad.items()}
        assert status == {"malformed": 400, "huge": 413, "long": 422, "blank": 422, "type": 422, "extra": 422,
                          "vote": 422, "unknown": 404, "surrogate": 422}
        assert "malformed JSON" in bad["malformed"].json()["error"]
        assert "over 16384 bytes" in bad["huge"].json()["error"]
        assert bad["blank"].json()["error"] == "question: the question is empty"
        assert "unknown ask id" in bad["unknown"].json()["error"]
        assert http.get("/health").json()["votes"] == 2
    events = reader.events(run_copy)
    assert (events["kind"] == "feedback").sum() == 2
    assert {"serve_started", "serve_stopped"} <= set(events["kind"])
    assert load_checkpoint(latest_checkpoint(run_copy))["steps"] == start + 2  # checkpointed as it went


questions = st.one_of(
    st.text(max_size=60),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=("Cs",)), max_size=40),
    st.sampled_from(["", " ", "\u202e", "\x00", "What is 3 plus 4?", "🙂" * 300, "x" * 1001]),
)
bodies = st.one_of(
    st.builds(lambda q: {"question": q}, questions),
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
                 lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                 max_leaves=8),
    st.builds(lambda v, i: {"id": i, "vote": v}, st.sampled_from(["up", "down", "UP", "", 1]),
              st.text(alphabet="0123456789abcdefg", max_size=20)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["/ask", "/feedback"]), body=bodies,
       raw=st.one_of(st.none(), st.binary(max_size=64), st.just(b"x" * 20000)))
def test_fuzzing_the_api_never_crashes_it_or_corrupts_the_run(fuzz_app, path, body, raw):
    http, _ = fuzz_app
    if raw is not None:
        r = http.post(path, content=raw, headers={"content-type": "application/json"})
    else:
        r = http.post(path, json=body)
    assert r.status_code in (200, 400, 404, 409, 413, 422), r.text
    payload = r.json()
    assert ("error" in payload) != (r.status_code == 200)
    if r.status_code != 200:
        assert isinstance(payload["error"], str) and payload["error"] and "\n" not in payload["error"]
    health = http.get("/health").json()
    assert health["status"] == "ok" and health["population"] > 0


@pytest.fixture(scope="module")
def fuzz_app(trained, tmp_path_factory):
    from fastapi.testclient import TestClient

    from experiments.serve import SwarmService, create_app

    run = Path(shutil.copytree(trained, tmp_path_factory.mktemp("fuzz") / "run"))
    service = SwarmService(run, checkpoint_every=1000)
    with TestClient(create_app(service), raise_server_exceptions=True) as http:
        yield http, service
        # after the fuzzing: a real question and vote still work and the swarm is sane
        good = http.post("/ask", json={"question": "What is 3 plus 4?"}).json()
        assert http.post("/feedback", json={"id": good["id"], "vote": "up"}).status_code == 200
        fitness = service.model._global("fitness")
        assert bool(torch.isfinite(fitness).all())
        votes = service.votes
    events = reader.events(run)
    assert (events["kind"] == "feedback").sum() == votes
    assert reader.run_info(run).status == "finished"
    assert load_checkpoint(latest_checkpoint(run))["steps"] == service.model.steps


# ---- a real server and the load test ------------------------------------------------------------
def test_serve_benchmark_quick_runs_a_real_server_and_loses_no_feedback():
    out = subprocess.run([sys.executable, "-m", "benchmarks.serve", "--quick", "--json"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ("ratio", "value", "reference", "unit", "lost_feedback", "p50_ms", "p99_ms", "sizes"):
        assert key in result
    assert result["unit"] == "requests/s" and result["sizes"]["clients"] == 2
    assert result["value"] > 0 and result["reference"] > 0 and result["ratio"] > 0
    assert result["feedback_sent"] > 0 and result["lost_feedback"] == 0 and result["errors"] == 0
    assert result["p99_ms"] >= result["p50_ms"] > 0
