"""A study's spec: its expansion into planned runs (grid x seeds, then baselines), ranges, random
subsets, and the refusals a person sees before anything runs."""
from __future__ import annotations

import dataclasses
import itertools
import json

import pytest

from mtl_core.config import AugmentConfig, ExperimentConfig
from mtl_core.errors import ConfigError
from mtl_core.studies.spec import Planned, StudySpec, expand, factor_levels, plan_key
from mtl_core.training.validation import validate

ISSUE_EXAMPLE = {"name": "fusion on scenes",
                 "base": {"tasks": ["classification", "segmentation"], "optim": {"steps": 300}},
                 "factors": {"weighting.method": ["ew", "pcgrad"], "weighting.weights.segmentation": [0.3, 1, 3]},
                 "seeds": 3, "baselines": True}


def spec(factors: dict, **kw) -> StudySpec:
    d = {"name": "s", "base": {"tasks": ["classification", "segmentation"]}, "factors": factors, "seeds": 2, **kw}
    return StudySpec.from_dict(d)


def refusal(factors: dict, **kw) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        expand(spec(factors, **kw))
    return e.value


def test_the_issue_example_expands_into_18_trials_then_6_baselines():
    planned = expand(StudySpec.from_dict(ISSUE_EXAMPLE))
    trials = [p for p in planned if p.role == "trial"]
    baselines = [p for p in planned if p.role == "baseline"]
    assert len(planned) == 24 and planned[:18] == trials  # trials first
    grid = list(itertools.product(["ew", "pcgrad"], [0.3, 1.0, 3.0], [1, 2, 3]))  # grid order, then seed
    assert [(p.config.weighting.method, p.config.weighting.weights["segmentation"], p.config.seed) for p in trials] == grid
    for p in trials:
        assert p.level == {"weighting.method": p.config.weighting.method,
                           "weighting.weights.segmentation": p.config.weighting.weights["segmentation"]}
        assert p.seed == p.config.seed and p.config.tasks == ("classification", "segmentation")
        assert p.config.optim.steps == 300 and p.config.optim.lr == ExperimentConfig().optim.lr  # merged over defaults
        assert validate(p.config) == [] and p.key == plan_key(p.config)
    assert trials[4].label == "weighting.method=ew, weighting.weights.segmentation=1"
    assert trials[4].config.name == "fusion on scenes · weighting.method=ew, weighting.weights.segmentation=1 · seed 2"
    assert [(p.task, p.seed) for p in baselines] == [(t, s) for t in ("classification", "segmentation") for s in (1, 2, 3)]
    for p in baselines:
        assert p.config.tasks == (p.task,) and p.level == {} and p.config.baseline_of == ""
        assert p.config.weighting.method == "static" and p.config.model.architecture == "hard_sharing"
        assert p.config.optim.steps == 300 and validate(p.config) == []
    assert baselines[1].label == "baseline: classification"
    assert baselines[4].config.name == "fusion on scenes · segmentation alone · seed 2"
    assert len({p.key for p in planned}) == 24


def test_a_spec_survives_a_json_round_trip_and_expands_the_same():
    s = StudySpec.from_dict({**ISSUE_EXAMPLE, "seeds": [1, 5], "sample": 3, "sample_seed": 7, "max_runs": 50})
    again = StudySpec.from_json(s.to_json())
    assert again == s and again.seeds == (1, 5) and json.loads(s.to_json())["seeds"] == [1, 5]
    assert [p.key for p in expand(again)] == [p.key for p in expand(s)]
    assert StudySpec.from_json(StudySpec().to_json()) == StudySpec()
    s.to_dict()["base"]["tasks"].append("depth")  # a copy: the spec itself does not change
    assert s.base["tasks"] == ["classification", "segmentation"]


def test_the_same_config_gives_the_same_key_whatever_its_name():
    a = ExperimentConfig(name="one", baseline_of="run1")
    assert plan_key(a) == plan_key(ExperimentConfig(name="two")) == plan_key(ExperimentConfig.from_json(a.to_json()))
    assert plan_key(dataclasses.replace(a, weighting=dataclasses.replace(a.weighting, weights={"x": 1, "y": 2}))) == \
        plan_key(dataclasses.replace(a, weighting=dataclasses.replace(a.weighting, weights={"y": 2.0, "x": 1.0})))


