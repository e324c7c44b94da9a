"""Fixtures for the dashboard tests: small run stores and a Streamlit AppTest of the whole app."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from dashboard.launch import APP, ROOT_ENV
from tests.dashboard.stores import write_run, write_sweep

PAGES = ["runs", "population", "specialisation", "lineages", "memory", "gene_pool", "sharing", "compare"]


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory) -> Path:
    """A root with a plain run, a run with gene-pool and shard columns, and a 2 x 2 sweep."""
    root = tmp_path_factory.mktemp("runs")
    write_run(root / "plain-1", 40)
    write_run(root / "pool-1", 30, pool=True, shards=2, seed=3)
    write_sweep(root)
    return root


def plain(value):
    """Plotly's JSON with its base64 typed arrays ({"dtype", "bdata"}) turned into lists."""
    if isinstance(value, dict):
        if "bdata" in value and "dtype" in value:
            array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
            if "shape" in value:
                array = array.reshape([int(n) for n in str(value["shape"]).split(",")])
            return array.tolist()
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


class App:
    """An AppTest of `dashboard/app.py` for one runs root, with helpers to read what it shows."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch, run: str | None = None):
        from streamlit.testing.v1 import AppTest

        monkeypatch.setenv(ROOT_ENV, str(root))
        self.at = AppTest.from_file(str(APP), default_timeout=60)
        if run:
            self.at.query_params["run"] = run
        self.at.run()

    def page(self, name: str) -> App:
        self.at.switch_page(f"views/{name}.py").run()
        return self

    def rerun(self) -> App:
        self.at.run()
        return self

    def problems(self) -> list[str]:
        """Uncaught exceptions and error boxes: both should be empty on a healthy page."""
        return [str(e.value) for e in self.at.exception] + [str(e.value) for e in self.at.error]

    def charts(self) -> list[dict]:
        """Each plotly chart's figure as plain JSON (typed arrays decoded to lists)."""
        return [plain(json.loads(e.proto.spec)) for e in self.at.get("plotly_chart")]

    def chart_titles(self) -> list[str]:
        return [c["layout"]["title"]["text"] for c in self.charts()]

    def texts(self, kind: str) -> list[str]:
        return [str(e.value) for e in getattr(self.at, kind)]

    def metrics(self) -> dict[str, str]:
        return {m.label: m.value for m in self.at.metric}

    def downloads(self) -> list[str]:
        return [b.proto.label for b in self.at.get("download_button")]


@pytest.fixture
def app(monkeypatch):
    def make(root: Path, run: str | None = None) -> App:
        return App(root, monkeypatch, run)

    return make
