"""bench/run_list.py on small stores: it fills them, opens every page that lists runs at both sizes
without an error, and ends on the worst ratio."""
from __future__ import annotations

import os

from bench.run_list import PAGES, fill, main, run_id
from mtl_core.store.store import RunStore


def test_the_filled_store_has_studies_tags_notes_and_metrics_on_its_newest_runs(tmp_path):
    store = RunStore(tmp_path)
    fill(store, 160)  # blocks of 30: 0 to 3 studies, 4 plain runs, 5 a study again
    found = store.find_runs(limit=200)
    assert found.total == 160 and [r["id"] for r in found.rows] == [run_id(i) for i in range(160)]  # newest first
    assert len(found.study_names) == 5 and found.studies["-"] == 30
    assert store.find_runs(label="keep").total == 23 and store.find_runs("diverged").total == 15
    assert store.metric_count(run_id(2)) > 0 and store.metric_count(run_id(40)) == 0
    first = [r for r in found.rows if r["study"] == "study-bench-0000" and r["level"] == "model.width=16"]
    assert [r["seed"] for r in first] == [0, 1, 2] and first[0]["created"] - first[-1]["created"] < 0.01


def test_the_bench_opens_every_page_at_both_sizes_and_ends_on_the_worst_ratio(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("MTL_RUNS_DIR", str(tmp_path))
    ratio = main(["--small", "3", "--large", "40", "--repeats", "1"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines[-1 - len(PAGES):-1]] == list(PAGES)
    assert lines[-1].startswith("worst ratio of cpu time, 40 runs / 3 runs") and lines[-1].endswith(f"{ratio:.2f}")
    assert ratio > 0 and os.environ["MTL_RUNS_DIR"] == str(tmp_path)  # the pages' runs directory is put back