def _leaves(d: dict, prefix: str = ""):
    for k, v in d.items():
        if isinstance(v, dict) and k not in ("weights", "params"):
            yield from _leaves(v, f"{prefix}{k}.")
        else:
            yield prefix + k, v


def _changed(v):
    if isinstance(v, bool):
        return not v
    if isinstance(v, (int, float)):
        return v * 2 + 1
    if isinstance(v, str):
        return v + "x"
    if isinstance(v, list):
        return [*v, "depth"]
    return {**v, "depth": 0.5}


@pytest.mark.parametrize("path", [p for p, _ in _leaves(ExperimentConfig().to_dict()) if p not in ("name", "baseline_of")])
def test_any_other_field_that_differs_gives_another_key(path):
    d = ExperimentConfig().to_dict()
    *parents, last = path.split(".")
    node = d
    for p in parents:
        node = node[p]
    node[last] = _changed(node[last])
    assert plan_key(ExperimentConfig.from_dict(d)) != plan_key(ExperimentConfig())


def test_a_log_range_spaces_levels_evenly_on_a_log_scale_ends_included():
    levels = factor_levels(spec({"weighting.weights.segmentation": {"log": [0.1, 10], "n": 3},
                                 "optim.lr": {"linear": [0.001, 0.003], "n": 3}}))
    assert levels["weighting.weights.segmentation"] == pytest.approx([0.1, 1, 10])
    assert levels["optim.lr"] == pytest.approx([0.001, 0.002, 0.003])
    trials = expand(spec({"weighting.weights.segmentation": {"log": [0.1, 10], "n": 5}}, seeds=1))
    assert [p.config.weighting.weights["segmentation"] for p in trials] == pytest.approx([0.1, 0.316228, 1, 3.16228, 10], rel=1e-5)


def test_an_integer_field_gets_integers_rounded_and_deduplicated():
    levels = factor_levels(spec({"model.width": {"log": [8, 64], "n": 4}, "data.image_size": {"linear": [32, 34], "n": 5}}))
    assert levels == {"model.width": [8, 16, 32, 64], "data.image_size": [32, 33, 34]}
    assert all(type(v) is int for v in levels["model.width"] + levels["data.image_size"])


def test_sample_picks_distinct_grid_points_the_same_for_the_same_sample_seed():
    factors = {"weighting.method": ["ew", "pcgrad", "uw"], "weighting.weights.segmentation": [0.3, 1, 3], "model.width": [8, 16]}
    full = [p.level for p in expand(spec(factors, seeds=1))]
    assert len(full) == 18

    def picked(sample_seed):
        planned = expand(spec(factors, sample=4, sample_seed=sample_seed))
        assert [p.seed for p in planned] == [1, 2] * 4  # each picked point x each seed
        return [p.level for p in planned[::2]]

    first = picked(0)
    assert len({json.dumps(lv, sort_keys=True) for lv in first}) == 4
    assert all(lv in full for lv in first) and sorted(first, key=full.index) == first  # kept in grid order
    assert picked(0) == first
    assert any(picked(s) != first for s in (1, 2, 3))


def test_a_width_factor_gives_one_baseline_per_width_a_method_factor_does_not_multiply_them():
    planned = expand(spec({"weighting.method": ["ew", "pcgrad", "uw"], "model.width": [8, 16]}, baselines=True))
    trials = [p for p in planned if p.role == "trial"]
    baselines = [p for p in planned if p.role == "baseline"]
    assert len(trials) == 3 * 2 * 2
    assert sorted((p.task, p.config.model.width, p.seed) for p in baselines) == \
        sorted(itertools.product(["classification", "segmentation"], [8, 16], [1, 2]))
    assert baselines[0].config.name == "s · classification alone · model.width=8 · seed 1"
    by_key = {p.key: p for p in baselines}
    for t in trials:  # every trial finds its own baselines: same width, same seed
        for b in t.config.single_task_baselines(""):
            assert by_key[plan_key(b)].config.model.width == t.config.model.width
            assert by_key[plan_key(b)].seed == t.seed
    only_methods = expand(spec({"weighting.method": ["ew", "pcgrad", "uw"]}, baselines=True))
    assert sum(p.role == "baseline" for p in only_methods) == 2 * 2


