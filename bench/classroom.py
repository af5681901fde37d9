"""A classroom on one dashboard: a teacher's run training, N students watching its Live page.

One training run (``python -m mtl_core train``, the demo config with a very large step count)
writes a temporary runs directory; the dashboard (``streamlit run app.py``) serves it in shared
mode (``MTL_STUDIO_SHARED=1``, an owner token the students never pass: they are plain viewers).
N students open ``/live?run=<id>`` as headless protocol clients (``bench/streamlit_client.py``:
the websocket traffic of a browser tab, fragment timers included, at a few % of a core for all
of them), or with ``--browsers`` as N headless Chromium pages (Playwright).

Windows of ``--window`` seconds alternate none / N / none / N ... (``--rounds`` pairs; the VM
drifts, so the two sides are interleaved). Each window measures the dashboard server's CPU
(utime + stime of its process tree, % of one core), the training throughput (images/s from the
run's per-step wall times in the run store) and, with N protocol clients, every fragment
rerun's latency (its BackMsg to the ``script_finished`` that answers it). Students connect
before a window starts and are timed once every page has loaded.

``--compare`` checks that a protocol client costs the server what a browser does: windows of
none / 1 protocol client / 1 Chromium page, and the server's CPU for each.

Targets at N=10: server CPU per viewer < 3 % of a core, p95 refresh < 500 ms, throughput with
N viewers / none >= 0.85. The last line is the throughput ratio.

    python bench/classroom.py [--viewers 10] [--window 20] [--rounds 2] [--browsers | --compare]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.dashboard_overhead import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    cpu_seconds,
    free_port,
    step_walls,
    stop,
    tree,
)
from bench.streamlit_client import Viewer  # noqa: E402
from mtl_core.store.store import RunStore  # noqa: E402

TARGET_CPU_PER_VIEWER = 3.0  # % of one core
TARGET_P95_MS = 500.0
TARGET_RATIO = 0.85
LOAD_TIMEOUT_S = 180.0  # a first visit imports torch and the pages' modules on a busy 2-core machine


def start_server(runs_dir: Path, port: int, token: str, log: Path) -> subprocess.Popen:
    """``streamlit run app.py`` on ``port`` in shared mode, once it answers its health check."""
    env = {**os.environ, "MTL_RUNS_DIR": str(runs_dir), "MTL_STUDIO_SHARED": "1", "MTL_STUDIO_OWNER_TOKEN": token}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.headless", "true",
             "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop(proc)
                raise RuntimeError(f"the dashboard did not start:\n{log.read_text()[-2000:]}") from None
            time.sleep(0.25)


def start_training(runs_dir: Path, steps: int, log: Path) -> tuple[subprocess.Popen, str]:
    """The demo config from the CLI, ``steps`` long (stopped after the last window); evaluations
    and checkpoints off after the first, so no window holds a 0.7 s pause the other lacks."""
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mtl_core", "train", "--runs-dir", str(runs_dir), "--name", "classroom",
             "--steps", str(steps), "--time-limit", "0", "--eval-every", str(steps + 1), "--checkpoint-every", "0",
             "--quiet"], cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True)
    line = proc.stdout.readline()
    if not line.startswith("run id: "):
        stop(proc)
        raise RuntimeError(f"unexpected first line from the CLI: {line!r}\n{log.read_text()[-2000:]}")
    return proc, line.split(":", 1)[1].strip()


class Students:
    """N protocol clients on one URL: ``open`` connects them and waits until every page has loaded."""

    def __init__(self, url: str, stagger: float = 0.0) -> None:
        self.url = url
        self.stagger = stagger
        self.viewers: list[Viewer] = []
        self.tasks: list[asyncio.Task] = []

    async def open(self, n: int) -> None:
        self.viewers = [Viewer(self.url) for _ in range(n)]

        async def join(v: Viewer, delay: float) -> None:
            await asyncio.sleep(delay)
            await v.run()

        # students open the link one after another, over ``stagger`` seconds: their pages' timers
        # (set when each page loads) are then not in lockstep, as in a class; 0 is the worst case
        self.tasks = [asyncio.create_task(join(v, i * self.stagger / max(1, n))) for i, v in enumerate(self.viewers)]
        waits = [asyncio.create_task(v.loaded.wait()) for v in self.viewers]
        deadline = time.monotonic() + LOAD_TIMEOUT_S
        pending = set(waits)
        while pending and time.monotonic() < deadline:
            # a student's task ends only when its connection fails: stop waiting then
            await asyncio.wait([*pending, *self.tasks], timeout=deadline - time.monotonic(),
                               return_when=asyncio.FIRST_COMPLETED)
            pending = {w for w in waits if not w.done()}
            for t in self.tasks:
                if t.done():
                    raise t.exception() or RuntimeError("a student's connection closed")
        if pending:
            late = [v.stats for v in self.viewers if not v.loaded.is_set()]
            raise RuntimeError(f"{len(late)} of {n} students' pages did not load; the first of them had "
                               f"{late[0].messages} messages, {late[0].deltas} deltas, {late[0].full_runs} full runs")
        await asyncio.sleep(1.0)  # the fragments' first timers are set

    async def close(self) -> None:
        await asyncio.gather(*(v.close() for v in self.viewers))
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for v in self.viewers:
            if v.stats.exceptions:
                print(f"  warning: a student's page showed an exception: {v.stats.exceptions[0]}", flush=True)


class Browsers:
    """N headless Chromium pages (one context each, as N people) on one URL."""

    def __init__(self, url: str, browser: Any) -> None:
        self.url, self.browser, self.contexts = url, browser, []
        self.viewers: list[Viewer] = []  # none: a browser's reruns are not timed

    async def open(self, n: int) -> None:
        self.contexts = [await self.browser.new_context(viewport={"width": 1280, "height": 1600}) for _ in range(n)]
        pages = [await c.new_page() for c in self.contexts]
        await asyncio.gather(*(p.goto(self.url) for p in pages))
        await asyncio.gather(*(p.wait_for_selector(".js-plotly-plot", timeout=LOAD_TIMEOUT_S * 1000) for p in pages))
        await asyncio.sleep(1.0)

    async def close(self) -> None:
        for c in self.contexts:
            await c.close()
        self.contexts = []


async def measure(seconds: float, server: int, trainer: int) -> dict[str, Any]:
    """One window: CPU (% of one core) of the server, the trainer and the rest (the students)."""
    me = os.getpid()
    servers, trainers = tree(server), tree(trainer)
    others = [p for p in tree(me) if p not in servers and p not in trainers]
    before = [cpu_seconds(ps) for ps in (servers, trainers, others)]
    t0 = time.time()
    await asyncio.sleep(seconds)
    t1 = time.time()
    after = [cpu_seconds(ps) for ps in (servers, trainers, others)]
    server_cpu, trainer_cpu, student_cpu = ((y - x) / (t1 - t0) * 100 for x, y in zip(before, after, strict=True))
    return {"t0": t0, "t1": t1, "server": server_cpu, "trainer": trainer_cpu, "students": student_cpu}


def images_per_s(walls: dict[int, float], t0: float, t1: float, batch: int) -> float:
    """Images/s over a window: the steps that ended in it (a step takes 2 s of a busy machine at
    times, so no window is too short for a figure, only less precise)."""
    return sum(t0 <= w < t1 for w in walls.values()) * batch / (t1 - t0)


def percentile(values: list[float], q: float) -> float:
    """The ``q``-quantile (0..1) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * len(values) + 0.5) - 1))]


