"""Resident memory of the dashboard process with 20 finished runs in the store and one running,
after a browser has visited every page.

The store is filled first: 19 synthetic finished runs written with ``RunStore`` (2,000 steps of
training metrics, ~10 keys a step as the engine logs them, validation every 100 steps, test
metrics at the end: about 19,000 rows each) and one real tiny run trained with the CLI, so
Predict has a checkpoint. Then ``streamlit run app.py`` serves that store and headless Chromium,
as a person would, starts a run on Setup (an uploaded config, so it trains inside the dashboard
process: the heavier case) and, while it trains, opens Home, Setup, Live training, Compare runs,
Predict (the real run, one uploaded image), Data and any other page in the sidebar. RSS is VmRSS from /proc for the server
process and any children. Target: under 1.5 GiB. The last line is the figure in MiB.

    python bench/dashboard_memory.py
"""
from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dashboard_overhead import ROOT, chromium, dashboard  # noqa: E402

from mtl_core.config import DataConfig, ExperimentConfig, OptimConfig, WeightingConfig  # noqa: E402
from mtl_core.store.store import RunStore  # noqa: E402
from mtl_core.weighting import WEIGHTINGS  # noqa: E402

TASKS = ("classification", "detection", "segmentation")
METRICS = {"classification": ("accuracy", "top3"), "detection": ("map", "map50"), "segmentation": ("miou", "pixel_acc")}
SYNTHETIC, STEPS = 19, 2000
TARGET_MIB = 1.5 * 1024
SLOW = 120_000  # ms


def synthetic_run(store: RunStore, i: int, rng: np.random.Generator) -> int:
    """A finished run as the engine leaves it; returns the number of metric rows written."""
    methods = WEIGHTINGS.available()
    cfg = ExperimentConfig(name=f"synthetic {i:02d}", weighting=WeightingConfig(method=methods[i % len(methods)]),
                           optim=OptimConfig(steps=STEPS), device="cpu")
    run_id = store.create_run(cfg.to_dict(), cfg.name, "cli", STEPS, status="running")
    start = time.time() - 600
    rows: list[tuple[int, str, str, float, float]] = []
    for s in range(1, STEPS + 1):
        wall = start + s * 0.25
        decay = 1 / (1 + s / 400)
        for j, t in enumerate(TASKS):
            rows += [(s, "train", f"loss/{t}", float((1 + j) * decay + 0.1 * rng.random()), wall),
                     (s, "train", f"weight/{t}", float(1 + 0.2 * np.sin(s / 100 + j)), wall)]
        rows += [(s, "train", "loss/total", float(6 * decay), wall), (s, "train", "lr", 3e-3 * decay, wall),
                 (s, "train", "images_per_s", 250.0, wall)]
        if s % 10 == 0:  # gradient statistics (gradstats_every)
            rows += [(s, "train", f"gradnorm/{t}", float(rng.random()), wall) for t in TASKS]
            rows += [(s, "train", f"gradcos/{a}|{b}", float(rng.uniform(-1, 1)), wall)
                     for k, a in enumerate(TASKS) for b in TASKS[k + 1:]]
        for split in ("val",) * (s % 100 == 0) + ("test",) * (s == STEPS):
            for t in TASKS:
                rows += [(s, split, f"{t}/{m}", float(1 - decay * rng.random()), wall) for m in METRICS[t]]
                rows.append((s, split, f"loss/{t}", float(decay), wall))
    store.log_metrics(run_id, rows)
    store.update_progress(run_id, STEPS, {"images_per_s": 250.0, "elapsed_s": STEPS * 0.25, "eta_s": 0.0},
                          device="cpu")
    store.set_status(run_id, "finished")
    return len(rows)