def test_a_tasks_factor_trains_each_subset_and_baselines_every_task_once():
    planned = expand(spec({"tasks": [["classification", "segmentation"], ["classification", "depth"]]},
                          base={"tasks": ["classification", "segmentation"], "weighting": {"weights": {"segmentation": 2}}},
                          baselines=True, seeds=1))
    assert [p.config.tasks for p in planned if p.role == "trial"] == [("classification", "segmentation"), ("classification", "depth")]
    assert planned[1].config.weighting.weights == {}  # the base's weight of a task the subset does not train is dropped
    assert planned[0].label == "tasks=classification+segmentation"
    assert [p.task for p in planned if p.role == "baseline"] == ["classification", "segmentation", "depth"]


def test_augment_on_is_the_bases_augmentation_or_the_defaults_and_off_turns_every_transform_off():
    from mtl_core.data.augment import is_identity

    on, off = expand(spec({"augment": [True, False]}, seeds=1))
    assert on.config.augment == AugmentConfig() and is_identity(off.config.augment) and (on.label, off.label) == ("augment=on", "augment=off")
    mine = {"rotation": 15.0, "hflip": 0.0}
    on, off = expand(spec({"augment": [True, False]}, base={"tasks": ["classification"], "augment": mine}, seeds=1))
    assert on.config.augment == AugmentConfig(rotation=15.0, hflip=0.0) and is_identity(off.config.augment)
    on, _ = expand(spec({"augment": [True, False]}, base={"augment": {"hflip": 0.0}}, seeds=1))
    assert on.config.augment == AugmentConfig()  # the base had nothing on: the defaults


def test_a_study_without_factors_is_the_base_over_the_seeds():
    planned = expand(StudySpec(name="just seeds", base={"tasks": ["depth"]}, seeds=(4, 9)))
    assert [(p.seed, p.label, p.config.name) for p in planned] == [(4, "base config", "just seeds · seed 4"),
                                                                   (9, "base config", "just seeds · seed 9")]


