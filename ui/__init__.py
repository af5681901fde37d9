"""Widgets and plotly charts shared by several pages. May import Streamlit and plotly, never torch."""
