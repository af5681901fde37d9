"""Plotly charts that redraw in place, for the parts of a page that refresh every few seconds.

``st.plotly_chart`` gives a chart an identity derived from its figure, so each time a live
figure gains points the browser unmounts the chart and builds a new one from nothing: about
95 ms of a core per chart on a 2-core machine, and the reader's zoom is lost at every refresh.
:func:`live_chart` mounts a small ``st.components.v2`` component per key instead; it hands each
new figure to ``Plotly.react`` on the same graph, which redraws in place (about a quarter of the
cost) and keeps zoom and hidden traces (the figures set ``layout.uirevision``).

The component uses the plotly.js that the installed plotly package ships (the version its
figures' JSON is written for), served by Streamlit's static file serving from ``static/`` next
to ``app.py`` (``server.enableStaticServing`` in ``.streamlit/config.toml``). Where that is not
possible (static serving off, a read-only checkout, a Streamlit without ``components.v2``) the
chart falls back to ``st.plotly_chart``, which looks the same and only costs more.
"""
from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import plotly
import plotly.graph_objects as go
import plotly.io as pio
import streamlit as st

LOG = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).resolve().parents[1] / "static"  # Streamlit serves <app dir>/static
COMPONENT = "mtl_live_chart"
# the look of Streamlit's own plotly theme (transparent, light grid, grey axis text), in a few
# lines instead of plotly's default template (8 kB of JSON with every figure)
TEMPLATE: dict[str, Any] = {"layout": {
    "font": {"family": '"Source Sans", "Source Sans Pro", sans-serif', "size": 12, "color": "#31333f"},
    "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)",
    "xaxis": {"showgrid": False, "gridcolor": "#e6eaf1", "zeroline": False, "linecolor": "#e6eaf1", "automargin": True,
              "tickfont": {"color": "#808495"}, "title": {"font": {"color": "#808495"}}},
    "yaxis": {"gridcolor": "#e6eaf1", "zeroline": False, "linecolor": "#e6eaf1", "automargin": True,
              "tickfont": {"color": "#808495"}, "title": {"font": {"color": "#808495"}}},
    "hoverlabel": {"font": {"family": '"Source Sans", sans-serif'}},
    "legend": {"bgcolor": "rgba(0,0,0,0)"},
}}

# The component's script. ``data`` is the figure as a JSON string; the graph div is created on
# the first call and kept, so later calls are Plotly.react on the same graph.
JS = r"""
const SRC = "app/static/__PLOTLY_FILE__";
const CONFIG = { displaylogo: false, responsive: false };
let loading = null;
function plotly() {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  if (!loading) loading = new Promise((resolve, reject) => {
    const s = document.createElement("script");
    s.src = SRC;
    s.onload = () => window.Plotly ? resolve(window.Plotly) : reject(new Error("no Plotly in " + SRC));
    s.onerror = () => { loading = null; reject(new Error("could not load " + SRC)); };
    document.head.appendChild(s);
  });
  return loading;
}
function draw(gd) {  // the latest figure, if any is waiting
  const fig = gd.__pending;
  if (!fig) return;
  gd.__pending = null;
  plotly().then((P) => {
    if (gd.__failed) { gd.__failed = false; gd.textContent = ""; gd.style.color = ""; }
    return P.react(gd, fig.data, fig.layout, CONFIG);
  }, (err) => {
    gd.__failed = true;
    gd.textContent = "This chart cannot be drawn: " + err.message + " from the dashboard. Restart it from the " +
      "repository folder (streamlit run app.py): it places that file in static/, and its .streamlit/config.toml " +
      "turns on the static file serving that serves it.";
    gd.style.color = "#b2182b";
  });
}
// a chart scrolled out of sight, or in a hidden tab, keeps only its latest figure and draws it
// when it is seen again: a refresh costs nothing there
const seen = new IntersectionObserver((entries) => entries.forEach((e) => {
  e.target.__visible = e.isIntersecting;
  if (e.isIntersecting && !document.hidden) draw(e.target);
}), { rootMargin: "300px" });
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) document.querySelectorAll(".mtl-live-chart").forEach((gd) => { if (gd.__visible !== false) draw(gd); });
});
const charts = new Set();
function forget() {  // charts the page no longer shows (another run, another page)
  for (const gd of charts) {
    if (gd.isConnected) continue;
    charts.delete(gd);
    seen.unobserve(gd);
    gd.__resize.disconnect();
    if (window.Plotly) window.Plotly.purge(gd);
  }
}
export default function (component) {
  const { parentElement, data } = component;
  forget();
  let gd = parentElement.querySelector(".mtl-live-chart");
  if (!gd) {
    gd = document.createElement("div");
    gd.className = "mtl-live-chart";
    gd.style.width = "100%";
    gd.style.contain = "layout paint";  // a redraw inside never re-lays out the rest of the page
    parentElement.appendChild(gd);
    charts.add(gd);
    seen.observe(gd);
    gd.__resize = new ResizeObserver(() => {
      if (gd.isConnected && window.Plotly && gd._fullLayout) window.Plotly.Plots.resize(gd);
    });
    gd.__resize.observe(gd);
  }
  gd.__pending = JSON.parse(data);
  if (gd.__pending.layout && gd.__pending.layout.height) gd.style.minHeight = gd.__pending.layout.height + "px";
  if (gd.__visible !== false && !document.hidden) draw(gd);
}
"""