@pytest.mark.parametrize("factors, field, words", [
    ({"model.widht": [8]}, "factors.model.widht", ["model.widht is not a config field; did you mean model.width?"]),
    ({"weighting.method": ["ew", "nope"]}, "factors.weighting.method",
     ["level 'nope' is refused: weighting.method: 'nope' is not allowed; choose one of: ", "pcgrad"]),
    ({"weighting.method": []}, "factors.weighting.method", ["no levels"]),
    ({"seed": [1, 2]}, "factors.seed", ['use "seeds"']),
    ({"model": [8]}, "factors.model", ["a section of the config", "model.architecture"]),
    ({"weighting.weights.segmentation": {"log": [0, 10], "n": 3}}, "factors.weighting.weights.segmentation",
     ['{"log": [0, 10], "n": 3}', "a log range needs lo > 0"]),
    ({"weighting.weights.segmentation": {"log": [0.1, 10], "n": 1}}, "factors.weighting.weights.segmentation",
     ['{"log": [0.1, 10], "n": 1}', "n must be an integer from 2"]),
    ({"weighting.weights.segmentation": {"linear": [3, 1], "n": 3}}, "factors.weighting.weights.segmentation",
     ["needs lo < hi, got [3, 1]"]),
    ({"optim.lr": {"lin": [0.1, 1], "n": 3}}, "factors.optim.lr", ['{"lin": [0.1, 1], "n": 3}', '{"log": [lo, hi], "n": k}']),
    ({"model.architecture": {"linear": [1, 2], "n": 2}}, "factors.model.architecture", ["a range needs a numeric factor"]),
    ({"weighting.weights.segmentation": [-1, 1]}, "factors.weighting.weights.segmentation",
     ["level -1 is refused: weighting.weights.segmentation: must be in [0, 10], got -1", "data.loss_scale"]),
    ({"optim.lr": ["fast"]}, "factors.optim.lr", ["level 'fast' is refused: optim.lr: expected a number"]),
    ({"model.width": [8, 2]}, "factors.model.width", ["level 2 is refused: model.width: must be in [4, 256], got 2"]),
    ({"weighting.weights.depth": [1, 2]}, "factors.weighting.weights.depth",
     ["'depth' is not a trained task", "classification, segmentation", "base.tasks"]),
    ({"tasks": [["classification"], ["depth", "segmentation"]], "weighting.weights.depth": [1, 2]},
     "factors.weighting.weights.depth", ["'depth' is not in every level of the tasks factor", "['classification']"]),
    ({"weighting.method": ["ew", "pcgrad", "ew"]}, "factors.weighting.method", ["level 'ew' is listed twice"]),
    ({"tasks": [["classification", "depth"], ["nope"]]}, "factors.tasks", ["level ['nope'] is refused", "unknown task 'nope'"]),
    ({"augment": ["yes"]}, "factors.augment", ["level 'yes' is refused", "true", "false"]),
    ({"weighting.method": ["cagrad", "pcgrad"], "weighting.params.cc": [0.2]}, "factors.weighting.params.cc",
     ["'cc' is not a hyperparameter of cagrad, pcgrad", "did you mean c?"]),
    ({"weighting.method": ["cagrad", "pcgrad"], "weighting.params.c": [0.2, 0.5]}, "factors.weighting.params.c",
     ["level 0.2 is refused with weighting.method=pcgrad: weighting.params.c: pcgrad has no such parameter"]),
    ({"weighting.weights.classification": [0, 1], "weighting.weights.segmentation": [0, 1]}, "factors",
     ["the grid point weighting.weights.classification=0, weighting.weights.segmentation=0 is refused",
      "all task weights are zero"]),
    ({"data.dataset": ["scenes", "nope"], "optim.lr": [0.01]}, "factors.data.dataset", ["level 'nope' is refused"]),
])
def test_a_bad_factor_or_level_is_refused_naming_both(factors, field, words):
    e = refusal(factors)
    assert e.field == field
    for w in words:
        assert w in e.message, e.message


def test_a_grid_larger_than_the_limit_is_refused_with_its_size_and_how_to_shrink_it():
    factors = {"model.width": [8, 16, 32], "optim.lr": [0.001, 0.002, 0.004, 0.008], "weighting.method": ["ew", "pcgrad", "uw", "dwa", "rlw"]}
    e = refusal(factors, seeds=5, base={"tasks": ["classification", "segmentation"]}, baselines=True)
    assert e.field == "max_runs"
    assert e.message.startswith("this study has 3 x 4 x 5 = 60 grid points x 5 seeds + 120 baselines = 420 runs, "
                                "more than the limit of 200; drop a factor's level, use fewer seeds, or sample=k a "
                                "random subset of the grid")
    assert "sampled" not in e.message
    ok = expand(spec(factors, seeds=5, sample=20, baselines=False))  # 20 x 5 = 100 runs: allowed
    assert len(ok) == 100
    e = refusal(factors, seeds=5, sample=20, max_runs=99)
    assert "20 sampled of 3 x 4 x 5 = 60 grid points x 5 seeds = 100 runs, more than the limit of 99" in e.message
    huge = refusal({"model.width": list(range(4, 257)), "optim.lr": {"log": [1e-4, 1], "n": 1000}}, baselines=True)
    assert huge.field == "max_runs" and "253 x 1000 = 253000 grid points x 2 seeds (before baselines)" in huge.message


