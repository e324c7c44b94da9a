"""The dashboard app (`streamlit run dashboard/app.py`): sidebar, navigation, one file per page.

The pages live in `dashboard/views/`; each draws itself when Streamlit executes it. The runs
root comes from the environment variable set by `dashboard.launch` (default `runs`).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import ui

VIEWS = Path(__file__).resolve().with_name("views")
PAGES = [
    ("runs.py", "Runs", "runs"),
    ("population.py", "Population", "population"),
    ("specialisation.py", "Specialisation", "specialisation"),
    ("lineages.py", "Lineages", "lineages"),
    ("memory.py", "Memory", "memory"),
    ("gene_pool.py", "Gene pool", "gene-pool"),
    ("sharing.py", "Sharing & faults", "sharing"),
    ("compare.py", "Compare & sweeps", "compare"),
]

st.set_page_config(page_title="Cogitans dashboard", layout="wide")
ui.keep_state("compare", "live")
page = st.navigation([st.Page(VIEWS / file, title=title, url_path=url, default=(url == "runs"))
                      for file, title, url in PAGES])
runs = ui.list_runs()
ui.sidebar(runs)
ui.watch_for_new_runs(runs)
page.run()
