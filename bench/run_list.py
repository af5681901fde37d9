"""Time the pages that list runs (Home, Live, Predict, Inspect, Models, Compare) with 50 and with
5,000 runs in the store. Target: at 5,000 runs every page settles in at most 1.5 times what it
takes at 50.

Each store is filled in one transaction (no training): run ``i`` is the ``i``-th newest and the
same in both stores (its id, name, status, config, tags), so the 50-run store is the newest 50 of
the other and a page shows the same runs in both: what differs is the runs behind them. Four
blocks of 30 runs in five are a study (ten levels, three seeds, created in the same second), the
rest plain runs; statuses mixed (none active); some runs carry tags and a note; the newest finished runs have
metrics (train losses, validation and test scores). No checkpoints: Predict and Inspect stop at
"no checkpoint yet" after their picker (and Predict's look for a run that has one).

Every page is opened once per store first (imports, first reads); then each is opened ``--repeats``
times per store, the two stores in turn, each time in a fresh ``AppTest`` session with Streamlit's
data caches cleared (a new person on a page nobody opened). Printed per page: the best (least) wall
and CPU time (the process's, all threads) at each size and their ratios. The last line is the
worst ratio of CPU time by default (``--clock wall`` for wall time): a page's work is one thread's
CPU (SQLite reads from memory), so on an idle machine the two agree, and on a shared one (where
this was written, two cores and a load of 3 to 7) wall time mostly measures the neighbours.
What ``AppTest`` adds to every run whatever the page (looking for installed Streamlit components,
which a server does once at its start) is left out; compiling the page's script is in. The last
line is the worst ratio.

    python bench/run_list.py [--small 50] [--large 5000] [--repeats 3]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mtl_core.config import ExperimentConfig, WeightingConfig  # noqa: E402
from mtl_core.store.store import RunStore  # noqa: E402

TARGET = 1.5
PAGES = ("home", "live", "predict", "inspect", "models", "compare")
METHODS = ("static", "pcgrad", "famo", "nash_mtl", "uw", "dwa")
TASK_SETS = (("classification", "detection", "segmentation"), ("classification", "depth"), ("segmentation", "depth"))
STATUSES = ("finished",) * 7 + ("failed", "stopped", "interrupted")
BLOCK, LEVELS, SEEDS = 30, 10, 3  # a study: ten levels of three seeds
SHOWN = 2  # the run the pages of one run open on: finished, with metrics
WITH_METRICS = 12  # the newest runs that have metrics


def run_id(i: int) -> str:
    return f"bench-{i:06d}"


def _config(i: int) -> str:
    method, tasks = METHODS[i % len(METHODS)], TASK_SETS[(i // 3) % len(TASK_SETS)]
    cfg = dataclasses.replace(ExperimentConfig(), name=f"run {i}", tasks=tasks,
                              weighting=WeightingConfig(method=method))
    return json.dumps(cfg.to_dict())


def fill(store: RunStore, n: int) -> None:
    """``n`` runs, the newest first as described above, written in one transaction."""
    now = time.time()
    configs: dict[int, str] = {}
    runs, studies, planned, metrics = [], [], [], []
    for i in range(n):
        block = i // BLOCK
        in_study = block % 5 != 4
        created = now - 60.0 * block - (0.001 if in_study else 1.0) * (i % BLOCK)  # a study's: in the same second
        status = "finished" if i <= SHOWN else STATUSES[i % len(STATUSES)]  # none active: nothing sweeps them
        tags, name = {}, f"plain run {i} · {METHODS[i % len(METHODS)]}"
        if in_study:
            study, level, seed = f"study-bench-{block:04d}", (i % BLOCK) // SEEDS, i % SEEDS
            title = f"fusion on scenes, block {block} · segmentation alone at width {16 * (level + 1)}"
            name = f"{title} · seed {seed}"
            tags = {"study": study, "role": "trial", "level": {"model.width": 16 * (level + 1)}, "seed": seed,
                    "label": f"model.width={16 * (level + 1)}"}
            if not any(s[0] == study for s in studies[-1:]):
                studies.append((study, f"fusion on scenes, block {block}", "{}", created, created, "finished"))
            planned.append((study, f"key-{i}", "trial", json.dumps(tags["level"]), seed, "", run_id(i), i % BLOCK))
        key = i % (len(METHODS) * 3 * len(TASK_SETS))
        config = configs.setdefault(key, _config(key))
        labels = json.dumps(["keep", "paper"][: 1 + i % 2]) if i % 7 == 0 else "[]"
        note = f"diverged near step {i % 500}" if i % 11 == 0 else ""
        runs.append((run_id(i), name, status, config, created, created + 30, created, created + 30, 20, 20, "cli",
                     json.dumps(tags), labels, note))
        if i < WITH_METRICS and status == "finished":
            for s in range(1, 21):
                metrics += [(run_id(i), s, "train", f"loss/{t}", 2.0 / s, created) for t in ("classification", "depth")]
            metrics += [(run_id(i), 20, sp, k, 0.5 + i / 100, created) for sp in ("val", "test")
                        for k in ("classification/accuracy", "detection/map", "segmentation/miou", "depth/abs_rel")]
    with store.transaction() as c:
        c.executemany("INSERT INTO runs (id, name, status, config, created, updated, started, finished, step,"
                      " total_steps, source, tags, labels, note) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                      runs)
        c.executemany("INSERT INTO studies (id, name, spec, created, updated, state) VALUES (?,?,?,?,?,?)", studies)
        c.executemany("INSERT INTO study_runs (study, key, role, level, seed, task, run_id, position)"
                      " VALUES (?,?,?,?,?,?,?,?)", planned)
        c.executemany("INSERT INTO metrics (run_id, step, split, key, value, wall) VALUES (?,?,?,?,?,?)", metrics)


@contextmanager
def _restored(name: str) -> Iterator[None]:
    """The environment variable ``name`` as it was, once done (the pages read their runs directory there)."""
    before = os.environ.get(name)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


_components: list = []  # the installed packages' Streamlit components: a server looks for them once, at its start


def open_page(name: str, runs_dir: str) -> tuple[float, float]:
    """Wall and CPU seconds (this process's, every thread) for one run of the page in a fresh
    session, Streamlit's data caches cleared."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    os.environ["MTL_RUNS_DIR"] = runs_dir
    st.cache_data.clear()
    path = ROOT / ("app.py" if name == "home" else f"pages/{name}.py")
    at = AppTest.from_file(str(path), default_timeout=300)
    if _components:  # AppTest would scan every installed package's metadata again (0.2-0.4 s, the same at any size)
        at._bidi_component_manager = _components[0]
    if name not in ("home", "compare"):
        at.session_state["run_id"] = run_id(SHOWN)
    t0, c0 = time.perf_counter(), time.process_time()
    at.run()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    if at.exception:
        raise RuntimeError(f"{name}: {at.exception[0].message}")
    if not _components:
        _components.append(at._bidi_component_manager)
    return seconds, cpu


def measure(small: int, large: int, repeats: int,
            pages: tuple[str, ...] = PAGES) -> dict[str, dict[str, tuple[float, float]]]:
    """Best wall and CPU seconds per page at each size: ``{page: {"wall": (small, large), "cpu": (...)}}``."""
    logging.disable(logging.WARNING)  # AppTest runs without a server, and Streamlit says so at every run
    times: dict[tuple[str, int], list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp, _restored("MTL_RUNS_DIR"):
        dirs = {}
        for n in (small, large):
            dirs[n] = str(Path(tmp) / f"runs-{n}")
            t0 = time.perf_counter()
            fill(RunStore(dirs[n]), n)
            print(f"filled a store with {n:,} runs in {time.perf_counter() - t0:.1f} s", flush=True)
        for n in (small, large):  # first visits: imports, the manager, the first reads
            for name in pages:
                open_page(name, dirs[n])
        for thread in threading.enumerate():  # the dashboard's engine imports, in the background since the first page
            if thread.name == "mtl-preload":
                thread.join()
        for _ in range(repeats):
            for n in (small, large):
                for name in pages:
                    times.setdefault((name, n), []).append(open_page(name, dirs[n]))
    logging.disable(logging.NOTSET)
    return {name: {clock: (min(t[k] for t in times[name, small]), min(t[k] for t in times[name, large]))
                   for k, clock in enumerate(("wall", "cpu"))} for name in pages}


def main(argv: list[str] | None = None) -> float:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=50)
    ap.add_argument("--large", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="which time the last line's ratio is of")
    args = ap.parse_args(argv)
    result = measure(args.small, args.large, args.repeats)
    a, b = f"{args.small:,} runs", f"{args.large:,} runs"
    print(f"best of {args.repeats}, ms  {'wall ' + a:>16} {'wall ' + b:>16} {'ratio':>6}   "
          f"{'cpu ' + a:>15} {'cpu ' + b:>15} {'ratio':>6}")
    for name, r in result.items():
        print(f"{name:<16} " + "   ".join(f"{r[c][0] * 1e3:>15.1f} {r[c][1] * 1e3:>16.1f} {r[c][1] / r[c][0]:>6.2f}"
                                         for c in ("wall", "cpu")))
    worst = max(result, key=lambda k: result[k][args.clock][1] / result[k][args.clock][0])
    small_s, large_s = result[worst][args.clock]
    print(f"worst ratio of {args.clock} time, {b} / {a} ({worst}; target <= {TARGET}): {large_s / small_s:.2f}")
    return large_s / small_s


if __name__ == "__main__":
    main()