@pytest.mark.parametrize("d, field, words", [
    ({"seedz": 3}, "seedz", ["unknown key", "did you mean seeds?"]),
    ({"seeds": "three"}, "seeds", ["expected an integer"]),
    ({"seeds": 0}, "seeds", ["0 seeds", "between 1 and"]),
    ({"seeds": [1, 1]}, "seeds", ["listed twice"]),
    ({"baselines": "yes"}, "baselines", ["true, false or a list of task names"]),
    ({"factors": {"optim.lr": 0.1}}, "factors.optim.lr", ["a list of levels or a range"]),
    ({"base": {"optim": {"lrr": 1}}}, "base.optim.lrr", ["unknown key"]),
    ({"base": {"optim": {"steps": "many"}}}, "base.optim.steps", ["expected an integer"]),
])
def test_a_malformed_spec_is_refused_naming_the_key(d, field, words):
    with pytest.raises(ConfigError) as e:
        StudySpec.from_dict({**ISSUE_EXAMPLE, **d})
    assert e.value.field == field
    for w in words:
        assert w in e.value.message, e.value.message


def test_a_base_the_config_refuses_is_named_as_the_base():
    e = refusal({"weighting.method": ["ew", "pcgrad"]}, base={"optim": {"lr": -1}})
    assert e.field == "base.optim.lr" and "must be in (0, 10], got -1" in e.message
    assert "not valid JSON" in pytest.raises(ConfigError, StudySpec.from_json, "{").value.message


def test_planned_runs_are_frozen_records():
    p = expand(spec({}, seeds=1))[0]
    assert isinstance(p, Planned)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.seed = 3


def test_a_task_s_label_fraction_is_a_factor_and_its_baseline_keeps_it():
    planned = expand(spec({"data.label_fraction.segmentation": [0.05, 1.0]}, baselines=["segmentation"]))
    trials = [p for p in planned if p.role == "trial"]
    assert [p.config.data.label_fraction.get("segmentation", 1.0) for p in trials] == [0.05, 0.05, 1.0, 1.0]
    assert [p.level for p in trials][0] == {"data.label_fraction.segmentation": 0.05}
    baselines = [p for p in planned if p.role == "baseline"]
    # only segmentation's baselines, one per fraction and seed, each with its own fraction
    assert {p.task for p in baselines} == {"segmentation"} and len(baselines) == 4
    assert sorted(p.config.data.label_fraction.get("segmentation", 1.0) for p in baselines) == [0.05, 0.05, 1.0, 1.0]


@pytest.mark.parametrize("factors, field, says", [
    ({"data.label_fraction.depth": [0.5]}, "factors.data.label_fraction.depth", "not a trained task"),
    ({"data.label_fraction": [0.5]}, "factors.data.label_fraction", "name one task's entry"),
    ({"data.loss_scale.segmentation": [0.0]}, "factors.data.loss_scale.segmentation", "must be in"),
])
def test_a_bad_task_entry_factor_is_refused_naming_it(factors, field, says):
    e = refusal(factors)
    assert e.field.startswith(field) and says in str(e), e


def test_baselines_for_some_tasks_only():
    planned = expand(spec({"weighting.method": ["ew"]}, baselines=["classification"]))
    assert [p.task for p in planned if p.role == "baseline"] == ["classification", "classification"]
    with pytest.raises(ConfigError, match="unknown task 'segmentaton'; .*did you mean segmentation"):
        spec({"weighting.method": ["ew"]}, baselines=["segmentaton"])
    with pytest.raises(ConfigError, match="none of depth is a task the study trains"):
        spec({"weighting.method": ["ew"]}, baselines=["depth"])
    assert StudySpec.from_dict(spec({}, baselines=["classification"]).to_dict()).baselines == ("classification",)


def test_an_image_size_factor_takes_height_x_width_levels():
    s = StudySpec.from_dict({"name": "sizes", "base": {"tasks": ["classification"]}, "seeds": 1,
                             "factors": {"data.image_size": ["48x64", [32, 48], 64]}})
    planned = expand(s)
    assert [p.config.data.image_size for p in planned] == [(48, 64), (32, 48), 64]
    assert [p.label for p in planned] == ["data.image_size=48x64", "data.image_size=32x48", "data.image_size=64"]
    with pytest.raises(ConfigError, match="listed twice"):
        expand(StudySpec.from_dict({"name": "twice", "base": {"tasks": ["classification"]}, "seeds": 1,
                                    "factors": {"data.image_size": ["48x64", [48, 64]]}}))
