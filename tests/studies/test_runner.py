"""Studies through the RunManager: a study's runs are ordinary runs, trained and read back as one
experiment; baselines are reused across studies; a bad factor starts nothing; a killed study
carries on without training a finished run again."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mtl_core.errors import ConfigError
from mtl_core.runs.manager import RunManager
from mtl_core.store.status import RunStatus
from mtl_core.studies.runner import StudyRunner
from mtl_core.studies.spec import StudySpec
from mtl_core.studies.store import StudyStore
from mtl_core.studies.summary import summarize, table, to_json

ROOT = Path(__file__).resolve().parents[2]
BASE = {"tasks": ["classification", "segmentation"], "data": {"image_size": 32, "train_size": 64, "val_size": 32,
                                                              "test_size": 32},
        "optim": {"batch_size": 16, "steps": 4, "warmup_steps": 0}, "eval_every": 2, "checkpoint_every": 2,
        "device": "cpu"}


def spec(**kw) -> StudySpec:
    return StudySpec.from_dict({"name": "tiny study", "base": BASE, "factors": {"weighting.method": ["ew", "static"]},
                                "seeds": 2, "baselines": True, **kw})


@pytest.fixture
def runner(tmp_path, store_backend):
    m = RunManager(tmp_path, max_concurrent=1)
    yield StudyRunner(m)
    m.shutdown()


def test_a_study_trains_its_plan_as_ordinary_runs_and_reads_back_as_one_experiment(runner):
    sid = runner.start(spec())
    counts = runner.wait(sid, timeout=300)
    assert counts == {"finished": 8, "total": 8}  # 2 methods x 2 seeds + 2 tasks x 2 seeds of baselines
    store = runner.manager.store
    runs = store.list_runs()
    assert len(runs) == 8 and all(r["source"] == "study" for r in runs)
    trial = next(r for r in runs if r["tags"]["role"] == "trial")
    assert trial["tags"]["study"] == sid and trial["tags"]["level"] in ({"weighting.method": "ew"},
                                                                         {"weighting.method": "static"})
    s = summarize(store, sid)
    assert [lv.label for lv in s.levels] == ["weighting.method=ew", "weighting.method=static"]
    for lv in s.levels:
        assert lv.finished == [1, 2] and set(lv.metrics) == {"classification", "segmentation"}
        assert lv.metrics["segmentation"].n == 2 and lv.delta_m is not None and lv.delta_m.n == 2
        assert lv.params and lv.seconds is not None
    assert set(s.baselines) == {"classification", "segmentation"} and s.baselines["classification"].n == 2
    assert s.ranked_on.startswith("Δm against the single-task baselines") and len(s.ranking) == 2
    assert "seeds" in s.sentence
    rows = table(s)
    assert rows[0]["seeds finished"] == "2 of 2" and rows[0]["rank"] in (1, 2)
    json.loads(to_json(s))  # a valid JSON download (no Infinity)


def test_a_second_study_reuses_the_baselines_an_earlier_one_trained(runner):
    first = runner.start(spec())
    runner.wait(first, timeout=300)
    before = {r["id"] for r in runner.manager.store.list_runs()}
    second = runner.start(spec(factors={"weighting.method": ["rlw"]}))
    counts = runner.wait(second, timeout=300)
    new = [r for r in runner.manager.store.list_runs() if r["id"] not in before]
    assert counts["finished"] == counts["total"] == 6
    assert len(new) == 2 and all(r["tags"]["role"] == "trial" for r in new)  # the 4 baselines were reused
    assert summarize(runner.manager.store, second).levels[0].delta_m.n == 2


def test_a_bad_factor_is_refused_before_any_run_starts(runner):
    with pytest.raises(ConfigError, match="nope"):
        runner.start(spec(factors={"weighting.method": ["ew", "nope"]}))
    assert runner.manager.store.list_runs() == [] and StudyStore(runner.manager.store).list() == []


def test_more_seeds_extend_every_level_and_baseline(runner):
    sid = runner.start(spec(baselines=False, seeds=1))
    runner.wait(sid, timeout=300)
    assert runner.extend(sid, 2) == 2
    counts = runner.wait(sid, timeout=300)
    assert counts == {"finished": 4, "total": 4}
    assert [lv.finished for lv in summarize(runner.manager.store, sid).levels] == [[1, 2], [1, 2]]


@pytest.mark.slow
def test_kill_9_in_the_middle_of_a_study_then_resume_loses_no_finished_run(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec(seeds=2).to_dict()))
    runs = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "mtl_core", "study", "run", str(path), "--runs-dir", str(runs),
                             "--quiet", "--max-concurrent", "1"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    sid = proc.stdout.readline().split()[1]
    from mtl_core.store.store import RunStore

    store = RunStore(runs)
    deadline = time.time() + 180
    while sum(r["status"] == RunStatus.FINISHED for r in store.list_runs()) < 3:
        assert time.time() < deadline and proc.poll() is None, "the study never got three runs done"
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    finished = {r["id"]: store.metrics_history(r["id"]) for r in store.list_runs() if r["status"] == RunStatus.FINISHED}
    time.sleep(5.5)
    m = RunManager(runs, max_concurrent=1, stale_after=5.0)  # the killed runs show as interrupted
    runner = StudyRunner(m)
    counts = runner.carry_on(sid)
    assert counts["done"] == len(finished) and counts["started"] + counts["resumed"] == 8 - len(finished)
    assert runner.wait(sid, timeout=300) == {"finished": 8, "total": 8}
    plan = {row["run_id"] for row in runner.studies.plan(sid)}
    assert set(finished) <= plan  # every run finished before the kill still serves the study, untrained again
    assert all(store.metrics_history(rid) == h for rid, h in finished.items())
    m.shutdown()


def test_study_resume_right_after_its_head_died_waits_for_the_orphans_and_carries_them_on(tmp_path):
    """The head (``study run``) killed mid-run and ``study resume`` started at once, while the orphan
    is still "heard from": it is left until marked interrupted, then resumed from its checkpoint."""
    one = {"name": "orphan", "base": {**BASE, "optim": {**BASE["optim"], "steps": 120}, "checkpoint_every": 5},
           "factors": {"weighting.method": ["ew"]}, "seeds": 1, "baselines": False}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(one))
    runs = tmp_path / "runs"
    env = {**os.environ, "MTL_HEARTBEAT_STALE_S": "6"}
    proc = subprocess.Popen([sys.executable, "-m", "mtl_core", "study", "run", str(path), "--runs-dir", str(runs),
                             "--quiet"], cwd=ROOT, stdout=subprocess.PIPE, text=True, env=env)
    sid = proc.stdout.readline().split()[1]
    from mtl_core.store.store import RunStore

    store = RunStore(runs)
    deadline = time.time() + 120
    while not (store.list_runs() and store.latest_checkpoint(store.list_runs()[0]["id"])
               and store.list_runs()[0]["step"] >= 10):
        assert time.time() < deadline and proc.poll() is None, "the run never passed its first checkpoint"
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    (run,) = store.list_runs()
    assert run["status"] == RunStatus.RUNNING  # as the dead head left it
    done = subprocess.run([sys.executable, "-m", "mtl_core", "study", "resume", sid, "--runs-dir", str(runs),
                           "--quiet"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "carrying on 1 run(s) whose trainer was lost: 1 resumed" in done.stderr
    assert store.get_run(run["id"])["status"] == RunStatus.FINISHED and len(store.list_runs()) == 1
    assert store.events(run["id"], "resumed_from_checkpoint")


def test_the_cli_runs_shows_and_lists_a_study(tmp_path, capsys):
    """``python -m mtl_core study run`` in a new process; show, list and a refusal through the
    same ``cli.main`` in this one."""
    from mtl_core.cli import main

    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec(seeds=1, baselines=False).to_dict()))
    runs = tmp_path / "runs"
    p = subprocess.run([sys.executable, "-m", "mtl_core", "study", "run", str(path), "--runs-dir", str(runs), "--quiet"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    lines = p.stdout.strip().splitlines()
    assert lines[0].startswith("study study-") and lines[-1] == "2 of 2 runs finished"
    sid = lines[0].split()[1]
    assert main(["study", "show", sid, "--runs-dir", str(runs)]) == 0
    show = capsys.readouterr().out
    assert "weighting.method=ew" in show and "mean ± 95% CI" in show
    assert main(["study", "list", "--runs-dir", str(runs)]) == 0
    listed = capsys.readouterr().out
    assert sid in listed and "2/2 runs finished" in listed
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**spec().to_dict(), "factors": {"model.widht": [8, 16]}}))
    assert main(["study", "run", str(bad), "--runs-dir", str(runs)]) == 2
    err = capsys.readouterr().err
    assert "model.widht" in err and "model.width" in err


def test_a_task_with_several_baselines_names_what_sets_them_apart():
    from mtl_core.studies.spec import expand
    from mtl_core.studies.summary import baseline_labels

    planned = expand(spec(factors={"model.width": [8, 16]}, seeds=2))
    names = sorted(set(baseline_labels([p for p in planned if p.role == "baseline"]).values()))
    assert names == ["classification (model.width=16)", "classification (model.width=8)",
                     "segmentation (model.width=16)", "segmentation (model.width=8)"]
    plain = baseline_labels([p for p in expand(spec()) if p.role == "baseline"])
    assert sorted(set(plain.values())) == ["classification", "segmentation"]


def test_a_search_asks_optuna_for_trials_that_train_as_runs_of_the_study(runner):
    """NSGA-II over a task's weight: each trial's objectives are the tasks' validation metrics;
    the trials are ordinary runs of the study, read back like a grid's levels."""
    s = StudySpec.from_dict({"name": "weight search", "base": BASE, "seeds": 1, "baselines": True,
                             "search": {"trials": 3, "sampler": "random", "seed": 1,
                                        "space": {"weighting.weights.segmentation": {"log": [0.1, 10.0]}}}})
    sid = runner.start(s)
    counts = runner.wait(sid, timeout=300)
    assert counts == {"finished": 5, "total": 5}  # 3 trials x 1 seed + 2 baselines
    summary = summarize(runner.manager.store, sid)
    assert len(summary.levels) == 3
    weights = [lv.level["weighting.weights.segmentation"] for lv in summary.levels]
    assert all(0.1 <= w <= 10.0 for w in weights) and len(set(weights)) == 3
    assert all(lv.delta_m is not None for lv in summary.levels)  # paired with the base config's baselines
    assert runner.searching(sid) is False
    # carrying a finished search on asks for nothing more
    assert runner.carry_on(sid)["started"] == 0 and runner.wait(sid, timeout=60)["total"] == 5
    store = runner.manager.store
    if store.url:  # on PostgreSQL the trials are in the database, where every worker and dashboard reads them
        import optuna

        from mtl_core.store.postgres import optuna_storage_url

        kept = optuna.load_study(study_name=sid, storage=optuna_storage_url(store._conn(), store.url))
        assert sorted(t.params["weighting.weights.segmentation"] for t in kept.trials) == pytest.approx(
            sorted(weights), rel=1e-5)


def test_a_bad_search_space_is_refused_naming_the_factor(runner):
    bad = {"name": "bad", "base": BASE, "seeds": 1,
           "search": {"trials": 2, "space": {"optim.lr": {"log": [-1.0, 0.1]}}}}
    with pytest.raises(ConfigError, match=r"search\.space\.optim\.lr.*log range needs lo > 0"):
        runner.start(StudySpec.from_dict(bad))
    both = {**bad, "factors": {"weighting.method": ["ew"]}, "search": {"trials": 2, "space": {"optim.lr": [0.01]}}}
    with pytest.raises(ConfigError, match="factors .a grid. or a search, not both"):
        runner.start(StudySpec.from_dict(both))
    assert runner.manager.store.list_runs() == []
