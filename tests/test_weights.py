"""The task weights a person sets: one value type with one set of rules (mtl_core.weights)."""
from __future__ import annotations

import pytest

from mtl_core.config import ExperimentConfig
from mtl_core.errors import ConfigError
from mtl_core.training.validation import validate
from mtl_core.weighting import WEIGHTINGS
from mtl_core.weights import WEIGHT_MAX, TaskWeights, check_weights, weights_in_force

TASKS = ("classification", "segmentation", "depth")


def test_a_task_left_out_weighs_one_and_the_order_is_the_tasks():
    w = TaskWeights.of(TASKS, {"depth": 0.5})
    assert dict(w) == {"classification": 1.0, "segmentation": 1.0, "depth": 0.5}
    assert list(w) == list(TASKS) and w["depth"] == 0.5


@pytest.mark.parametrize("weights, field, says", [
    ({"depth": WEIGHT_MAX + 0.5}, "weighting.weights.depth", f"must be in [0, {WEIGHT_MAX:g}]"),
    ({"depth": -1}, "weighting.weights.depth", "must be in"),
    ({"depth": True}, "weighting.weights.depth", "must be in"),
    ({"detection": 1.0}, "weighting.weights.detection", "not a selected task"),
    ({t: 0.0 for t in TASKS}, "weighting.weights", "all task weights are zero"),
])
def test_bad_weights_are_refused_naming_the_field(weights, field, says):
    with pytest.raises(ConfigError) as e:
        TaskWeights.of(TASKS, weights)
    assert e.value.field == field and says in e.value.message


def test_a_change_is_merged_and_checked_by_the_same_rules():
    w = TaskWeights.of(TASKS, {"depth": 0.5})
    assert dict(w.changed({"segmentation": 3})) == {"classification": 1.0, "segmentation": 3.0, "depth": 0.5}
    with pytest.raises(ConfigError, match="must be in"):
        w.changed({"segmentation": WEIGHT_MAX * 2})
    assert w.normalised() == pytest.approx((0.4, 0.4, 0.2))
    assert TaskWeights.of(TASKS, {t: 0.0 for t in TASKS}, uses_weights="").normalised() == pytest.approx((1 / 3,) * 3)


def test_config_validation_and_a_retune_use_the_same_range():
    over = {"depth": WEIGHT_MAX + 0.5}
    cfg = ExperimentConfig.from_dict({"tasks": list(TASKS), "weighting": {"method": "static", "weights": over}})
    assert [e.field for e in validate(cfg)] == ["weighting.weights.depth"]
    with pytest.raises(ConfigError, match="must be in"):
        check_weights(TASKS, over, WEIGHTINGS.get("static"))
    assert dict(check_weights(TASKS, {"depth": WEIGHT_MAX}, WEIGHTINGS.get("static")))["depth"] == WEIGHT_MAX


def test_a_method_that_sets_its_own_weights_refuses_a_persons():
    own = next(n for n in WEIGHTINGS.available() if not WEIGHTINGS.get(n).uses_weights)
    with pytest.raises(ConfigError, match="does not use task weights"):
        check_weights(TASKS, {"depth": 2.0}, WEIGHTINGS.get(own))


def test_the_weights_in_force_are_the_config_then_each_applied_change():
    config = {"tasks": list(TASKS), "weighting": {"weights": {"depth": 0.5}}}
    assert weights_in_force(config) == {"classification": 1.0, "segmentation": 1.0, "depth": 0.5}
    events = [{"step": 10, "payload": {"old": {}, "new": {"classification": 1.0, "segmentation": 2.0, "depth": 0.5}}},
              {"step": 30, "payload": {"old": {}, "new": {"classification": 1.0, "segmentation": 2.0, "depth": 4.0}}}]
    assert weights_in_force(config, events) == {"classification": 1.0, "segmentation": 2.0, "depth": 4.0}
    assert weights_in_force(config, events[:1])["depth"] == 0.5
