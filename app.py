"""MTL Studio: the dashboard's entry point (``streamlit run app.py``).

Sets the page config and the navigation; each page is a script under ``pages/``.
"""
from __future__ import annotations

import streamlit as st

from ui.entry import app_ran
from ui.roles import access_sidebar

st.set_page_config(page_title="MTL Studio", page_icon="🧪", layout="wide")

PAGES = [  # (file, title, icon)
    ("pages/home.py", "Home", ":material/home:"),
    ("pages/setup.py", "Setup", ":material/tune:"),
    ("pages/live.py", "Live training", ":material/monitoring:"),
    ("pages/compare.py", "Compare runs", ":material/compare_arrows:"),
    ("pages/studies.py", "Studies", ":material/science:"),
    ("pages/lessons.py", "Lessons", ":material/school:"),
    ("pages/playground.py", "Gradient playground", ":material/scatter_plot:"),
    ("pages/predict.py", "Predict", ":material/image_search:"),
    ("pages/inspect.py", "Inspect errors", ":material/troubleshoot:"),
    ("pages/models.py", "Compress & export", ":material/compress:"),
    ("pages/data.py", "Data", ":material/photo_library:"),
]

nav = st.navigation([st.Page(path, title=title, icon=icon, default=path == "pages/home.py")
                     for path, title, icon in PAGES])
app_ran()  # a page opened by a link first reruns through here (ui/entry.py)
access_sidebar()  # shared (classroom) mode: who you are, above every page's own sidebar
nav.run()
