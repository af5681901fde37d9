"""A headless Streamlit viewer: one browser tab's websocket traffic, without the browser.

It speaks the protocol of Streamlit's frontend (1.67) on ``/_stcore/stream``: the subprotocol
list ``["streamlit", <xsrf token or a placeholder>]``, one ``BackMsg.rerun_script`` to load the
page (query string, page name from the URL path, no page hash yet, browser context), then

- an ``auto_rerun`` ForwardMsg (a fragment with ``run_every``) starts a timer that sends the
  fragment's rerun (``fragment_id``, ``is_auto_rerun``) every ``interval`` seconds, as the
  frontend's ``setInterval`` does: at a fixed rate, whether or not the last rerun has finished;
  the same interval again is ignored, ``stop_auto_rerun`` cancels it;
- ``cacheable`` messages are remembered by hash and every rerun lists those hashes
  (``cached_message_hashes``), so the server sends a ``ref_hash`` instead of a delta it has sent
  before, as to a browser; the cache ages by full script runs like the frontend's;
- ``page_info_changed`` updates the query string the next reruns send, ``navigation`` the page
  hash (``new_session``'s is the entry point's, app.py);
- the widget states sent are empty: the server keeps every widget's last value (the browser
  would echo the same values back; the pages' fragment reruns read no widget they change).

Nothing else needs an answer: the heartbeat is the host frame's, the server pings at the
websocket level (answered by ``websockets``). Each fragment rerun's latency is the time from its
BackMsg to the ``script_finished`` whose run lists that fragment (reruns sent while one is
queued are coalesced by the server, and answered by the same finish).
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

MAX_CACHED_AGE = 2  # full runs a cached message survives unseen (the server's new_session says so too)
FRAGMENT_DONE = ForwardMsg.ScriptFinishedStatus.FINISHED_FRAGMENT_RUN_SUCCESSFULLY
FULL_DONE = ForwardMsg.ScriptFinishedStatus.FINISHED_SUCCESSFULLY


@dataclass
class ViewerStats:
    """What one viewer saw: counts, markdown it was sent, and rerun latencies (seconds)."""

    messages: int = 0
    bytes: int = 0
    deltas: int = 0
    refs: int = 0
    full_runs: int = 0  # script_finished of a whole-page run
    fragment_runs: int = 0
    exceptions: list[str] = field(default_factory=list)
    markdown: list[str] = field(default_factory=list)
    fragments: dict[str, float] = field(default_factory=dict)  # fragment id -> auto-rerun interval
    latencies: list[tuple[float, str, float]] = field(default_factory=list)  # (sent at, fragment, seconds)
    first_load_s: float | None = None  # first rerun_script to the first whole-page script_finished


class Viewer:
    """One viewer of ``url`` (``http://host:port/page?query``): ``await viewer.run()`` until
    ``viewer.close()``; ``stats`` fills in as messages arrive."""

    def __init__(self, url: str, keep_markdown: int = 200) -> None:
        u = urlsplit(url)
        self.ws_url = f"ws://{u.netloc}/_stcore/stream"
        self.origin = f"http://{u.netloc}"
        self.url = url
        self.page_name = u.path.strip("/")
        self.query = u.query
        self.page_hash = ""
        self.stats = ViewerStats()
        self.keep_markdown = keep_markdown
        self.loaded = asyncio.Event()  # the first whole-page run finished
        self._cache: dict[str, tuple[int, str]] = {}  # hash -> (run count when last seen, fragment id)
        self._runs = 0
        self._pending: dict[str, list[float]] = {}  # fragment id -> send times not yet answered
        self._timers: dict[str, tuple[float, asyncio.Task]] = {}
        self._ws = None
        self._closing = False
        self._t_load = 0.0

    async def run(self) -> None:
        """Connect, load the page, follow its fragments' timers until closed."""
        async with websockets.connect(self.ws_url, subprotocols=["streamlit", "PLACEHOLDER_AUTH_TOKEN"],
                                      origin=self.origin, max_size=None, open_timeout=60) as ws:
            self._ws = ws
            self._t_load = time.perf_counter()
            await self._rerun(fragment_id="")
            try:
                async for data in ws:
                    self._handle(data)
            except websockets.ConnectionClosed:
                if not self._closing:
                    raise
            finally:
                for _, task in self._timers.values():
                    task.cancel()

    async def close(self) -> None:
        """Close the tab: the server ends the session."""
        self._closing = True
        for _, task in self._timers.values():
            task.cancel()
        if self._ws is not None:
            await self._ws.close()

    async def _rerun(self, fragment_id: str) -> None:
        msg = BackMsg()
        cs = msg.rerun_script
        cs.query_string = self.query
        cs.page_script_hash = self.page_hash
        if not self.page_hash:  # before new_session: the page comes from the URL path, as in the frontend
            cs.page_name = self.page_name
        cs.widget_states.SetInParent()
        if fragment_id:
            cs.fragment_id = fragment_id
            cs.is_auto_rerun = True
            self._pending.setdefault(fragment_id, []).append(time.perf_counter())
        cs.cached_message_hashes.extend(self._cache)
        ctx = cs.context_info
        ctx.timezone, ctx.timezone_offset, ctx.locale = "UTC", 0, "en-US"
        ctx.url, ctx.is_embedded, ctx.color_scheme = self.url, False, "light"
        await self._ws.send(msg.SerializeToString())

    async def _tick(self, fragment_id: str, interval: float) -> None:
        """The frontend's ``setInterval``: a rerun every ``interval`` s, at a fixed rate."""
        start = time.perf_counter()
        n = 0
        while True:
            n += 1
            await asyncio.sleep(max(0.0, start + n * interval - time.perf_counter()))
            try:
                await self._rerun(fragment_id)
            except websockets.ConnectionClosed:
                return

    def _handle(self, data: bytes) -> None:
        now = time.perf_counter()
        msg = ForwardMsg()
        msg.ParseFromString(data)
        s = self.stats
        s.messages += 1
        s.bytes += len(data)
        kind = msg.WhichOneof("type")
        if kind != "ref_hash" and msg.metadata.cacheable and msg.hash:
            self._cache[msg.hash] = (self._runs, msg.delta.fragment_id if kind == "delta" else "")
        if kind == "ref_hash":
            s.refs += 1
            if msg.ref_hash not in self._cache:
                raise RuntimeError(f"the server referred to a message this client never cached ({msg.ref_hash})")
            self._cache[msg.ref_hash] = (self._runs, self._cache[msg.ref_hash][1])
        elif kind == "delta":
            s.deltas += 1
            el = msg.delta.new_element
            which = el.WhichOneof("type") if msg.delta.HasField("new_element") else None
            if which == "markdown" and len(s.markdown) < self.keep_markdown:
                s.markdown.append(el.markdown.body)
            elif which == "exception":
                s.exceptions.append(f"{el.exception.type}: {el.exception.message}")
        elif kind == "new_session":
            self.page_hash = self.page_hash or msg.new_session.page_script_hash
        elif kind == "navigation":  # the page being shown (new_session names the entry point, app.py)
            self.page_hash = msg.navigation.page_script_hash
        elif kind == "page_info_changed":
            self.query = msg.page_info_changed.query_string
        elif kind == "auto_rerun":
            fid, interval = msg.auto_rerun.fragment_id, msg.auto_rerun.interval
            if fid and (fid not in self._timers or self._timers[fid][0] != interval):
                self._stop_timer(fid)
                self._timers[fid] = (interval, asyncio.get_running_loop().create_task(self._tick(fid, interval)))
                s.fragments[fid] = interval
        elif kind == "stop_auto_rerun":
            for fid in msg.stop_auto_rerun.fragment_ids:
                self._stop_timer(fid)
        elif kind == "script_finished":
            self._finished(msg, now)

    def _stop_timer(self, fid: str) -> None:
        old = self._timers.pop(fid, None)
        if old is not None:
            old[1].cancel()

    def _finished(self, msg: ForwardMsg, now: float) -> None:
        s = self.stats
        fragments = list(msg.metadata.run.fragment_ids)
        if msg.script_finished == FRAGMENT_DONE:
            s.fragment_runs += 1
        elif msg.script_finished == FULL_DONE and not fragments:
            s.full_runs += 1
            if s.first_load_s is None:
                s.first_load_s = now - self._t_load
                self.loaded.set()
            self._age_cache([])
        for fid in fragments:
            for sent in self._pending.pop(fid, []):
                s.latencies.append((sent, fid, now - sent))

    def _age_cache(self, fragments: list[str]) -> None:
        """The frontend's ``incrementRunCount``: forget what no recent run has sent or referred to."""
        self._runs += 1
        for h, (seen, fid) in list(self._cache.items()):
            if (not fragments or (fid and fid in fragments)) and self._runs - seen > MAX_CACHED_AGE:
                del self._cache[h]


async def watch(url: str, seconds: float) -> Viewer:
    """Open ``url`` in one viewer for ``seconds`` (from when it connects), then close it."""
    viewer = Viewer(url)
    task = asyncio.create_task(viewer.run())
    try:
        await asyncio.wait_for(asyncio.shield(task), seconds)
    except TimeoutError:
        pass
    await viewer.close()
    await asyncio.gather(task, return_exceptions=True)
    if task.done() and not task.cancelled() and task.exception() is not None:
        raise task.exception()
    return viewer
