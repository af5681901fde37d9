"""Every lesson proves its point: each lesson's study (``assets/lessons/*.json``) trained headless
on this machine, its claimed effect measured as the paired difference over seeds with its 95% CI,
and the minutes it took from the first run queued to the last one finished.

A lesson is reproduced when its interval excludes zero on the side it claims and its study took
at most 5 minutes (the lessons issue's bound for a 2-core machine). Last line:
``lessons reproduced: K of N``.

    python bench/lessons.py [--only why_together,loss_scales] [--seeds N] [--variations] [--runs-dir DIR]

``--variations`` also runs every "try next" variation that claims an effect of its own.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mtl_core.lessons.catalog import lessons  # noqa: E402
from mtl_core.lessons.effect import measure  # noqa: E402
from mtl_core.runs.manager import RunManager  # noqa: E402
from mtl_core.studies.runner import StudyRunner  # noqa: E402
from mtl_core.studies.summary import summarize  # noqa: E402

LIMIT_MINUTES = 5.0


def run_one(lesson, variation: str = "", seeds: int | None = None, runs_dir: str = "") -> tuple[bool, str]:
    spec = lesson.spec(variation=variation, seeds=seeds)
    effect = lesson.effect_of(variation)
    with tempfile.TemporaryDirectory() as tmp:
        manager = RunManager(runs_dir or tmp)
        t0 = time.time()
        study_id = StudyRunner(manager).start(spec)
        counts = StudyRunner(manager).wait(study_id)
        minutes = (time.time() - t0) / 60
        m = measure(summarize(manager.store, study_id), effect)
        manager.shutdown()
    iv = m.interval
    name = f"lesson {lesson.order}" + (f" ({variation})" if variation else "")
    ok = m.holds and minutes <= LIMIT_MINUTES
    failed = counts["total"] - counts.get("finished", 0)
    line = (f"{name}: {effect.text} = {iv.mean:+.3f} (95% CI {iv.low:+.3f}..{iv.high:+.3f}, {iv.n} seeds), "
            f"{minutes:.1f} min, {counts['total']} runs" + (f", {failed} not finished" if failed else "")
            + ("" if ok else "  <- NOT REPRODUCED" + ("" if m.holds else ": the CI includes 0 or has the wrong sign")
               + ("" if minutes <= LIMIT_MINUTES else f": over {LIMIT_MINUTES:g} min")))
    return ok, line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated lesson ids (default: every lesson)")
    ap.add_argument("--seeds", type=int, help="seeds per arm instead of each lesson's own")
    ap.add_argument("--variations", action="store_true", help="also the try-next variations that claim an effect")
    ap.add_argument("--runs-dir", default="", help="keep the studies here (the dashboard then shows them on Lessons)")
    args = ap.parse_args()
    found, problems = lessons()
    for p in problems:
        print(f"refused: {p}")
    only = [x for x in args.only.split(",") if x]
    chosen = [x for x in found if not only or x.id in only]
    results = []
    for lesson in chosen:
        jobs = [""] + ([v.id for v in lesson.try_next if v.effect is not None] if args.variations else [])
        for var in jobs:
            ok, line = run_one(lesson, var, args.seeds, args.runs_dir)
            print(line, flush=True)
            if not var:
                results.append(ok)
    print(f"lessons reproduced: {sum(results)} of {len(results)}")


if __name__ == "__main__":
    main()
