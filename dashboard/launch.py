"""Start the dashboard: `streamlit run dashboard/app.py` in a child process, for one runs root.

Streamlit is imported by the app in the child, never here, so `import dashboard` stays light.
The runs root travels to the app in the environment variable `COGITANS_RUNS_ROOT`.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from genome.errors import BadInput

ROOT_ENV = "COGITANS_RUNS_ROOT"
APP = Path(__file__).with_name("app.py")
READY_SECONDS = 30.0


def command(host: str, port: int) -> list[str]:
    """The `streamlit run` command line (headless, no usage statistics, no file watcher)."""
    return [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.port", str(port), "--server.address", host, "--server.headless", "true",
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
        "--server.runOnSave", "false", "--client.showErrorDetails", "none",
        "--client.toolbarMode", "viewer", "--theme.base", "light",
    ]


def start(root: Path, host: str = "127.0.0.1", port: int = 8501, wait: bool = True) -> subprocess.Popen | None:
    """Serve the dashboard for every run under `root` at http://host:port.

    Args:
        root: runs root (it may not exist yet; the dashboard says so and waits for runs).
        host: address to bind; localhost unless told otherwise.
        port: TCP port; `BadInput` when it is taken.
        wait: True blocks until Ctrl-C (or until Streamlit exits) and then stops Streamlit;
            False returns the running process, which is stopped when this interpreter exits.
    """
    if not 0 < port < 65536:
        raise BadInput(f"--port {port} is not a TCP port (1-65535)")
    _check_free(host, port)
    log = tempfile.NamedTemporaryFile(prefix="cogitans-dashboard-", suffix=".log", delete=False)
    env = {**os.environ, ROOT_ENV: str(Path(root).expanduser().resolve())}
    proc = subprocess.Popen(command(host, port), env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    log.close()
    atexit.register(stop, proc)
    url = f"http://{_display_host(host)}:{port}"
    if not _wait_ready(proc, url):
        tail = Path(log.name).read_text(errors="replace").strip().splitlines()[-5:]
        stop(proc)
        raise BadInput(f"the dashboard did not start ({' / '.join(tail) or 'no output'}); log: {log.name}")
    print(f"Dashboard: {url}  (runs root {env[ROOT_ENV]}; log {log.name})", flush=True)
    if not wait:
        return proc
    serve(proc)
    return None


def serve(proc: subprocess.Popen) -> None:
    """Block until Ctrl-C or SIGTERM (or until Streamlit exits), then stop Streamlit cleanly.

    `cogitans run --dashboard` can call this after the run to keep showing the finished run.
    """
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        proc.wait()
    except KeyboardInterrupt:
        print("\nStopping the dashboard.", flush=True)
    finally:
        stop(proc)
        signal.signal(signal.SIGTERM, previous)


def stop(proc: subprocess.Popen) -> None:
    """Stop Streamlit: SIGTERM, then SIGKILL if it has not exited after 5 s."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _die_with_parent() -> None:
    """In the child before exec: on Linux, get SIGTERM when the parent dies, so a killed
    `cogitans` never leaves Streamlit behind (atexit does not run on a signal)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def _check_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Tornado binds: TIME_WAIT is fine
        try:
            sock.bind((host, port))
        except OSError as err:
            raise BadInput(f"cannot serve the dashboard on {host}:{port} ({err.strerror}); "
                           "pass another --port") from None


def _display_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "") else (f"[{host}]" if ":" in host else host)


def _wait_ready(proc: subprocess.Popen, url: str) -> bool:
    """True once Streamlit answers its health check; False if it exits or takes too long."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via an http_proxy
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with opener.open(f"{url}/_stcore/health", timeout=1) as reply:
                if reply.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False
