"""A config in a URL: compact, every field round-trips, and a damaged or invalid link is refused
with a message that names what is wrong."""
from __future__ import annotations

import base64
import dataclasses
import json
import zlib

import pytest

from mtl_core.config import LINK_PREFIX, ExperimentConfig, changes, from_link, to_link
from mtl_core.errors import ConfigError
from mtl_core.studies.factors import config_fields
from mtl_core.training.validation import checked_link

TASKS = ("classification", "segmentation", "depth")


def _other(path: str, tp: type, value):
    """A value for one field that differs from its default."""
    if tp is bool:
        return not value
    if tp is int:
        return value + 1
    if tp is float:
        return value + 0.25 if value < 0.5 else value / 2
    if tp is str:
        return {"data.dataset": "cifar10", "model.architecture": "mtan", "model.backbone": "resnet18",
                "model.norm": "group", "weighting.method": "uw", "optim.optimizer": "sgd", "optim.scheduler": "constant",
                "device": "cpu", "precision": "fp32"}.get(path, "x" if not value else value + "x")
    if path == "tasks":
        return list(TASKS)
    if path == "data.image_size":
        return [48, 80]
    return {"task_specs": {"segmentation": {"kind": "segmentation", "classes": ["road", "car"], "options": {"ignore_index": 0}}},
            "weighting.weights": {"segmentation": 2.5}, "weighting.params": {"alpha": 0.3},
            "data.label_fraction": {"segmentation": 0.05}, "data.label_noise": {"classification": 1.0},
            "data.loss_scale": {"depth": 100.0}, "select.reference": {"segmentation": 0.383}}[path]



@pytest.mark.parametrize("path", sorted(config_fields(ExperimentConfig)))
def test_every_field_survives_the_round_trip(path):
    d = ExperimentConfig().to_dict()
    node = d
    *parents, last = path.split(".")
    for p in parents:
        node = node[p]
    node[last] = _other(path, config_fields(ExperimentConfig)[path], node[last])
    cfg = ExperimentConfig.from_dict(d)
    token = to_link(changes(cfg.to_dict(), ExperimentConfig().to_dict()))
    assert token == cfg.to_link()
    back = from_link(token)
    merged = ExperimentConfig().to_dict()
    for k, v in back.items():
        merged[k] = {**merged[k], **v} if isinstance(v, dict) and isinstance(merged[k], dict) else v
    assert ExperimentConfig.from_dict(merged) == cfg


def test_a_valid_link_gives_the_same_config_and_is_short():
    cfg = ExperimentConfig.from_dict({"tasks": ["classification", "segmentation"], "model": {"width": 8},
                                      "data": {"label_fraction": {"segmentation": 0.05}},
                                      "weighting": {"method": "pcgrad"}, "optim": {"steps": 600}})
    token = cfg.to_link()
    assert token.startswith(LINK_PREFIX) and len(token) < 200
    assert all(ch.isalnum() or ch in "-_." for ch in token)  # URL-safe as it is
    assert ExperimentConfig.from_link(token) == cfg
    assert ExperimentConfig.from_link(ExperimentConfig().to_link()) == ExperimentConfig()


@pytest.mark.parametrize("token, says", [
    ("", "not a link made by MTL Studio"),
    ("hello", "not a link made by MTL Studio"),
    (LINK_PREFIX + "%%%", "damaged"),
    (LINK_PREFIX + "eNqrrg", "damaged"),  # cut short
    (LINK_PREFIX + "A" * 9000, "too long"),
])
def test_a_damaged_link_is_refused_with_what_to_do(token, says):
    with pytest.raises(ConfigError) as e:
        ExperimentConfig.from_link(token)
    assert says in str(e.value) and e.value.field == "link"


def _pack(obj) -> str:
    return LINK_PREFIX + base64.urlsafe_b64encode(zlib.compress(json.dumps(obj).encode())).decode().rstrip("=")


def test_a_link_that_parses_but_does_not_validate_names_the_field():
    with pytest.raises(ConfigError) as e:
        checked_link(_pack({"optim": {"lr": -1}}))
    assert e.value.field == "link: optim.lr"
    assert ExperimentConfig.from_link(_pack({"optim": {"lr": -1}})).optim.lr == -1  # parsed; checking is validation's
    with pytest.raises(ConfigError) as e:
        ExperimentConfig.from_link(_pack({"optim": {"learning_rate": 0.1}}))
    assert e.value.field == "link: optim.learning_rate" and "unknown key" in str(e.value)
    with pytest.raises(ConfigError) as e:
        ExperimentConfig.from_link(_pack([1, 2]))
    assert "not a config" in str(e.value)


def test_a_zip_bomb_is_refused():
    bomb = LINK_PREFIX + base64.urlsafe_b64encode(zlib.compress(b'{"name": "' + b"a" * 5_000_000 + b'"}', 9)).decode()
    assert len(bomb) < 8000
    with pytest.raises(ConfigError, match="damaged"):
        ExperimentConfig.from_link(bomb)


def test_changes_keeps_only_what_differs():
    cfg = dataclasses.replace(ExperimentConfig(), seed=3)
    assert changes(cfg.to_dict(), ExperimentConfig().to_dict()) == {"seed": 3}
