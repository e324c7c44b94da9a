"""The real thing: `cogitans dashboard` in headless Chromium while `cogitans run` writes a run.

Skipped only when Chromium or chromedriver is not installed (Debian: `apt-get install -y chromium
chromium-driver`). Needs selenium (in the test extra).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments import reader

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
CHROMEDRIVER = shutil.which("chromedriver")
POPULATION_TITLE = "Population: living agents"
# The population figure's last step and number of points, and the "Step" number on the page.
READ_PAGE = """
const plots = Array.from(document.querySelectorAll('.js-plotly-plot'));
// Streamlit's theme wraps titles in <b> tags: compare the text only.
const text = t => (t || '').replace(/<[^>]*>/g, '');
const fig = plots.find(p => p.layout && p.layout.title && text(p.layout.title.text) === arguments[0]);
const values = Array.from(document.querySelectorAll('[data-testid="stMetricValue"]')).map(e => e.innerText);
const errors = document.querySelectorAll('[data-testid="stException"]').length;
if (!fig || !fig.data || !fig.data.length) return {found: false, values: values, errors: errors};
const raw = fig.data[0].x;  // plotly keeps numpy arrays as {dtype, bdata, _inputArray}
const x = raw._inputArray || raw;
return {found: true, last: Number(x[x.length - 1]), points: x.length, values: values, errors: errors};
"""

pytestmark = pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                                reason="needs Debian's chromium and chromium-driver (apt-get install -y "
                                       "chromium chromium-driver)")


def cogitans() -> list[str]:
    script = Path(sys.executable).with_name("cogitans")
    return [str(script)] if script.exists() else [sys.executable, "-m", "experiments.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(what: str, check, timeout: float = 60.0, every: float = 0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM (SIGINT may be ignored when pytest itself runs in the background), then SIGKILL."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def chrome(profile: Path):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is needed for the browser test: pip install selenium (the test extra has it)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--no-first-run", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                f"--user-data-dir={profile}", "--window-size=1400,1900"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def page_state(driver, title: str = POPULATION_TITLE) -> dict:
    return driver.execute_script(READ_PAGE, title)


def test_population_figure_follows_a_running_run(tmp_path):
    """Open the dashboard on an empty root, start a run: the run appears by itself, and its
    population figure and step number move on as the run advances."""
    runs = tmp_path / "runs"
    port = free_port()
    dashboard = subprocess.Popen([*cogitans(), "dashboard", str(runs), "--port", str(port)],
                                 cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run = driver = None
    try:
        banner = dashboard.stdout.readline()
        assert banner.startswith(f"Dashboard: http://127.0.0.1:{port}"), banner
        driver = chrome(tmp_path / "chrome-profile")
        driver.get(f"http://127.0.0.1:{port}/population")
        wait_for("the empty-root message", lambda: "has no runs yet" in driver.page_source
                 or "does not exist yet" in driver.page_source)
        run = subprocess.Popen(
            [*cogitans(), "run", str(REPO / "experiments" / "configs" / "smoke.yaml"), "--out", str(runs),
             "--steps", "20000", "--no-progress", "--set", "run.threads=1"],
            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        first = wait_for("the new run's population figure", lambda: (lambda s: s if s["found"] else None)(
            page_state(driver)), timeout=90)
        assert first["errors"] == 0 and first["last"] >= 1
        later = wait_for("the figure to show later steps", lambda: (lambda s: s if s["found"] and s["last"] > first[
            "last"] else None)(page_state(driver)), timeout=60)
        assert int(later["values"][0].replace(",", "")) > int(first["values"][0].replace(",", ""))  # "Step"
        assert later["errors"] == 0
        time.sleep(1.5)  # let plotly finish drawing before the picture
        driver.save_screenshot(str(tmp_path / "population.png"))
        run_dir = reader.list_runs(runs)[0].path
        driver.get(f"http://127.0.0.1:{port}/lineages?run={run_dir.name}")
        wait_for("the lineages page", lambda: page_state(driver, "Founder lineages still alive")["found"])
        time.sleep(1.5)
        driver.save_screenshot(str(tmp_path / "lineages.png"))
        assert (tmp_path / "population.png").stat().st_size > 10_000
        assert run.poll() is None, "the run should still be running while the dashboard follows it"
    finally:
        if driver is not None:
            driver.quit()
        stop(dashboard)
        if run is not None:
            stop(run)
