"""Minutes a quick study takes on this machine: 3 fusion methods x 3 seeds plus the single-task
baselines of its 2 tasks (15 runs, ``assets/studies/quick_methods.json``), trained by one
RunManager at its default concurrency, from the first run queued to the last one finished.

Target (studies issue): under 10 minutes on a 2-core laptop. Last line: the minutes.

    python bench/study_speed.py [--spec assets/studies/quick_methods.json]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mtl_core.runs.manager import RunManager  # noqa: E402
from mtl_core.studies.runner import StudyRunner  # noqa: E402
from mtl_core.studies.spec import StudySpec  # noqa: E402
from mtl_core.studies.summary import summarize  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", default=str(ROOT / "assets" / "studies" / "quick_methods.json"))
    args = ap.parse_args()
    spec = StudySpec.from_json(Path(args.spec).read_text())
    with tempfile.TemporaryDirectory() as d:
        manager = RunManager(d)
        runner = StudyRunner(manager)
        t0 = time.time()
        study_id = runner.start(spec)
        counts = runner.wait(study_id)
        minutes = (time.time() - t0) / 60
        summary = summarize(manager.store, study_id)
        manager.shutdown()
    print(f"{counts.get('finished', 0)} of {counts['total']} runs finished, {manager.max_concurrent} at a time")
    for lv in summary.levels:
        metrics = ", ".join(f"{t} {iv}" for t, iv in lv.metrics.items())
        print(f"  {lv.label}: {metrics}; Δm {lv.delta_m}")
    print(summary.sentence)
    print(f"quick study ({counts['total']} runs) minutes: {minutes:.2f}")


if __name__ == "__main__":
    main()
