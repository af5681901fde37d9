"""Lessons: every preset in assets/lessons/ loads, validates and trains; a lesson's effect is
measured as a paired difference over seeds; its state survives the URL; bad files and links are
refused with the field named."""
from __future__ import annotations

import copy
import dataclasses
import json
import math

import pytest

from mtl_core.config import to_link
from mtl_core.errors import ConfigError
from mtl_core.lessons.catalog import CHART_KINDS, LESSONS_DIR, lessons, load, parse
from mtl_core.lessons.effect import Effect, measure
from mtl_core.studies.spec import expand
from mtl_core.studies.summary import Level, StudySummary
from ui import lesson_state

CATALOG, REFUSED = lessons()


def test_at_least_five_lessons_load_and_none_is_refused():
    assert not REFUSED, REFUSED
    assert len(CATALOG) >= 5
    assert len({x.id for x in CATALOG}) == len(CATALOG)
    assert [x.order for x in CATALOG] == sorted(x.order for x in CATALOG)


@pytest.mark.parametrize("lesson", CATALOG, ids=lambda x: x.id)
def test_each_lesson_has_what_a_student_needs(lesson):
    words = len(lesson.text.split())
    assert 60 <= words <= 170, f"{lesson.id}: {words} words"
    assert lesson.paper["title"] and lesson.paper.get("url", "").startswith("https://")
    assert all(c["kind"] in CHART_KINDS for c in lesson.charts)
    assert any(c["kind"] == "effect" for c in lesson.charts)
    planned = expand(lesson.spec())
    assert len({p.seed for p in planned}) >= 3  # a verdict needs seeds
    assert len(planned) <= 16  # a lesson's study fits in 5 minutes on 2 cores (bench/lessons.py measures it)
    assert lesson.try_next
    for variation in ["", *(v.id for v in lesson.try_next)]:  # each claim can be measured on its own study
        planned = expand(lesson.spec(variation=variation))
        e = lesson.effect_of(variation)
        trial_levels = [p.level for p in planned if p.role == "trial"]
        assert e.task in {t for p in planned for t in p.config.tasks} | {"delta_m"}
        for arm in (e.a, e.b):
            if arm == "baseline":
                assert any(p.role == "baseline" and p.task == e.task for p in planned), (variation, arm)
            else:  # the arm picks exactly one level: one run per seed
                picked = sum(all(lv.get(k) == v for k, v in arm.items()) for lv in trial_levels)
                assert picked == len(lesson.spec().seed_list()), (variation, arm)


@pytest.mark.parametrize("lesson", CATALOG, ids=lambda x: x.id)
def test_each_lesson_s_runs_train_a_few_steps(lesson, tmp_path):
    from mtl_core.store.store import RunStore
    from mtl_core.training.loop import Trainer

    planned = expand(lesson.spec())
    store = RunStore(tmp_path)
    picks = {p.role: p for p in planned}  # one trial, one baseline where the lesson has them
    for p in picks.values():
        cfg = dataclasses.replace(p.config, optim=dataclasses.replace(p.config.optim, steps=2, batch_size=8),
                                  data=dataclasses.replace(p.config.data, train_size=64, val_size=16, test_size=16),
                                  eval_every=2, gradstats_every=1)
        run_id = store.create_run(cfg.to_dict())
        Trainer(cfg, store, run_id).run()
        assert store.get_run(run_id)["status"] == "finished", store.get_run(run_id)


@pytest.mark.parametrize("lesson", CATALOG, ids=lambda x: x.id)
def test_every_variation_and_knob_makes_a_valid_study(lesson):
    for v in lesson.try_next:
        assert expand(lesson.spec(variation=v.id))
    for k in lesson.knobs:
        for value in (k.lo, k.hi):
            assert expand(lesson.spec({k.path: value}))


def _summary(levels: list[Level], baseline: dict[int, float] | None = None) -> StudySummary:
    return StudySummary(study={}, tasks=["segmentation"], primary={"segmentation": "miou"},
                        higher_is_better={"segmentation": True}, levels=levels, baselines={}, ranked_on="",
                        ranking=[], sentence="", progress={}, baseline_by_seed={"segmentation": baseline or {}})


def _level(label: str, level: dict, values: dict[int, float]) -> Level:
    return Level(label, level, list(values), by_seed={s: {"segmentation": v} for s, v in values.items()})


def test_the_effect_is_the_paired_difference_with_student_s_interval():
    mtl = _level("mtl", {}, {1: 0.50, 2: 0.60, 3: 0.55})
    summary = _summary([mtl], {1: 0.40, 2: 0.52, 3: 0.45})
    m = measure(summary, Effect("segmentation", {}, "baseline", 1, "seg MTL - STL"))
    # differences 0.10, 0.08, 0.10: mean 0.0933, sd 0.01155, t(0.975, 2) = 4.303
    assert m.interval.n == 3 and math.isclose(m.interval.mean, 0.09333, abs_tol=1e-4)
    assert math.isclose(m.interval.half_width, 4.3027 * 0.011547 / math.sqrt(3), rel_tol=1e-3)
    assert m.holds and "shown" in m.sentence and "+0.093" in m.sentence and "3 seeds" in m.sentence
    wrong = measure(summary, Effect("segmentation", {}, "baseline", -1, "claimed worse"))
    assert not wrong.holds and "other way round" in wrong.sentence


