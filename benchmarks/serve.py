"""Load test of `cogitans serve` on loopback, against calling the same query function in process.

    python -m benchmarks.serve [--quick] [--json]

A smoke-size text_qa run is trained first (40 steps). Reference: in this process, a copy of the run
is opened as a `SwarmService` and asked questions in a loop for the same time, voting on every
`FEEDBACK_EVERY`-th answer (the vote applied and written to the run store, as the server does).
Served: `cogitans serve` runs in a subprocess on 127.0.0.1 and a free port; 8 client threads
(quick: 2) do the same mix over HTTP for 20 s (quick: 2 s). Then the server is stopped with
SIGINT (it checkpoints and closes the run store) and every vote that got a 200 is looked up in the
run store's `feedback` events: `lost_feedback` counts the missing ones.

`ratio` = served requests/s over in-process calls/s (target >= 0.3).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from statistics import quantiles

import torch

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "experiments" / "configs" / "text_smoke.yaml"
FEEDBACK_EVERY = 4
HOST = "127.0.0.1"


def question_pool() -> list[str]:
    """Questions from the first four tasks, every phrasing of the first five facts."""
    from swarm.text_tasks import TASKS, question

    return [question(t, p, f) for t in TASKS[:4] for f in range(5) for p in range(len(t.templates))]


def train_run(root: Path) -> Path:
    from experiments.runner import start_run

    return Path(start_run(SMOKE, steps=40, out=root, progress=False)["run_dir"])


def direct(run_dir: Path, seconds: float, questions: list[str]) -> dict[str, float]:
    """Calls per second of `SwarmService.ask` (+ a vote every FEEDBACK_EVERY asks), in process."""
    from experiments.serve import SwarmService

    service = SwarmService(run_dir, checkpoint_every=10**9)
    service.open()
    calls, i = 0, 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        result = service.ask(questions[i % len(questions)])
        calls += 1
        i += 1
        if i % FEEDBACK_EVERY == 0:
            service.feedback(result["id"], "up" if i % (2 * FEEDBACK_EVERY) else "down")
            calls += 1
    elapsed = time.perf_counter() - started
    service.close()
    return {"calls": calls, "seconds": elapsed, "rate": calls / elapsed}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_server(run_dir: Path, port: int) -> subprocess.Popen:
    import httpx

    proc = subprocess.Popen([sys.executable, "-m", "experiments.cli", "serve", str(run_dir), "--host", HOST,
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited: {proc.stderr.read()}")
        try:
            if httpx.get(f"http://{HOST}:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the server did not start within 180 s")


def client(base: str, until: float, questions: list[str], offset: int, out: dict) -> None:
    """Ask and vote until `until`; record latencies, errors and the ids of accepted votes."""
    import httpx

    latencies, voted, errors = [], [], 0
    with httpx.Client(base_url=base, timeout=30) as http:
        i = offset
        while time.perf_counter() < until:
            t0 = time.perf_counter()
            r = http.post("/ask", json={"question": questions[i % len(questions)]})
            latencies.append(time.perf_counter() - t0)
            i += 1
            if r.status_code != 200:
                errors += 1
                continue
            if i % FEEDBACK_EVERY == 0:
                ask_id = r.json()["id"]
                t0 = time.perf_counter()
                f = http.post("/feedback", json={"id": ask_id, "vote": "up" if i % (2 * FEEDBACK_EVERY) else "down"})
                latencies.append(time.perf_counter() - t0)
                if f.status_code == 200:
                    voted.append(ask_id)
                else:
                    errors += 1
    out["latencies"].extend(latencies)
    out["voted"].extend(voted)
    out["errors"] += errors


def served(run_dir: Path, clients: int, seconds: float, questions: list[str]) -> dict[str, float]:
    from experiments import reader

    port = free_port()
    proc = start_server(run_dir, port)
    out = {"latencies": [], "voted": [], "errors": 0}
    try:
        started = time.perf_counter()
        until = started + seconds
        threads = [threading.Thread(target=client, args=(f"http://{HOST}:{port}", until, questions, 7 * c, out))
                   for c in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
    finally:
        proc.send_signal(signal.SIGINT)  # graceful: checkpoint and close the run store
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    events = reader.events(run_dir)
    stored = {json.loads(d)["id"] for d in events.loc[events["kind"] == "feedback", "detail"]}
    lat = sorted(out["latencies"])
    cuts = quantiles(lat, n=100) if len(lat) >= 2 else [lat[0] if lat else 0.0] * 99
    return {"requests": len(lat), "seconds": elapsed, "rate": len(lat) / elapsed, "p50_ms": cuts[49] * 1e3,
            "p99_ms": cuts[98] * 1e3, "feedback_sent": len(out["voted"]),
            "lost_feedback": len(set(out["voted"]) - stored), "errors": out["errors"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 clients for 2 seconds")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args()
    clients, seconds = (2, 2.0) if args.quick else (8, 20.0)
    torch.set_num_threads(1)
    questions = question_pool()
    with tempfile.TemporaryDirectory(prefix="cogitans-serve-") as tmp:
        run_dir = train_run(Path(tmp))
        copy = Path(tmp) / "direct"
        shutil.copytree(run_dir, copy)
        ref = direct(copy, seconds, questions)
        got = served(run_dir, clients, seconds, questions)
    ratio = got["rate"] / ref["rate"]
    print(f"{'':<22}{'requests/s':>12}{'p50 ms':>9}{'p99 ms':>9}{'requests':>10}")
    print(f"{'in process (direct)':<22}{ref['rate']:>12.1f}{'':>9}{'':>9}{ref['calls']:>10}")
    print(f"{'served, ' + str(clients) + ' clients':<22}{got['rate']:>12.1f}{got['p50_ms']:>9.2f}{got['p99_ms']:>9.2f}"
          f"{got['requests']:>10}")
    print(f"ratio {ratio:.2f} (target >= 0.3); feedback sent {got['feedback_sent']}, lost {got['lost_feedback']}, "
          f"errors {got['errors']}")
    if args.json:
        print(json.dumps({
            "ratio": ratio, "value": got["rate"], "reference": ref["rate"], "unit": "requests/s",
            "p50_ms": got["p50_ms"], "p99_ms": got["p99_ms"], "lost_feedback": got["lost_feedback"],
            "feedback_sent": got["feedback_sent"], "errors": got["errors"], "requests": got["requests"],
            "sizes": {"clients": clients, "seconds": seconds, "questions": len(questions),
                      "feedback_every": FEEDBACK_EVERY, "run": "text_smoke, 40 steps"},
        }))


if __name__ == "__main__":
    main()