def plotly_file() -> str:
    """File name of the plotly.js that the installed plotly package ships (its version in it)."""
    from plotly.offline import get_plotlyjs_version

    return f"plotly-{get_plotlyjs_version()}.min.js"


def ensure_plotly_js(static_dir: Path = STATIC_DIR) -> bool:
    """Place plotly's own ``plotly.min.js`` in ``static_dir`` (once; atomically, so a second
    process never serves half a file). ``False`` when it cannot be written there."""
    target = static_dir / plotly_file()
    source = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    part = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        if target.is_file() and target.stat().st_size == source.stat().st_size:
            return True
        static_dir.mkdir(parents=True, exist_ok=True)
        part.write_bytes(source.read_bytes())
        os.replace(part, target)
        return True
    except OSError as e:
        LOG.warning("live charts fall back to st.plotly_chart: cannot place plotly.js in %s (%s)", static_dir, e)
        try:
            part.unlink(missing_ok=True)
        except OSError:
            pass
        return False


@st.cache_resource(show_spinner=False)
def _renderer() -> Any | None:
    """The component's mounting command, or ``None`` where it cannot work (see the module doc)."""
    if not st.get_option("server.enableStaticServing"):
        return None
    try:
        from streamlit.components.v2 import component
    except ImportError:  # a Streamlit older than components v2
        return None
    if not ensure_plotly_js():
        return None
    return component(COMPONENT, js=JS.replace("__PLOTLY_FILE__", plotly_file()), isolate_styles=False)


def figure_json(fig: go.Figure) -> str:
    """``fig`` as plotly JSON with :data:`TEMPLATE` as its template (numpy arrays as typed base64)."""
    spec = fig.to_plotly_json()
    layout = dict(spec.get("layout") or {})
    layout["template"] = TEMPLATE
    title = layout.get("title")
    if isinstance(title, dict) and title.get("text") and not str(title["text"]).startswith("<b>"):
        layout["title"] = {**title, "text": f"<b>{title['text']}</b>"}  # Streamlit's theme bolds titles too
    return pio.to_json({"data": spec.get("data", []), "layout": layout}, validate=False)


_JSON: OrderedDict[int, tuple[go.Figure, str]] = OrderedDict()  # id(figure) -> (the figure, its JSON)
_JSON_LOCK = threading.Lock()
KEEP_JSON = 256  # figures; a live page of a four-task run shows nine


def shared_json(fig: go.Figure) -> str:
    """:func:`figure_json` of ``fig``, written once however many sessions draw that very figure
    (the live page's figures are shared by its viewers: ui/shared.py). Keyed by identity: the
    entry holds the figure, so its id cannot be reused while the entry lives."""
    with _JSON_LOCK:
        hit = _JSON.get(id(fig))
        if hit is not None and hit[0] is fig:
            _JSON.move_to_end(id(fig))
            return hit[1]
    text = figure_json(fig)
    with _JSON_LOCK:
        _JSON[id(fig)] = (fig, text)
        while len(_JSON) > KEEP_JSON:
            _JSON.popitem(last=False)
    return text


def live_chart(fig: go.Figure, key: str) -> None:
    """Draw ``fig``; called again with the same ``key`` (a fragment's next run), the same chart
    is updated in place. Falls back to ``st.plotly_chart`` where the component cannot work."""
    render = _renderer()
    if render is None:
        st.plotly_chart(fig, key=key, width="stretch")
        return
    render(data=shared_json(fig), key=key)