def rss_mib(pid: int) -> tuple[float, float]:
    """``(VmRSS, VmHWM)`` in MiB of ``pid`` plus its descendants (RSS summed, peak of the parent)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    todo, total, peak = [pid], 0.0, 0.0
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024
        if p == pid:
            peak = int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024
    return total, peak


def main() -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=SLOW)  # the first visit to a page imports torch on a busy machine

    with tempfile.TemporaryDirectory(prefix="mtl_memory_") as tmp:
        runs_dir = Path(tmp) / "runs"
        store = RunStore(runs_dir)
        t = time.time()
        rng = np.random.default_rng(0)
        rows = sum(synthetic_run(store, i, rng) for i in range(SYNTHETIC))
        real = ExperimentConfig(name="real tiny", device="cpu", eval_every=20, checkpoint_every=0,
                                data=DataConfig(image_size=32, train_size=64, val_size=16, test_size=16),
                                optim=OptimConfig(batch_size=16, steps=20, warmup_steps=0))
        cfg_path = Path(tmp) / "real.json"
        cfg_path.write_text(real.to_json())
        subprocess.run([sys.executable, "-m", "mtl_core", "train", "--runs-dir", str(runs_dir), "--config",
                        str(cfg_path), "--quiet"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        print(f"store: {SYNTHETIC} synthetic runs ({rows:,} metric rows) + 1 trained run, in {time.time() - t:.0f} s")
        # the run that keeps training while the pages are visited: Setup's defaults, a time limit as a bound
        running = dataclasses.replace(ExperimentConfig(), name="running", device="cpu", time_limit=900.0)
        upload = Path(tmp) / "running.json"
        upload.write_text(running.to_json())
        image = Path(tmp) / "photo.png"
        from PIL import Image

        Image.effect_noise((640, 480), 40).convert("RGB").save(image)

        with dashboard(runs_dir) as (url, server), chromium() as browser:
            page = browser.new_page(viewport={"width": 1280, "height": 1600})
            page.set_default_timeout(SLOW)

            def settle() -> None:
                page.wait_for_timeout(300)
                page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden")

            def visit(title: str, link: str | None = None, heading: str | None = "") -> None:
                """Click ``link`` in the sidebar (if given), wait for the page's title (``heading``:
                the title's text by default, None for any) and for its script to finish."""
                if link:
                    page.get_by_role("link", name=link, exact=True).click()
                heading = title.split(" (")[0] if heading == "" else heading
                title_el = page.get_by_role("heading", name=heading, exact=True) if heading else page.locator("h1").first
                expect(title_el).to_be_visible()
                if title != "Live training":  # that one reruns every second while the run trains
                    settle()
                rss, _ = rss_mib(server.pid)
                print(f"after {title:19s}: {rss:7.0f} MiB", flush=True)

            page.goto(f"{url}/")
            visit("MTL Studio")
            visit("Setup", "Setup")
            page.get_by_text("Load or save a config file").click()
            page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(upload))
            expect(page.get_by_text("Loaded running.json")).to_be_visible()
            settle()
            page.get_by_role("button", name=re.compile("Start training")).click()
            deadline = time.monotonic() + SLOW / 1000
            while not any(r["name"] == "running" for r in store.list_runs()):
                if time.monotonic() > deadline:
                    raise SystemExit("Start on Setup did not start a run")
                time.sleep(0.5)
            visit("Live training")
            expect(page.get_by_text("running", exact=True).first).to_be_visible()
            page.wait_for_selector('.js-plotly-plot')
            page.wait_for_timeout(3000)  # a few polls of the running run
            visit("Compare runs", "Compare runs")
            page.wait_for_selector('.js-plotly-plot')
            visit("Predict", "Predict")
            page.get_by_label(re.compile("^Run")).click()
            page.get_by_role("option", name=re.compile("real tiny")).click()
            page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(image))
            expect(page.get_by_text(re.compile(r"640×480 px · inference \d+ ms"))).to_be_visible()
            visit("Predict (an image)")
            visit("Data", "Data")
            for text in page.locator('[data-testid="stSidebarNav"] a').all_inner_texts():  # pages added since
                name = text.strip().splitlines()[-1].strip()  # the icon's ligature name comes first
                if name not in ("Home", "Setup", "Live training", "Compare runs", "Predict", "Data"):
                    visit(name, name, heading=None)
            running_run = next(r for r in store.list_runs() if r["name"] == "running")
            assert running_run["status"] == "running", f"the running run is {running_run['status']}"
            finished = sum(r["status"] == "finished" for r in store.list_runs())
            time.sleep(2)
            rss, peak = rss_mib(server.pid)
            print(f"runs: {finished} finished, 1 running (step {store.get_run(running_run['id'])['step']}, "
                  f"training inside the dashboard process); peak RSS (VmHWM) {peak:.0f} MiB")
    print(f"target: under {TARGET_MIB:.0f} MiB ({'met' if rss < TARGET_MIB else 'NOT met'})")
    print(f"dashboard process RSS after visiting every page (MiB): {rss:.0f}")


if __name__ == "__main__":
    main()
