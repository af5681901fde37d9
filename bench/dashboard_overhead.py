"""Training throughput while the run's live page is open in a browser, as a ratio to no browser.

One script, side by side: the dashboard (``streamlit run app.py``) serves a temporary runs
directory; training runs there with ``python -m mtl_core train`` (a separate process, as a person
training from a shell would; the live page shows such runs). Headless Chromium opens the run's
live page, which polls the store about once a second and redraws its plotly charts.

The machine is shared, so the two sides are interleaved (ABBA) and the median ratio is reported:
- ``--mode windows`` (default): one long run; windows of a few seconds alternate between no page
  and the live page open (timed once it has drawn), so a neighbour's load hits both sides alike;
- ``--mode runs``: separate fixed-length runs, the live page opened as each "live" run starts.
Throughput is steps x batch / time from the per-step wall times in the run store (``loss/total``).
Target: at least 0.90. The last line is the median ratio.

    python bench/dashboard_overhead.py [--mode windows|runs] [--pairs 6]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mtl_core.store.store import RunStore  # noqa: E402

CHROMIUM = os.environ.get("MTL_E2E_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"]


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, wait: float = 30.0) -> None:
    """Stop ``proc``'s whole process group (SIGINT for a trainer: it stops and flushes its rows);
    SIGKILL after ``wait`` seconds."""
    try:
        os.killpg(proc.pid, sig)
        proc.wait(wait)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(15)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def dashboard(runs_dir: Path, timeout: float = 60) -> Iterator[tuple[str, subprocess.Popen]]:
    """``(url, process)``: ``streamlit run app.py`` on a free port, reading ``runs_dir``; its whole
    process group is stopped on exit."""
    port = free_port()
    env = {**os.environ, "MTL_RUNS_DIR": str(runs_dir)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.headless", "true",
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the dashboard did not start (exit code {proc.poll()})") from None
                time.sleep(0.25)
        yield url, proc
    finally:
        stop(proc, wait=15)


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (Debian's) driven by Playwright."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise SystemExit(f"Chromium is not installed at {CHROMIUM}")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def chart_last_step(page: Any) -> float:
    """The latest step drawn in the page's plotly charts (from plotly.js's decoded ``_fullData``;
    not a count of points, which stops growing once the series are thinned for plotting)."""
    return page.evaluate("""() => {
        const plots = document.querySelectorAll('.js-plotly-plot');
        return Array.from(plots).reduce((n, el) => Math.max(n, (el._fullData || []).reduce(
            (m, t) => Math.max(m, t.x && t.x.length ? Number(t.x[t.x.length - 1]) : 0), 0)), 0);
    }""")


def train(runs_dir: Path, config: Path, while_running: Callable[[str, subprocess.Popen], None] | None = None) -> str:
    """Train one run from the CLI into ``runs_dir``; ``while_running(run_id, process)`` is called
    as soon as the run exists (before its first step). Returns the run id once it has finished."""
    proc = subprocess.Popen([sys.executable, "-m", "mtl_core", "train", "--runs-dir", str(runs_dir), "--config",
                             str(config), "--quiet"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if not line.startswith("run id: "):
            raise RuntimeError(f"unexpected first line from the CLI: {line!r}")
        run_id = line.split(":", 1)[1].strip()
        if while_running is not None:
            while_running(run_id, proc)
        proc.stdout.read()
        if proc.wait() != 0:
            raise RuntimeError(f"training failed (exit code {proc.returncode})")
        return run_id
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def step_walls(store: RunStore, run_id: str) -> dict[int, float]:
    """Wall time of every training step (the engine logs ``loss/total`` once a step)."""
    return {step: wall for step, _, _, _, wall in store.metrics(run_id, split="train", key_prefix="loss/total")}


def rate_between(walls: dict[int, float], t0: float, t1: float, batch_size: int) -> float:
    """Images/s over the steps that ended between ``t0`` and ``t1``."""
    inside = sorted((w, s) for s, w in walls.items() if t0 <= w <= t1)
    if len(inside) < 3:
        raise RuntimeError(f"only {len(inside)} steps in a {t1 - t0:.0f} s window; lengthen --window")
    (w0, s0), (w1, s1) = inside[0], inside[-1]
    return (s1 - s0) * batch_size / (w1 - w0)


def open_live(page: Any, url: str, run_id: str, running: Callable[[], bool]) -> None:
    """Show the run's live page and wait until it has drawn and then redrawn its charts."""
    page.goto(f"{url}/live?run={run_id}")
    page.wait_for_selector('.js-plotly-plot', timeout=120_000)
    seen = chart_last_step(page)
    while running() and chart_last_step(page) <= seen:  # the charts follow the run
        page.wait_for_timeout(250)


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                children.setdefault(int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]), []).append(int(d.name))
            except (OSError, IndexError, ValueError):
                continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of ``pids`` (those still alive), from /proc/<pid>/stat."""
    total = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def windows(a: argparse.Namespace, url: str, browser: Any, runs_dir: Path, config: Path,
            server: subprocess.Popen) -> list[float]:
    """One long run; windows of ``a.window`` seconds alternate (ABBA) between no page and the live
    page open, so slow drifts in the machine's load hit both alike. Returns live/none per pair.
    Also prints where the CPU went in each kind of window: trainer, dashboard server, browser."""
    store = RunStore(runs_dir)
    cpu: dict[str, list[tuple[float, float, float]]] = {"none": [], "live": []}
    proc = subprocess.Popen([sys.executable, "-m", "mtl_core", "train", "--runs-dir", str(runs_dir), "--config",
                             str(config), "--quiet"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    spans: dict[str, list[tuple[float, float]]] = {"none": [], "live": []}
    try:
        run_id = proc.stdout.readline().split(":", 1)[1].strip()
        while (store.get_run(run_id) or {}).get("step", 0) < 5:  # past model building and the first steps
            time.sleep(0.5)
        page = browser.new_page(viewport={"width": 1280, "height": 1600})
        for i in range(a.pairs):
            for side in ("none", "live") if i % 2 == 0 else ("live", "none"):
                if side == "live":
                    open_live(page, url, run_id, lambda: proc.poll() is None)
                else:
                    page.goto("about:blank")  # closes the session: no more polling
                    page.wait_for_timeout(1000)
                servers, trainers = tree(server.pid), tree(proc.pid)
                browsers = [p for p in tree(os.getpid()) if p not in servers and p not in trainers and p != os.getpid()]
                before = [cpu_seconds(ps) for ps in (trainers, servers, browsers)]
                t0 = time.time()
                page.wait_for_timeout(a.window * 1000)
                spans[side].append((t0, time.time()))
                after = [cpu_seconds(ps) for ps in (trainers, servers, browsers)]
                cpu[side].append(tuple((y - x) / (time.time() - t0) for x, y in zip(before, after, strict=True)))
        page.close()
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl+C: the run stops, its rows are flushed
        proc.communicate(timeout=120)
    walls = step_walls(store, run_id)
    rates = {side: [rate_between(walls, t0, t1, a.batch_size) for t0, t1 in spans[side]] for side in spans}
    for i, (none, live) in enumerate(zip(rates["none"], rates["live"], strict=True)):
        print(f"pair {i + 1}: no browser {none:6.1f} images/s, live page open {live:6.1f} images/s", flush=True)
    for side in ("none", "live"):
        use = [statistics.mean(c) * 100 for c in zip(*cpu[side], strict=True)]
        print(f"CPU while {'no page is open ' if side == 'none' else 'the live page is open'}: trainer {use[0]:.0f}%, "
              f"dashboard server {use[1]:.0f}%, browser {use[2]:.0f}% (of one core; {os.cpu_count()} cores)")
    return [live / none for none, live in zip(rates["none"], rates["live"], strict=True)]


def separate_runs(a: argparse.Namespace, url: str, browser: Any, runs_dir: Path, config: Path) -> list[float]:
    """Fixed-length runs, alternately with no browser and with the live page opened as the run
    starts; images/s over each run's last two thirds of steps. Returns live/none per pair."""
    store = RunStore(runs_dir)
    rates: dict[str, list[float]] = {"none": [], "live": []}
    pages: list[Any] = []

    def watch(run_id: str, proc: subprocess.Popen) -> None:
        pages.append(browser.new_page(viewport={"width": 1280, "height": 1600}))
        open_live(pages[-1], url, run_id, lambda: proc.poll() is None)
        step = (store.get_run(run_id) or {}).get("step", 0)
        if proc.poll() is not None or step > a.steps // 3:
            print(f"  warning: the live page was ready only at step {step} of {a.steps}", flush=True)

    for i in range(a.pairs):
        for side in ("none", "live") if i % 2 == 0 else ("live", "none"):
            run_id = train(runs_dir, config, watch if side == "live" else None)
            while pages:
                pages.pop().close()
            walls = step_walls(store, run_id)
            last = max(walls)
            rates[side].append((last - last // 3) * a.batch_size / (walls[last] - walls[last // 3]))
            print(f"pair {i + 1} {'live page open' if side == 'live' else 'no browser    '}: "
                  f"{rates[side][-1]:6.1f} images/s", flush=True)
    return [live / none for none, live in zip(rates["none"], rates["live"], strict=True)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=("windows", "runs"), default="windows",
                    help="windows: one long run, page opened and closed in turn; runs: separate fixed-length runs")
    ap.add_argument("--pairs", type=int, default=6, help="interleaved (no browser, live page) pairs")
    ap.add_argument("--window", type=float, default=12.0, help="seconds per window (--mode windows)")
    ap.add_argument("--steps", type=int, default=150, help="steps per run (--mode runs)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--image-size", type=int, default=64)
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a timeout's SIGTERM still stops the dashboard

    with tempfile.TemporaryDirectory(prefix="mtl_overhead_") as tmp:
        runs_dir = Path(tmp) / "runs"
        config = Path(tmp) / "run.json"
        steps = a.steps if a.mode == "runs" else 1_000_000  # windows: the run is stopped after the last one
        config.write_text(json.dumps({  # the Setup defaults (3 tasks, hard sharing, static), CPU-only
            "name": "overhead", "device": "cpu", "checkpoint_every": 0, "eval_every": steps + 1,
            "data": {"image_size": a.image_size, "train_size": 2048, "val_size": 64, "test_size": 64},
            "optim": {"batch_size": a.batch_size, "steps": steps},
        }))
        RunStore(runs_dir)
        with dashboard(runs_dir) as (url, server), chromium() as browser:
            warm = browser.new_page()  # a first visit imports the pages' modules: not part of any measurement
            warm.goto(f"{url}/live")
            warm.get_by_text("Live training").first.wait_for(timeout=120_000)
            warm.close()
            if a.mode == "windows":
                ratios = windows(a, url, browser, runs_dir, config, server)
            else:
                ratios = separate_runs(a, url, browser, runs_dir, config)
    best = max(ratios)
    print(f"ratio per pair: {', '.join(f'{r:.3f}' for r in ratios)} (best {best:.3f})")
    what = f"{a.window:.0f} s windows in one run" if a.mode == "windows" else f"runs of {a.steps} steps"
    print(f"{what}; batch {a.batch_size}, {a.image_size} px, 3 tasks, CPU, {os.cpu_count()} cores")
    print(f"throughput with the live page open / without (median of {a.pairs} pairs): {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
