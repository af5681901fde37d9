"""``python -m mtl_core study run|show|list|resume|stop|extend``: studies, headless.

``study run SPEC.json`` records the study, queues its runs and trains them in this process (up to
the concurrency limit: one per GPU, or one per two CPU cores), with a progress bar over runs;
Ctrl+C stops them, each saving a checkpoint, and ``study resume ID`` carries on. Its first line is
``study <ID>``, its last how many runs finished.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mtl_core.config import SELECT_USES
from mtl_core.errors import MTLError
from mtl_core.runs.manager import EXECUTORS, RunManager
from mtl_core.store.status import ACTIVE, RunStatus
from mtl_core.store.store import RunStore
from mtl_core.studies.runner import StudyRunner
from mtl_core.studies.spec import StudySpec
from mtl_core.studies.store import StudyStore
from mtl_core.studies.summary import summarize


def add_parser(sub, runs_dir) -> None:
    st = sub.add_parser("study", help="many runs as one experiment: factors x seeds (+ single-task baselines)")
    ss = st.add_subparsers(dest="study_command", required=True)
    r = ss.add_parser("run", help="start a study from a spec file and train it here")
    runs_dir(r)
    r.add_argument("spec", help='study spec JSON: {"name", "base", "factors", "seeds", "baselines"}')
    r.add_argument("--quiet", action="store_true")
    r.add_argument("--max-concurrent", type=int, help="runs trained side by side (default: per core or GPU)")
    executor(r)
    sh = ss.add_parser("show", help="a study's final table: each level's metrics, mean ± 95% CI over seeds")
    runs_dir(sh)
    sh.add_argument("study_id")
    sh.add_argument("--use", choices=SELECT_USES, help="which model of each run: best (on validation), last, or "
                    "mean_last (default: the study's rule)")
    ls = ss.add_parser("list", help="the studies in the runs directory")
    runs_dir(ls)
    rs = ss.add_parser("resume", help="carry a stopped or interrupted study on (no finished run is trained again)")
    runs_dir(rs)
    rs.add_argument("study_id")
    rs.add_argument("--quiet", action="store_true")
    rs.add_argument("--max-concurrent", type=int)
    executor(rs)
    ex = ss.add_parser("extend", help="more seeds for every level (and baseline) of a study, then train them")
    runs_dir(ex)
    ex.add_argument("study_id")
    ex.add_argument("--seeds", type=int, required=True, help="the new number of seeds (1..N)")
    ex.add_argument("--quiet", action="store_true")
    ex.add_argument("--max-concurrent", type=int)
    executor(ex)


def executor(p: argparse.ArgumentParser) -> None:
    p.add_argument("--executor", choices=EXECUTORS, default="thread", help="thread: train the runs in this "
                   "process; ray: as tasks of a Ray cluster (set MTL_RUNS_DB to a PostgreSQL store every node reaches)")
    p.add_argument("--address", help="the Ray cluster to join (default: auto, the one `ray start` began here)")


def main(a: argparse.Namespace) -> int:
    cmd = a.study_command
    if cmd in ("show", "list"):
        store = RunStore(a.runs_dir)
        return _show(store, a.study_id, a.use or "") if cmd == "show" else _list(store)
    manager = RunManager(a.runs_dir, max_concurrent=a.max_concurrent, executor=a.executor, address=a.address)
    runner = StudyRunner(manager)
    try:
        if cmd == "run":
            path = Path(a.spec)
            if not path.is_file():
                raise MTLError(f"{a.spec}: no such file; write a spec like the README's example")
            study_id = runner.start(StudySpec.from_json(path.read_text()))
        elif cmd == "resume":
            study_id = a.study_id
            counts = runner.carry_on(study_id)
            print(f"carrying on: {counts['done']} done, {counts['resumed']} resumed, {counts['started']} started, "
                  f"{counts['reused']} reused", file=sys.stderr)
        else:
            study_id = a.study_id
            print(f"{runner.extend(study_id, a.seeds)} runs added", file=sys.stderr)
        print(f"study {study_id}", flush=True)
        return _follow(runner, study_id, a.quiet)
    finally:
        manager.shutdown()


def _follow(runner, study_id: str, quiet: bool) -> int:
    """Wait for the study's runs with a progress bar; Ctrl+C stops them (resumable). A run whose
    trainer is lost meanwhile (an earlier head that died, whose runs were still heard from when this
    one started) is carried on once it is marked interrupted, at most once each here."""
    picked_up: set[str] = set()
    try:
        while True:
            counts = runner.progress(study_id)
            active = sum(counts.get(s, 0) for s in ACTIVE)
            if not quiet:
                done = counts.get(RunStatus.FINISHED, 0)
                bar = "#" * int(30 * done / max(1, counts["total"]))
                sys.stderr.write(f"\r[{bar:<30}] {done}/{counts['total']} runs finished, {active} queued or training"
                                 f"{', ' + str(counts[RunStatus.FAILED]) + ' failed' if counts.get(RunStatus.FAILED) else ''}   ")
                sys.stderr.flush()
            alive = any(runner.manager.is_active(row["run_id"]) for row in runner.studies.plan(study_id) if row["run_id"])
            if (active == 0 or not alive) and not runner.searching(study_id):
                lost = runner.orphaned(study_id) - picked_up
                if not lost:
                    break
                picked_up |= lost
                counts = runner.carry_on(study_id)
                print(f"\ncarrying on {len(lost)} run(s) whose trainer was lost: {counts['resumed']} resumed, "
                      f"{counts['started']} started", file=sys.stderr)
            time.sleep(1.0)
    except KeyboardInterrupt:
        runner.stop(study_id)
        runner.wait(study_id, timeout=120)
        print(f"\nstopped; carry on with: python -m mtl_core study resume {study_id}", file=sys.stderr)
        return 130
    counts = runner.wait(study_id)
    if not quiet:
        sys.stderr.write("\n")
    finished = counts.get(RunStatus.FINISHED, 0)
    print(f"{finished} of {counts['total']} runs finished" + (f", {counts[RunStatus.FAILED]} failed"
                                                              if counts.get(RunStatus.FAILED) else ""))
    return 0 if finished == counts["total"] else 1


def _show(store, study_id: str, use: str = "") -> int:
    s = summarize(store, study_id, use=use)
    print(f"study {s.study['id']}: {s.study['name']}  ({s.progress.get('finished', 0)} of {s.progress['total']} runs finished)")
    print(f"test metrics of each run's model {s.selection}")
    print(s.sentence)
    header = ["level", "seeds"] + [f"{t} {s.primary.get(t, '')}" for t in s.tasks] + ["Δm (%)", "rank"]
    rank = {r.label: r for r in s.ranking}
    rows = []
    for lv in s.levels:
        r = rank.get(lv.label)
        rows.append([lv.label, f"{len(lv.finished)}/{len(lv.seeds)}"]
                    + [str(lv.metrics[t]) if t in lv.metrics else "-" for t in s.tasks]
                    + [str(lv.delta_m) if lv.delta_m else "-", str(r.rank) if r else "-"])
    for name, iv in s.baselines.items():  # each single-task baseline in its task's column
        task = name.split(" ")[0]
        rows.append([f"baseline: {name}", str(iv.n)] + [str(iv) if t == task else "" for t in s.tasks] + ["", ""])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    for line in [header, *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=False)))
    print(f"(mean ± 95% CI over seeds, test split; ranked on {s.ranked_on})")
    return 0


def _list(store) -> int:
    studies = StudyStore(store)
    for st in studies.list():
        plan = studies.plan(st["id"])
        done = sum(1 for row in plan if row["run"] is not None and row["run"]["status"] == "finished")
        print(f"{st['id']}  {st['state']:<8} {done}/{len(plan)} runs finished  {st['name']}")
    return 0
