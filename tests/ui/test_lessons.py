"""The Lessons page, driven with Streamlit's AppTest on a folder of one tiny lesson: its text,
controls and start; the study it starts, with the verdict and the charts; "try next"; the state
in the URL, and a malformed link that says what was wrong and shows the default."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtl_core.config import to_link
from tests.ui.conftest import no_exceptions, page
from tests.ui.test_live import charts, wait_for

TINY = {
    "id": "tiny", "order": 1, "title": "Tiny lesson",
    "text": " ".join(["Segmentation learnt with classification against segmentation alone."] * 8),
    "paper": {"title": "Caruana, Multitask Learning, 1997", "url": "https://doi.org/10.1023/A:1007379606734"},
    "study": {"base": {"tasks": ["classification", "segmentation"],
                       "data": {"image_size": 32, "train_size": 128, "val_size": 16, "test_size": 16},
                       "model": {"width": 8},
                       "optim": {"steps": 4, "batch_size": 8, "warmup_steps": 0},
                       "eval_every": 2, "checkpoint_every": 0, "gradstats_every": 1},
              "seeds": 2, "baselines": ["segmentation"]},
    "charts": [{"kind": "curves", "task": "segmentation"}, {"kind": "cosine"}, {"kind": "effect"}],
    "effect": {"task": "segmentation", "a": {}, "b": "baseline", "sign": "+", "text": "segmentation mIoU, MTL - STL"},
    "knobs": [{"path": "data.label_fraction.segmentation", "label": "Share of images with segmentation labels",
               "min": 0.05, "max": 1.0, "step": 0.05}],
    "try_next": [{"id": "wide", "label": "Wider", "why": "More channels.", "base": {"model": {"width": 16}}}],
}
SECOND = {**TINY, "id": "second", "order": 2, "title": "Second lesson"}


@pytest.fixture
def lesson_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "lessons"
    d.mkdir()
    (d / "1_tiny.json").write_text(json.dumps(TINY))
    (d / "2_second.json").write_text(json.dumps(SECOND))
    monkeypatch.setenv("MTL_LESSONS_DIR", str(d))
    monkeypatch.setenv("MTL_RUNS_DIR", str(tmp_path / "runs"))
    return d


def lessons_page(**params: str):
    return page("lessons", timeout=120, **params)


def _texts(at) -> str:
    return " ".join(m.value for m in at.markdown) + " ".join(h.value for h in at.header)


def test_a_lesson_shows_its_text_paper_controls_and_start(lesson_dir):
    at = lessons_page()
    at.run()
    no_exceptions(at)
    assert at.header[0].value == "1. Tiny lesson"
    assert "Caruana" in _texts(at)
    assert at.slider[0].label == "Share of images with segmentation labels" and at.slider[0].value == 1.0
    start = next(b for b in at.button if b.label.startswith("Run this lesson"))
    assert "4 runs" in start.label  # 1 level + 1 baseline, x 2 seeds
    assert any("Wider" in m.value for m in at.markdown)


def test_a_malformed_link_says_what_was_wrong_and_shows_the_default(lesson_dir):
    at = lessons_page(lesson="nope", knobs="c1.damaged")
    at.run()
    no_exceptions(at)
    warnings = " ".join(w.value for w in at.warning)
    assert "There is no lesson 'nope'" in warnings
    assert at.header[0].value == "1. Tiny lesson"


def test_the_link_s_controls_and_variation_are_applied(lesson_dir):
    at = lessons_page(lesson="second", knobs=to_link({"data.label_fraction.segmentation": 0.25}), **{"try": "wide"})
    at.run()
    no_exceptions(at)
    assert at.header[0].value == "2. Second lesson · Wider"
    assert at.slider[0].value == 0.25
    assert any("Trying: Wider" in i.value for i in at.info)


def test_instructor_mode_hides_the_lesson_list_and_the_seeds(lesson_dir):
    at = lessons_page(lesson="second", instructor="1")
    at.run()
    no_exceptions(at)
    assert at.header[0].value == "2. Second lesson"
    assert not [n for n in at.number_input if n.label == "Seeds"]
    plain = lessons_page(lesson="second")
    plain.run()
    assert [n for n in plain.number_input if n.label == "Seeds"]


def test_running_a_lesson_trains_its_study_and_gives_the_verdict_with_its_charts(lesson_dir):
    from mtl_core.store.store import RunStore
    from mtl_core.studies.store import StudyStore

    at = lessons_page()
    at.run()
    next(b for b in at.button if b.label.startswith("Run this lesson")).click().run()
    no_exceptions(at)
    study_id = at.query_params.get("study")
    assert study_id, "the study's id is not in the URL"
    study_id = study_id[0] if isinstance(study_id, list) else study_id
    store = RunStore(lesson_dir.parent / "runs")
    wait_for(lambda: all(r["run"] and r["run"]["status"] == "finished" for r in StudyStore(store).plan(study_id)), 240)
    at.run()
    no_exceptions(at)
    verdict = " ".join(x.value for x in [*at.success, *at.warning, *at.info])
    assert "segmentation mIoU, MTL - STL" in verdict and "2 seeds" in verdict
    # curves, cosine and effect: every chart the lesson names
    keys = [c.key for c in charts(at)]
    assert any(k.endswith("curves_segmentation") for k in keys) and any(k.endswith("cosine") for k in keys)
    assert any(k.endswith("effect") for k in keys), keys
    # a second visit with the same settings finds the same study (a shared link shows the class's runs)
    again = lessons_page()
    again.run()
    assert "segmentation mIoU, MTL - STL" in " ".join(x.value for x in [*again.success, *again.warning, *again.info])
    # predict first (predict=1): the verdict waits for the student's prediction, then stands beside it
    from mtl_core.lessons.catalog import lessons
    from mtl_core.lessons.effect import measure, outcome
    from mtl_core.studies.summary import summarize

    lesson = lessons(lesson_dir)[0][0]
    truth = outcome(measure(summarize(store, study_id), lesson.effect).interval)
    guess = "below" if truth == "above" else "above"
    student = lessons_page(predict="1", study=study_id)
    student.run()
    no_exceptions(student)
    assert any("predict it above first" in i.value for i in student.info)
    assert "segmentation mIoU, MTL - STL: " not in " ".join(x.value for x in [*student.success, *student.warning])
    radio = next(r for r in student.radio if r.key.startswith("lesson_predict_radio"))
    radio.set_value(guess).run()
    next(b for b in student.button if b.key.startswith("lesson_predict_lock")).click().run()
    no_exceptions(student)
    shown = " ".join(x.value for x in [*student.success, *student.warning, *student.info])
    assert "You predicted" in shown and "segmentation mIoU, MTL - STL" in shown  # the verdict, now
    assert f"The answer: **{dict(above='above 0', below='below 0', unclear='no clear')[truth]}" in shown
    assert student.query_params["predict"] == "1"
