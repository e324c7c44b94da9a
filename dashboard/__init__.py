"""Live dashboard (Streamlit). Reads the run store only; never imports ray or torch."""
