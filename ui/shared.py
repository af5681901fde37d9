"""Work done once for every browser watching, not once per browser: process-wide caches keyed by
run and step (or by what a result was computed from), so thirty viewers of a live run cost the
server little more than one (``bench/classroom.py`` measures it).

- :func:`live_view`: one run's live figures, from one :class:`ui.metrics.MetricCache` per run that
  every session shares; within ``fresh`` seconds of the last read a refresh reuses it without even
  asking the run store.
- :func:`run_row`: a run's store row, re-read at most every ``fresh`` seconds (the progress bar asks
  every second or two per viewer).
- :class:`SharedLRU` / :func:`shared_lru`: a thread-safe least-recently-used memo shared by the
  sessions (Predict's sample and dataset images: the same pictures for everyone);
  :func:`fresh_memo` on top of it for what runs that train keep changing (a lesson's verdict and
  charts, a study's curves).

Every Streamlit session runs its scripts in a thread of its own, so each entry has a lock; a slow
reader of one run never holds up the viewers of another.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import streamlit as st

from ui.engine import runs_dir
from ui.live_view import KEEP_LOOKS, LiveView, live_figures
from ui.metrics import MetricCache

KEEP_RUNS = 16  # runs whose metric series the process keeps while people flip between them
FRESH_S = 2.0  # the live charts refresh every 3 s: a view this fresh is as good as a new read


class SharedLRU:
    """At most ``keep`` entries, least recently used out first; safe to share between threads."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any, default: Any = None) -> Any:
        with self._lock:
            if key not in self._items:
                return default
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Any, value: Any) -> Any:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.keep:
                self._items.popitem(last=False)
        return value


class LiveFeed:
    """One run's metric series and the views built from them, shared by every session."""

    def __init__(self, run_id: str) -> None:
        self.cache = MetricCache(run_id)
        self.views: OrderedDict[tuple, tuple[float, LiveView]] = OrderedDict()  # look -> (read at, view)
        self.lock = threading.Lock()
        self.builds = 0  # views built (a refresh that reused one does not count): what the tests check


class LiveFeeds:
    def __init__(self, keep: int = KEEP_RUNS) -> None:
        self._feeds: OrderedDict[str, LiveFeed] = OrderedDict()
        self._rows: dict[str, tuple[float, dict | None]] = {}
        self._lock = threading.Lock()
        self.keep = keep

    def feed(self, run_id: str) -> LiveFeed:
        with self._lock:
            if run_id not in self._feeds:
                self._feeds[run_id] = LiveFeed(run_id)
                while len(self._feeds) > self.keep:
                    gone, _ = self._feeds.popitem(last=False)
                    self._rows.pop(gone, None)
            self._feeds.move_to_end(run_id)
            return self._feeds[run_id]

    def row(self, store: Any, run_id: str, fresh: float) -> dict | None:
        now = time.monotonic()
        with self._lock:
            hit = self._rows.get(run_id)
        if hit is not None and now - hit[0] < fresh:
            return hit[1]
        row = store.get_run(run_id)
        with self._lock:
            self._rows[run_id] = (now, row)
        return row


@st.cache_resource(show_spinner=False)
def _feeds(runs_dir: str) -> LiveFeeds:
    return LiveFeeds()


def feeds() -> LiveFeeds:
    """The process's live feeds for this dashboard's runs directory."""
    return _feeds(runs_dir())


def live_view(store: Any, run_id: str, smoothing: float, log_y: bool, meta: Mapping | None = None,
              cosine_matrix: Callable[..., list[list[float]]] | None = None, fresh: float | None = None) -> LiveView | None:
    """:func:`ui.live_view.live_figures` for ``run_id`` with the shared series: the first session
    to refresh after ``fresh`` seconds reads the new rows and builds the figures; the others, and
    the same session within ``fresh`` s, get those very figures; while one session builds, the
    others get the last view at once rather than wait for it. ``None`` when the run is gone."""
    fresh = FRESH_S if fresh is None else fresh
    feed = feeds().feed(run_id)
    look = (round(float(smoothing), 4), bool(log_y), cosine_matrix is not None)
    hit = feed.views.get(look)
    if hit is not None and time.monotonic() - hit[0] < fresh:
        return hit[1]
    if not feed.lock.acquire(blocking=hit is None or fresh <= 0):
        return hit[1]  # another session is reading the new rows: show the last view, not a wait
    try:  # one reader per run; viewers of other runs do not wait
        hit = feed.views.get(look)
        if hit is not None and time.monotonic() - hit[0] < fresh:  # built while this one waited
            return hit[1]
        view = live_figures(store, run_id, smoothing, log_y, feed.cache, meta, cosine_matrix)
        if view is None:
            feed.views.clear()
            return None
        feed.builds += 1
        feed.views[look] = (time.monotonic(), view)
        feed.views.move_to_end(look)
        while len(feed.views) > KEEP_LOOKS:
            feed.views.popitem(last=False)
        return view
    finally:
        feed.lock.release()


def fresh_memo(name: str, key: Any, mark: Any, compute: Callable[[], Any], settled: Any = None,
               fresh: float | None = None, keep: int = 256) -> Any:
    """``compute()``, shared by every session: reused while ``mark`` (what it was computed from, e.g.
    the runs' statuses and steps) is unchanged, and for ``fresh`` seconds after it was computed
    when only the steps moved (runs that train move them at every step; a refresh every few
    seconds per viewer would otherwise rebuild it per viewer): ``settled`` (e.g. the statuses)
    must be the same, so a run that ended is always drawn from its last rows."""
    fresh = FRESH_S if fresh is None else fresh
    lru = shared_lru(name, keep)
    hit = lru.get(key)
    now = time.monotonic()
    if hit is not None and (hit[0] == mark or (hit[3] == settled and now - hit[1] < fresh)):
        return hit[2]
    value = compute()
    lru.put(key, (mark, now, value, settled))
    return value


def run_row(store: Any, run_id: str, fresh: float = 1.0) -> dict | None:
    """``store.get_run(run_id)``, read at most every ``fresh`` seconds for all sessions together."""
    return feeds().row(store, run_id, fresh)


@st.cache_resource(show_spinner=False)
def _lrus() -> dict[str, SharedLRU]:
    return {}


_LRU_LOCK = threading.Lock()


def shared_lru(name: str, keep: int) -> SharedLRU:
    """The process-wide memo called ``name`` (made on first use with room for ``keep`` entries)."""
    lrus = _lrus()
    with _LRU_LOCK:
        return lrus.setdefault(name, SharedLRU(keep))
