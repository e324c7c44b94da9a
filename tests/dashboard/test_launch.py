"""`dashboard.launch`: the Streamlit command, port checks, starting and stopping a real server."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from dashboard import launch
from genome.errors import BadInput

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_command_runs_the_app_headless_without_usage_statistics():
    cmd = launch.command("127.0.0.1", 8765)
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4] == str(launch.APP)
    flags = dict(zip(cmd[5::2], cmd[6::2]))
    assert flags["--server.port"] == "8765" and flags["--server.address"] == "127.0.0.1"
    assert flags["--server.headless"] == "true" and flags["--browser.gatherUsageStats"] == "false"
    assert flags["--client.showErrorDetails"] == "none"


def test_port_in_use_and_bad_port_are_clear_errors(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(BadInput, match=f"127.0.0.1:{port}.*pass another --port"):
            launch.start(tmp_path, port=port, wait=False)
    with pytest.raises(BadInput, match="not a TCP port"):
        launch.start(tmp_path, port=70000, wait=False)


def test_cli_reports_a_busy_port_in_one_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "experiments.cli", "dashboard", str(tmp_path), "--port", str(port)],
                             capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 2
    assert out.stderr.strip().startswith("error: cannot serve the dashboard") and "Traceback" not in out.stderr


def test_start_serves_the_app_and_stops(tmp_path, capsys):
    port = free_port()
    proc = launch.start(tmp_path / "runs", port=port, wait=False)
    try:
        assert f"Dashboard: http://127.0.0.1:{port}" in capsys.readouterr().out
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{port}/_stcore/health", timeout=5) as reply:
            assert reply.read() == b"ok"
        environ = Path(f"/proc/{proc.pid}/environ")
        if environ.exists():  # Linux: the runs root reaches the app through the environment
            assert f"{launch.ROOT_ENV}={tmp_path / 'runs'}".encode() in environ.read_bytes().split(b"\0")
    finally:
        launch.stop(proc)
    assert proc.poll() is not None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux only")
def test_start_without_wait_leaves_no_server_behind_when_the_parent_dies(tmp_path):
    """`cogitans run --dashboard` killed hard: Streamlit goes with it (no orphan holding the port)."""
    port = free_port()
    script = (f"from dashboard.launch import start; from pathlib import Path; import time; "
              f"p = start(Path({str(tmp_path)!r}), port={port}, wait=False); print('child', p.pid, flush=True); "
              f"time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        line = ""
        while not line.startswith("child"):
            line = parent.stdout.readline()
            assert line, "the parent exited before starting the dashboard"
        child = int(line.split()[1])
    finally:
        parent.kill()  # SIGKILL: no atexit, no finally
        parent.wait()
    deadline = time.monotonic() + 10
    while _running(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(child)


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