async def windows(a: argparse.Namespace, url: str, server: subprocess.Popen, trainer: subprocess.Popen,
                  browser: Any) -> list[dict[str, Any]]:
    """Every window in turn, each a dict: its side, viewers, CPU, span and the latencies in it."""
    if a.compare:
        sides = [("none", 0, None), ("client", 1, Students), ("browser", 1, Browsers)]
    else:
        sides = [("none", 0, None), ("browsers" if a.browsers else "clients", a.viewers,
                                     Browsers if a.browsers else Students)]
    out = []
    for r in range(a.rounds):
        for side, n, kind in sides:
            group = None if kind is None else (Students(url, a.stagger) if kind is Students else Browsers(url, browser))
            if group is not None:
                await group.open(n)
            else:
                await asyncio.sleep(1.0)  # sessions just closed wind down
            w = await measure(a.window, server.pid, trainer.pid)
            w.update(side=side, n=n, round=r + 1, latencies=[], loads=[])
            if group is not None:
                for v in group.viewers:
                    w["latencies"] += [lat for sent, _, lat in v.stats.latencies]
                    w.setdefault("by_interval", []).extend((v.stats.fragments.get(fid, 0.0), lat)
                                                           for sent, fid, lat in v.stats.latencies)
                    w["loads"].append(v.stats.first_load_s)
                await group.close()
            if trainer.poll() is not None:
                raise RuntimeError(f"training stopped during the windows (exit code {trainer.returncode})")
            late = f", p95 refresh {percentile(w['latencies'], 0.95) * 1e3:.0f} ms" if w["latencies"] else ""
            print(f"round {r + 1} {side:>8} ({n:2d} viewers): server {w['server']:5.1f}%, trainer "
                  f"{w['trainer']:5.1f}%, students {w['students']:5.1f}% of a core{late}", flush=True)
            out.append(w)
    return out


