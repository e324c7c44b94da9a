"""The dashboard never imports torch or ray, and `import dashboard` does not import Streamlit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.dashboard.stores import write_run

REPO = Path(__file__).resolve().parents[2]


def run_python(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_plain_modules_import_neither_torch_ray_nor_streamlit():
    loaded = run_python(
        "import sys, json\n"
        "import dashboard, dashboard.data, dashboard.faults, dashboard.figures, dashboard.phylogeny, dashboard.launch\n"
        "import experiments.reader\n"
        "print(json.dumps({m: m in sys.modules for m in ('torch', 'ray', 'streamlit', 'mesa')}))\n"
    )
    assert loaded == {"torch": False, "ray": False, "streamlit": False, "mesa": False}


def test_running_every_page_imports_neither_torch_nor_ray(tmp_path):
    write_run(tmp_path / "r-1", 20, pool=True, shards=1)
    loaded = run_python(
        "import os, sys, json\n"
        f"os.environ['COGITANS_RUNS_ROOT'] = {str(tmp_path)!r}\n"
        "from streamlit.testing.v1 import AppTest\n"
        "import dashboard.ui, dashboard.views.population\n"
        "at = AppTest.from_file('dashboard/app.py', default_timeout=60).run()\n"
        "errors = len(at.exception)\n"
        "for page in ('population', 'specialisation', 'lineages', 'memory', 'gene_pool', 'sharing', 'compare'):\n"
        "    at.switch_page(f'views/{page}.py').run()\n"
        "    errors += len(at.exception)\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'ray': 'ray' in sys.modules, 'errors': errors}))\n"
    )
    assert loaded == {"torch": False, "ray": False, "errors": 0}
