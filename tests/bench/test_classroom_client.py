"""bench/streamlit_client.py against a real dashboard: the protocol client loads the Live page of
a running run (its deltas and script_finished arrive) and keeps the page's fragments refreshing
as a browser would (their auto-rerun timers fire, the server answers each fragment rerun)."""
from __future__ import annotations

import asyncio
import os
import socket
import time

import pytest

from bench.classroom import start_server, stop
from bench.dashboard_overhead import free_port
from bench.streamlit_client import Viewer
from mtl_core.store.store import RunStore
from tests.conftest import tiny_config

pytestmark = pytest.mark.slow  # a real server: about 15-25 s on a busy 2-core machine

NAME = "classroom-client-check"


async def follow(url: str, timeout: float = 60.0) -> Viewer:
    """One viewer on ``url`` until its fastest fragment (a viewer's progress bar) has been rerun twice
    (or ``timeout``)."""
    viewer = Viewer(url)
    task = asyncio.create_task(viewer.run())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not task.done():
        every = viewer.stats.fragments
        fast = [min(every, key=every.get)] if every else []
        if fast and sum(f == fast[0] for _, f, _ in viewer.stats.latencies) >= 2:
            break
        await asyncio.sleep(0.2)
    await viewer.close()
    await asyncio.gather(task, return_exceptions=True)
    if task.done() and not task.cancelled() and task.exception() is not None:
        raise task.exception()
    return viewer


def test_the_protocol_client_loads_the_live_page_and_keeps_its_fragments_refreshing(tmp_path):
    store = RunStore(tmp_path / "runs")
    run_id = store.create_run(tiny_config(name=NAME).to_dict(), NAME, "cli", 1000, status="running")
    store.log_metrics(run_id, [(s, "train", "loss/classification", 2.0 - s / 50, time.time()) for s in range(1, 6)])
    store.update_progress(run_id, 5, {"images_per_s": 100.0, "eta_s": 60.0})
    store.heartbeat(run_id, socket.gethostname(), os.getpid())  # alive: the page polls it
    port = free_port()
    server = start_server(tmp_path / "runs", port, "not-the-students", tmp_path / "streamlit.log")
    try:
        viewer = asyncio.run(follow(f"http://127.0.0.1:{port}/live?run={run_id}"))
    finally:
        stop(server)
    s = viewer.stats
    log = (tmp_path / "streamlit.log").read_text()[-2000:]
    assert s.full_runs >= 1 and s.first_load_s is not None, f"the page never finished loading:\n{log}"
    assert s.deltas > 10 and any(NAME in m for m in s.markdown), s.markdown[:5]
    assert not s.exceptions, s.exceptions
    assert sorted(s.fragments.values()) == [2.0, 3.0, 10.0]  # a viewer's progress, charts, gradient conflict
    assert s.fragment_runs >= 2 and len(s.latencies) >= 2, f"no fragment rerun was answered:\n{log}"
    fastest = min(s.fragments, key=s.fragments.get)
    assert sum(f == fastest for _, f, _ in s.latencies) >= 2, "the progress bar was not refreshed twice in 60 s"
    assert all(0 < lat < 30 for _, _, lat in s.latencies)