def report(a: argparse.Namespace, ws: list[dict[str, Any]], walls: dict[int, float], batch: int) -> float:
    """Print the figures and targets; returns the throughput ratio (viewers / none)."""
    for w in ws:
        w["rate"] = images_per_s(walls, w["t0"], w["t1"], batch)
    sides = list(dict.fromkeys(w["side"] for w in ws))
    mean = {s: statistics.mean(w["server"] for w in ws if w["side"] == s) for s in sides}
    rate = {s: statistics.mean(w["rate"] for w in ws if w["side"] == s) for s in sides}
    for s in sides:
        sw = [w for w in ws if w["side"] == s]
        each = ", ".join(f"{w['rate']:.0f}" for w in sw)
        print(f"{s:>8}: server {mean[s]:5.1f}% of a core, trainer {statistics.mean(w['trainer'] for w in sw):5.1f}%, "
              f"students {statistics.mean(w['students'] for w in sw):5.1f}%, {rate[s]:6.1f} images/s "
              f"(windows: {each})")
    if a.compare:
        print(f"server CPU for 1 viewer: protocol client {mean['client'] - mean['none']:.1f}%, "
              f"Chromium page {mean['browser'] - mean['none']:.1f}% of a core (above {mean['none']:.1f}% with none)")
    side = sides[1]
    n = 1 if a.compare else a.viewers
    per = (mean[side] - mean["none"]) / n
    lats = [x for w in ws if w["side"] == side for x in w["latencies"]]
    loads = [x for w in ws if w["side"] == side for x in w["loads"] if x is not None]
    print(f"server CPU: {mean['none']:.1f}% of a core with 0 viewers, {mean[side]:.1f}% with {n}; "
          f"per viewer {per:.2f}% (target < {TARGET_CPU_PER_VIEWER:.0f}%: {'met' if per < TARGET_CPU_PER_VIEWER else 'NOT met'})")
    if lats:
        p50, p95 = percentile(lats, 0.5) * 1e3, percentile(lats, 0.95) * 1e3
        print(f"live refresh latency ({len(lats)} fragment reruns): p50 {p50:.0f} ms, p95 {p95:.0f} ms "
              f"(target p95 < {TARGET_P95_MS:.0f} ms: {'met' if p95 < TARGET_P95_MS else 'NOT met'}); "
              f"page load with {n} joining at once: median {statistics.median(loads) * 1e3:.0f} ms, "
              f"max {max(loads) * 1e3:.0f} ms")
        by: dict[float, list[float]] = {}
        for w in ws:
            if w["side"] == side:
                for interval, lat in w.get("by_interval", []):
                    by.setdefault(interval, []).append(lat)
        print("  by fragment (its interval): " + "; ".join(
            f"every {i:g} s: p50 {percentile(v, 0.5) * 1e3:.0f} ms, p95 {percentile(v, 0.95) * 1e3:.0f} ms ({len(v)})"
            for i, v in sorted(by.items())))
    else:
        print("live refresh latency: not measured (browsers)")
    pairs = [w["rate"] / none["rate"] for none, w in zip(ws[::len(sides)], ws[1::len(sides)], strict=True)]
    ratio = rate[side] / rate["none"]
    print(f"throughput: {rate['none']:.1f} images/s with none, {rate[side]:.1f} with {n} viewers; ratio per round "
          f"{', '.join(f'{p:.3f}' for p in pairs)} (target >= {TARGET_RATIO}: {'met' if ratio >= TARGET_RATIO else 'NOT met'})")
    print(f"{a.window:.0f} s windows, {a.rounds} rounds, batch {batch}, {os.cpu_count()} cores, "
          f"students as {'Chromium pages' if a.browsers else 'protocol clients'}"
          + ("" if a.browsers else f" joining over {a.stagger:g} s"))
    return ratio


