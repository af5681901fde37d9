import dataclasses
import json

import pytest

from mtl_core.config import ExperimentConfig, OptimConfig
from mtl_core.errors import ConfigError
from mtl_core.training.validation import check, validate


def test_json_round_trip_keeps_every_field():
    cfg = ExperimentConfig(name="x", tasks=("classification", "depth"))
    cfg = dataclasses.replace(cfg, optim=OptimConfig(lr=0.01, steps=7), seed=3)
    again = ExperimentConfig.from_json(cfg.to_json())
    assert again == cfg


@pytest.mark.parametrize("patch, field", [
    ({"optim": {"lr": "fast"}}, "optim.lr"),
    ({"optim": {"steps": 1.5}}, "optim.steps"),
    ({"data": {"image_size": True}}, "data.image_size"),
    ({"colour": 1}, "colour"),
    ({"optim": {"learning_rate": 0.1}}, "optim.learning_rate"),
    ({"tasks": "classification"}, "tasks"),
    ({"weighting": {"weights": {"depth": "heavy"}}}, "weighting.weights.depth"),
])
def test_bad_json_names_the_field(patch, field):
    with pytest.raises(ConfigError) as e:
        ExperimentConfig.from_dict(patch)
    assert e.value.field == field
    assert field in str(e.value)


def test_unknown_key_lists_the_allowed_keys():
    with pytest.raises(ConfigError, match="allowed keys: .*batch_size"):
        ExperimentConfig.from_dict({"optim": {"batchsize": 4}})


def test_not_json_is_a_config_error():
    with pytest.raises(ConfigError, match="not valid JSON"):
        ExperimentConfig.from_json("{oops")


def _fields(cfg):
    return {e.field for e in validate(cfg)}


@pytest.mark.parametrize("change, field", [
    ({"optim": OptimConfig(lr=-1)}, "optim.lr"),
    ({"optim": OptimConfig(steps=0)}, "optim.steps"),
    ({"tasks": ()}, "tasks"),
    ({"device": "tpu"}, "device"),
    ({"optim": OptimConfig(batch_size=100_000)}, "optim.batch_size"),
])
def test_out_of_range_values_are_refused_with_the_field(change, field):
    cfg = dataclasses.replace(ExperimentConfig(), **change)
    assert field in _fields(cfg)


def test_image_size_3_is_refused_with_the_allowed_range():
    cfg = ExperimentConfig.from_dict({"data": {"image_size": 3}})
    errs = [e for e in validate(cfg) if e.field == "data.image_size"]
    assert errs and "[32, 512]" in errs[0].message


def test_all_weights_zero_is_refused():
    cfg = ExperimentConfig.from_dict({"tasks": ["classification", "segmentation"],
                                      "weighting": {"weights": {"classification": 0, "segmentation": 0}}})
    assert "weighting.weights" in _fields(cfg)


def test_unknown_task_and_method_name_the_choices():
    cfg = ExperimentConfig.from_dict({"tasks": ["telepathy"], "weighting": {"method": "magic"}})
    msgs = {e.field: e.message for e in validate(cfg)}
    assert "classification" in msgs["tasks"]
    assert "static" in msgs["weighting.method"]


def test_default_config_is_valid():
    assert validate(ExperimentConfig()) == []
    check(ExperimentConfig())


def test_check_raises_all_problems_in_one_message():
    cfg = ExperimentConfig.from_dict({"optim": {"lr": -1, "steps": 0}})
    with pytest.raises(ConfigError) as e:
        check(cfg)
    assert "optim.lr" in str(e.value) and "optim.steps" in str(e.value)


def test_config_json_is_plain_json():
    d = json.loads(ExperimentConfig().to_json())
    assert d["tasks"] == ["classification", "detection", "segmentation"]
