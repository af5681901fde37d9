"""The Studies page, driven with Streamlit's AppTest: a finished study's verdict, table, banded
curves, trade-off, parallel coordinates and downloads; the picker; the controls acting on a
study that trains; and what a runs directory without studies says."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.studies.test_runner import BASE
from tests.ui.conftest import no_exceptions, page
from tests.ui.test_live import charts, values, wait_for

APP = str(Path(__file__).resolve().parents[2] / "app.py")
TASKS = ("classification", "segmentation")


@pytest.fixture(scope="module")
def finished_studies(tmp_path_factory) -> dict:
    """Two finished studies in one runs directory: ``main`` (ew and rlw x 2 seeds + the baselines
    of both tasks, 8 runs) and, started after it, ``small`` (one method, one seed)."""
    from mtl_core.runs.manager import RunManager
    from mtl_core.studies.runner import StudyRunner
    from mtl_core.studies.spec import StudySpec

    d = tmp_path_factory.mktemp("study_runs")
    manager = RunManager(d, max_concurrent=1)
    runner = StudyRunner(manager)
    main = runner.start(StudySpec.from_dict({"name": "two methods", "base": BASE, "seeds": 2, "baselines": True,
                                             "factors": {"weighting.method": ["ew", "rlw"]}}))
    assert runner.wait(main, timeout=300) == {"finished": 8, "total": 8}
    small = runner.start(StudySpec.from_dict({"name": "one method", "base": BASE, "seeds": 1,
                                              "factors": {"weighting.method": ["ew"]}}))
    assert runner.wait(small, timeout=120)["finished"] == 1
    manager.shutdown()
    return {"dir": d, "main": main, "small": small}


@pytest.fixture
def studies_dir(finished_studies, monkeypatch) -> dict:
    monkeypatch.setenv("MTL_RUNS_DIR", str(finished_studies["dir"]))
    return finished_studies


def studies_page(study_id: str | None = None):
    at = page("studies")
    if study_id is not None:
        at.query_params["study"] = study_id
    return at


def test_a_finished_study_shows_its_verdict_table_curves_trade_off_and_downloads(studies_dir):
    from mtl_core.store.store import RunStore
    from mtl_core.studies.summary import summarize

    sid = studies_dir["main"]
    at = studies_page(sid)
    at.run()
    no_exceptions(at)
    summary = summarize(RunStore(studies_dir["dir"]), sid)
    assert any("two methods" in m.value and "finished" in m.value for m in at.markdown)
    # the verdict on top, what it ranks on, and that nothing was chosen on test
    sentence = summary.sentence[:1].upper() + summary.sentence[1:]
    assert [s.value for s in at.success] == [sentence] and "2 seeds" in sentence
    assert any("Ranked on Δm against the single-task baselines" in c.value and "nothing is chosen on test" in c.value
               for c in at.caption)
    # the table: a row per level, then the baselines; each metric as mean ± 95% CI
    table = at.dataframe[0].value
    assert list(table["level"]) == ["weighting.method=ew", "weighting.method=rlw", "baseline: classification",
                                    "baseline: segmentation"]
    assert list(table["seeds finished"]) == ["2 of 2"] * 4
    ew = summary.levels[0]
    assert table["Classification accuracy ↑"][0] == str(ew.metrics["classification"])
    assert table["Δm (%) ↑"][0] == str(ew.delta_m) and " ± " in table["Δm (%) ↑"][0]
    assert set(table["rank"][:2]) <= {1, 2} and table["parameters"][0] == ew.params
    # a banded curve per task (its primary validation metric) and the total loss, one line per level
    figs = {c.key: c.spec for c in charts(at)}
    assert set(figs) >= {f"study_{sid}_task_{t}" for t in TASKS} | {f"study_{sid}_total"}
    seg = figs[f"study_{sid}_task_segmentation"]
    lines = {tr["name"]: tr for tr in seg["data"] if tr.get("fill") != "toself"}
    assert set(lines) == {"ew", "rlw", "segmentation alone"}
    bands = [tr for tr in seg["data"] if tr.get("fill") == "toself"]
    assert len(bands) == 3  # two seeds each: a ± 1 std band per level and for the baseline
    assert values(lines["ew"]["x"]) == [2, 4]  # evaluated every 2 of the 4 steps
    assert "miou" in seg["layout"]["title"]["text"] and seg["layout"]["legend"]["title"]["text"] == "weighting.method"
    assert any("band: ± 1 std over seeds" in c.value for c in at.caption)
    # the trade-off: both levels at their means with error bars, the front as a line; parcoords
    trade = figs[f"study_tradeoff_{sid}"]
    points = [tr for tr in trade["data"] if tr.get("mode") == "markers+text"]
    assert sorted(tr["text"][0] for tr in points) == ["ew", "rlw"]
    assert all(tr["error_x"]["visible"] and tr["error_y"]["visible"] for tr in points)
    assert any(tr.get("name") == "Pareto front" for tr in trade["data"])
    par = figs[f"study_parcoords_{sid}"]["data"][0]
    assert par["type"] == "parcoords"
    labels = [dim["label"] for dim in par["dimensions"]]
    assert labels == ["method", "Classification accuracy ↑", "Segmentation miou ↑", "Δm (%) ↑"]
    method_axis = par["dimensions"][0]
    assert method_axis["ticktext"] == ["ew", "rlw"] and sorted(values(method_axis["values"])) == [0, 0, 1, 1]
    # downloads: the table as CSV, the summary and the spec as JSON
    downloads = {d.proto.label for d in at.get("download_button")}
    assert downloads == {"Table (CSV)", "Summary (JSON)", "Spec (JSON)"}
    # nothing trains: nothing to pause or stop, nothing to carry on
    assert at.button(key=f"study_stop_{sid}").disabled and at.button(key=f"study_carry_on_{sid}").disabled


def test_the_picker_lists_the_studies_newest_first_and_the_url_picks_one(studies_dir):
    at = studies_page()
    at.run()
    no_exceptions(at)
    picker = at.sidebar.selectbox(key="study_picker")
    assert picker.options[0].startswith("one method · finished · 1 of 1 runs finished")  # newest first
    assert picker.options[1].startswith("two methods · finished · 8 of 8 runs finished")
    assert any("one method" in m.value for m in at.markdown)
    picker.set_value(studies_dir["main"]).run()
    no_exceptions(at)
    assert at.query_params["study"] == studies_dir["main"]
    assert any("two methods" in m.value for m in at.markdown)
    at = studies_page(studies_dir["small"])  # ?study= in the URL
    at.run()
    assert at.sidebar.selectbox(key="study_picker").value == studies_dir["small"]
    assert [tr for tr in charts(at) if tr.key.startswith("study_parcoords")]  # its one run: one line


def test_a_run_of_the_study_is_one_click_from_its_live_page(studies_dir):
    from streamlit.testing.v1 import AppTest

    from mtl_core.store.store import RunStore
    from mtl_core.studies.store import StudyStore

    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("pages/studies.py")
    at.query_params["study"] = studies_dir["main"]
    at.run()
    no_exceptions(at)
    plan = StudyStore(RunStore(studies_dir["dir"])).plan(studies_dir["main"])
    run_id = plan[1]["run_id"]  # ew, seed 2
    at.button(key=f"study_open_{run_id}").click().run()
    no_exceptions(at)
    assert at.session_state["run_id"] == run_id
    assert any(t.value == "Live training" for t in at.title)


def test_without_studies_the_page_says_how_to_start_one(runs_dir):
    at = page("studies")
    at.run()
    no_exceptions(at)
    assert len(at.info) == 1
    text = at.info[0].value
    assert "Start as a study" in text and "python -m mtl_core study run SPEC.json" in text


@pytest.fixture
def training_study(tmp_path, monkeypatch):
    """A study of two long runs (one trains, one waits) started with the page's own RunManager;
    every run stopped afterwards."""
    monkeypatch.setenv("MTL_RUNS_DIR", str(tmp_path))
    from mtl_core.runs.manager import get_manager
    from mtl_core.studies.runner import StudyRunner
    from mtl_core.studies.spec import StudySpec

    manager = get_manager(tmp_path)
    runner = StudyRunner(manager)
    base = {**BASE, "optim": {**BASE["optim"], "steps": 100_000}, "eval_every": 10_000, "checkpoint_every": 0}
    sid = runner.start(StudySpec.from_dict({"name": "long", "base": base, "seeds": 2,
                                            "factors": {"weighting.method": ["ew"]}}))
    ids = [row["run_id"] for row in runner.studies.plan(sid)]
    wait_for(lambda: manager.store.get_run(ids[0])["status"] == "running")
    yield runner, sid, ids
    runner.stop(sid)
    for row in runner.studies.plan(sid):  # carry on and more seeds may have started others
        if row["run_id"]:
            manager.wait(row["run_id"], timeout=60)


def test_pause_stop_and_carry_on_act_on_a_study_that_trains(training_study):
    runner, sid, ids = training_study
    store = runner.manager.store
    at = studies_page(sid)
    at.run()
    no_exceptions(at)
    assert any("long" in m.value and "training" in m.value for m in at.markdown)
    bar = at.get("progress")[0].proto
    assert "0 of 2 runs finished" in bar.text and "training" in bar.text
    if runner.manager.max_concurrent == 1:
        assert "1 training · 1 queued" in bar.text
    assert at.button(key=f"study_carry_on_{sid}").disabled
    at.button(key=f"study_pause_{sid}").click().run()
    no_exceptions(at)
    assert runner.studies.get(sid)["state"] == "paused"
    # the run may already have taken the pause by now: pending or applied, never refused
    assert [c["state"] for c in store.commands(ids[0]) if c["kind"] == "pause"] in (["pending"], ["applied"])
    at.button(key=f"study_resume_{sid}").click().run()
    assert runner.studies.get(sid)["state"] == "active"
    at.button(key=f"study_stop_{sid}").click().run()
    no_exceptions(at)
    for rid in ids:
        assert runner.manager.wait(rid, timeout=60) == "stopped"
    at.run()
    no_exceptions(at)
    assert any("stopped" in m.value for m in at.markdown)
    assert "2 to carry on" in at.get("progress")[0].proto.text
    carry_on = at.button(key=f"study_carry_on_{sid}")
    assert not carry_on.disabled and at.button(key=f"study_stop_{sid}").disabled
    carry_on.click().run()
    no_exceptions(at)
    assert runner.studies.get(sid)["state"] == "active"
    plan = runner.studies.plan(sid)
    assert {row["run"]["status"] for row in plan} <= {"queued", "running"}  # resumed, or started anew
    assert any("training" in m.value for m in at.markdown)
    assert not at.error


def test_more_seeds_adds_runs_and_a_refusal_shows_as_a_message(training_study, monkeypatch):
    runner, sid, ids = training_study
    at = studies_page(sid)
    at.run()
    assert at.number_input(key=f"study_more_seeds_{sid}").value == 3
    at.button(key=f"study_extend_{sid}").click().run()
    no_exceptions(at)
    plan = runner.studies.plan(sid)
    assert len(plan) == 3 and plan[-1]["seed"] == 3 and plan[-1]["run_id"]
    assert json.loads(json.dumps(runner.studies.get(sid)["spec"]))["seeds"] == 3
    from mtl_core.errors import ConfigError
    from mtl_core.studies.runner import StudyRunner

    def refuse(self, study_id, seeds):
        raise ConfigError("seeds", "refused for the test")

    monkeypatch.setattr(StudyRunner, "extend", refuse)
    at.button(key=f"study_extend_{sid}").click().run()
    no_exceptions(at)
    assert any("refused for the test" in e.value for e in at.error)