def test_an_effect_whose_interval_includes_zero_is_not_shown():
    a = _level("a", {"weighting.method": "uw"}, {1: 0.5, 2: 0.4, 3: 0.6})
    b = _level("b", {"weighting.method": "ew"}, {1: 0.45, 2: 0.5, 3: 0.55})
    m = measure(_summary([a, b]), Effect("segmentation", {"weighting.method": "uw"}, {"weighting.method": "ew"}, 1, "uw - ew"))
    assert not m.holds and "includes 0" in m.sentence
    one = measure(_summary([_level("a", {}, {1: 0.5})], {1: 0.4}), Effect("segmentation", {}, "baseline", 1, "x"))
    assert not one.holds and "one seed" in one.sentence
    none = measure(_summary([]), Effect("segmentation", {}, "baseline", 1, "x"))
    assert not none.holds and "no pair" in none.sentence


def _lesson_dict(**change) -> dict:
    d = json.loads(sorted(LESSONS_DIR.glob("*.json"))[0].read_text())
    d.update(change)
    return d


@pytest.mark.parametrize("change, field", [
    ({"study": {"base": {"optim": {"lr": -1}}}}, "study.base.optim.lr"),
    ({"charts": [{"kind": "pie"}]}, "charts[0]"),
    ({"effect": {"task": "segmentation", "a": {}, "b": "baseline", "sign": "up", "text": "x"}}, "effect.sign"),
    ({"paper": {}}, "paper"),
    ({"colour": "red"}, "colour"),
    ({"knobs": [{"path": "model.width", "label": "w", "min": 4, "max": 999, "step": 4}]}, "knobs.model.width"),
])
def test_a_bad_lesson_file_is_refused_naming_the_field(change, field, tmp_path):
    with pytest.raises(ConfigError) as e:
        parse(_lesson_dict(**change), str(tmp_path / "bad.json"))
    assert e.value.field == f"bad.json.{field}", e.value


def test_one_bad_file_does_not_hide_the_others(tmp_path):
    good = sorted(LESSONS_DIR.glob("*.json"))[0]
    (tmp_path / "a.json").write_text(good.read_text())
    (tmp_path / "b.json").write_text("{not json")
    found, problems = lessons(tmp_path)
    assert [x.id for x in found] == [load(good).id] and len(problems) == 1 and problems[0].field == "b.json"


# ------------------------------------------------------------------ the state in the URL
def test_the_lesson_state_round_trips_through_the_url():
    lesson = next(x for x in CATALOG if x.knobs and x.try_next)
    k = lesson.knobs[0]
    state = lesson_state.LessonState(lesson.id, lesson.try_next[0].id, {k.path: k.hi}, 5, True, "20261202-x")
    back, problems = lesson_state.read(state.params(), CATALOG)
    assert problems == [] and back == state
    fresh, problems = lesson_state.read({}, CATALOG)
    assert problems == [] and fresh == lesson_state.LessonState(CATALOG[0].id)


@pytest.mark.parametrize("params, says", [
    ({"lesson": "no_such_lesson"}, "no lesson 'no_such_lesson'"),
    ({"try": "no_such_variation"}, "variation"),
    ({"knobs": "c1.garbage"}, "damaged"),
    ({"knobs": to_link({"optim.lr": 3})}, "no such control"),
    ({"seeds": "1000"}, "seeds"),
])
def test_a_malformed_link_says_what_was_wrong_and_shows_the_default(params, says):
    lesson = next(x for x in CATALOG if x.knobs)
    state, problems = lesson_state.read({"lesson": lesson.id, **params}, CATALOG)
    assert len(problems) == 1 and says in problems[0].lower() if says[0].islower() else says in problems[0]
    assert state.lesson in {x.id for x in CATALOG} and state.variation == "" and state.knobs == {} and state.seeds is None


def test_a_knob_out_of_its_range_is_refused():
    lesson = next(x for x in CATALOG if x.knobs)
    k = lesson.knobs[0]
    state, problems = lesson_state.read({"lesson": lesson.id, "knobs": to_link({k.path: k.hi * 10})}, CATALOG)
    assert problems and "outside" in problems[0] and state.knobs == {}


def test_a_knob_changes_the_study_and_only_that():
    lesson = next(x for x in CATALOG if x.knobs)
    k = lesson.knobs[0]
    a, b = lesson.spec(), lesson.spec({k.path: k.lo})
    da, db = copy.deepcopy(a.to_dict()), copy.deepcopy(b.to_dict())
    assert da != db
    assert {kk for kk in da if da[kk] != db[kk]} == {"base"}
