"""Live dashboard (Streamlit). Reads the run store only; never imports ray or torch.

`start` serves the app (`dashboard/app.py`, pages in `dashboard/views/`) for a runs root;
`serve` keeps a started dashboard up until Ctrl-C. The pure parts are tested without Streamlit:
`dashboard.data` and `dashboard.phylogeny` shape what `experiments.reader` returns,
`dashboard.figures` turns it into plotly figures. Streamlit is imported only by the app, its
pages and `dashboard.ui`.
"""

from dashboard.launch import serve, start

__all__ = ["serve", "start"]