async def bench(a: argparse.Namespace, url: str, server: subprocess.Popen, trainer: subprocess.Popen) -> list:
    if not (a.browsers or a.compare):
        return await windows(a, url, server, trainer, None)
    from playwright.async_api import async_playwright

    if not Path(CHROMIUM).exists():
        raise SystemExit(f"Chromium is not installed at {CHROMIUM}")
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            return await windows(a, url, server, trainer, browser)
        finally:
            await browser.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--viewers", type=int, default=10, help="students watching the live page")
    ap.add_argument("--window", type=float, default=20.0, help="seconds per window")
    ap.add_argument("--rounds", type=int, default=2, help="(none, N viewers) pairs of windows")
    ap.add_argument("--port", type=int, default=0, help="the dashboard's port (default: a free one)")
    ap.add_argument("--browsers", action="store_true", help="students as headless Chromium pages")
    ap.add_argument("--compare", action="store_true",
                    help="windows of none / 1 protocol client / 1 Chromium page: the server's CPU for each")
    ap.add_argument("--stagger", type=float, default=3.0,
                    help="seconds over which the students open the page, one after another (0: all at once, "
                         "every page's timers in lockstep: the worst case)")
    ap.add_argument("--steps", type=int, default=1_000_000, help="the run's length (it is stopped at the end)")
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a timeout's SIGTERM still stops the children

    with tempfile.TemporaryDirectory(prefix="mtl_classroom_") as tmp:
        runs_dir, port = Path(tmp) / "runs", a.port or free_port()
        RunStore(runs_dir)
        server = start_server(runs_dir, port, secrets.token_urlsafe(16), Path(tmp) / "streamlit.log")
        trainer = None
        try:
            trainer, run_id = start_training(runs_dir, a.steps, Path(tmp) / "train.log")
            store = RunStore(runs_dir)
            while (store.get_run(run_id) or {}).get("step", 0) < 20:  # past model building and the first eval
                if trainer.poll() is not None:
                    raise RuntimeError(f"training failed:\n{(Path(tmp) / 'train.log').read_text()[-2000:]}")
                time.sleep(0.5)
            url = f"http://127.0.0.1:{port}/live?run={run_id}"
            asyncio.run(_warm(url))
            ws = asyncio.run(bench(a, url, server, trainer))
        finally:
            if trainer is not None:
                stop(trainer, signal.SIGINT)
            stop(server)
        batch = int(store.get_run(run_id)["config"]["optim"]["batch_size"])
        ratio = report(a, ws, step_walls(store, run_id), batch)
    n = 1 if a.compare else a.viewers
    print(f"throughput ratio ({n} viewers / none): {ratio:.2f}")


async def _warm(url: str) -> None:
    """A first visit imports the pages' modules (torch among them): part of no window."""
    students = Students(url)
    await students.open(1)
    await students.close()


if __name__ == "__main__":
    main()
