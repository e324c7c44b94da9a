"""Dashboard pages: each file is run by Streamlit as a page script (`render()` at the bottom)."""
