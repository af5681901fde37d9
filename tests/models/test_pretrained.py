"""Starting weights (``models/pretrained.py``): a file the user names loads exactly, wherever its
backbone's tensors sit in it; one for another network, or no file at all, is a ConfigError that
names the path, what does not fit and what file to get; ``pretrained`` without a cached file says
how to get it; nothing is ever downloaded."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from torchvision.models import resnet18, resnet50

from mtl_core.config import ExperimentConfig, ModelConfig
from mtl_core.errors import ConfigError
from mtl_core.isolation import seeded_global_rng
from mtl_core.models import build_model
from mtl_core.models.backbones import build_backbone
from mtl_core.training.validation import validate


class Pooled:
    """A task whose head only pools: the backbone is what these tests are about."""

    def head(self, channels: int, stride: int = 1) -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(channels, 2))


@pytest.fixture(scope="module")
def resnet50_file(tmp_path_factory):
    """torchvision's ResNet-50 state dict with random weights, as ``resnet50-0676ba61.pth`` is laid out."""
    with seeded_global_rng(1):
        state = resnet50().state_dict()
    path = tmp_path_factory.mktemp("weights") / "resnet50-random.pth"
    torch.save(state, path)
    return path, state


def test_a_torchvision_resnet50_file_starts_resnet50_dilated_with_its_tensors(resnet50_file, tmp_path, monkeypatch):
    path, state = resnet50_file
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache: the file wins over pretrained
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    cfg = ModelConfig(backbone="resnet50_dilated", pretrained=True, weights_path=str(path))
    model = build_model({"a": Pooled(), "b": Pooled()}, cfg)
    got = model.backbone.state_dict()
    for key in ("conv1.weight", "layer3.5.conv2.weight", "layer4.2.conv3.weight", "layer4.2.bn3.running_var"):
        assert torch.equal(got[key], state[key]), key
    assert "fc.weight" not in got  # the classifier is not part of the backbone
    assert model.backbone.layer4[0].conv2.dilation == (2, 2)  # still dilated: the file holds weights, not strides


def test_the_backbones_tensors_load_from_under_a_prefix_and_a_wrapper(resnet50_file, tmp_path):
    _, state = resnet50_file
    wrapped = tmp_path / "deeplab.pt"  # e.g. a segmentation model's checkpoint: {"model": {"backbone.conv1.weight": ...}}
    torch.save({"model": {**{f"backbone.{k}": v for k, v in state.items() if not k.startswith("fc.")},
                          "classifier.weight": torch.zeros(3, 2048)}, "epoch": 7}, wrapped)
    net = build_backbone("resnet50_dilated", weights_path=str(wrapped))
    assert torch.equal(net.layer2[1].conv1.weight, state["layer2.1.conv1.weight"])


def test_an_earlier_runs_checkpoint_starts_the_same_backbone(tmp_path):
    with seeded_global_rng(3):
        trained = build_model({"a": Pooled()}, ModelConfig(backbone="segnet", width=8))
    path = tmp_path / "final.pt"
    torch.save({"format": 1, "model": trained.state_dict()}, path)  # what a run's checkpoint holds
    model = build_model({"a": Pooled()}, ModelConfig(backbone="segnet", width=8, weights_path=str(path)))
    for k, v in trained.backbone.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[k], v), k
    with pytest.raises(ConfigError) as e:  # the same file for a wider SegNet: the shapes say so
        build_model({"a": Pooled()}, ModelConfig(backbone="segnet", width=16, weights_path=str(path)))
    assert e.value.field == "model.weights_path" and str(path) in e.value.message
    assert "(8, 3, 3, 3) in the file but (16, 3, 3, 3) here" in e.value.message and "model.width" in e.value.message


def test_a_resnet18_file_given_to_resnet50_names_the_shapes_that_differ(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(resnet18().state_dict(), path)
    with pytest.raises(ConfigError) as e:
        build_backbone("resnet50_dilated", weights_path=str(path))
    msg = e.value.message
    assert e.value.field == "model.weights_path" and str(path) in msg and "resnet50_dilated" in msg
    assert "layer1.0.conv1.weight is (64, 64, 3, 3) in the file but (64, 64, 1, 1) here" in msg
    assert "missing, e.g. layer1.0.conv3.weight" in msg
    assert "resnet50-0676ba61.pth" in msg  # what was expected, and where to get it


def test_a_deeper_networks_file_is_refused_not_cut_short(resnet50_file, tmp_path):
    """ResNet-101's file holds every ResNet-50 tensor with its shape (and 17 more blocks in layer3):
    taking the first six blocks of its layer3 would be a silent mistake."""
    _, state = resnet50_file
    deeper = {**state, "layer3.6.conv1.weight": torch.zeros(256, 1024, 1, 1)}
    path = tmp_path / "resnet101ish.pth"
    torch.save(deeper, path)
    with pytest.raises(ConfigError, match=r"tensors this network lacks, e\.g\. layer3\.6\.conv1\.weight"):
        build_backbone("resnet50_dilated", weights_path=str(path))


@pytest.mark.parametrize("content", ["not a file", "no tensors"])
def test_a_file_that_is_not_a_state_dict_says_so(tmp_path, content):
    path = tmp_path / "weights.pth"
    if content == "not a file":
        path.write_text("<html>404</html>")
    else:
        torch.save({"epoch": 3}, path)
    with pytest.raises(ConfigError) as e:
        build_backbone("resnet18", weights_path=str(path))
    assert e.value.field == "model.weights_path" and str(path) in e.value.message
    assert "resnet18-f37072fd.pth" in e.value.message


def test_a_missing_file_names_the_path_at_validation_and_at_build(tmp_path):
    path = tmp_path / "resnet50-0676ba61.pth"
    cfg = ExperimentConfig(model=ModelConfig(backbone="resnet50_dilated", weights_path=str(path)))
    errors = [e for e in validate(cfg) if e.field == "model.weights_path"]
    assert len(errors) == 1 and f"{path} does not exist" in errors[0].message
    assert "https://download.pytorch.org/models/resnet50-0676ba61.pth" in errors[0].message
    with pytest.raises(ConfigError) as e:
        build_model({"a": Pooled()}, cfg.model)
    assert e.value.message == errors[0].message
    # segnet_mtan's file is for its SegNet, whatever model.backbone says
    seg = dataclasses.replace(cfg, model=ModelConfig(architecture="segnet_mtan", weights_path=str(path)))
    [err] = [e for e in validate(seg) if e.field == "model.weights_path"]
    assert "segnet backbone" in err.message and "download.pytorch.org" not in err.message


def test_pretrained_without_a_cached_file_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # torch.hub.get_dir() -> $TORCH_HOME/hub, empty
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # in case something set the hub dir process-wide
    with pytest.raises(ConfigError) as e:
        build_model({"a": Pooled()}, ModelConfig(backbone="resnet50_dilated", pretrained=True))
    assert e.value.field == "model.pretrained"
    assert str(tmp_path / "hub" / "checkpoints" / "resnet50-0676ba61.pth") in e.value.message
    assert "pretrained to false" in e.value.message


def test_the_new_model_fields_round_trip_and_are_checked():
    cfg = ExperimentConfig(model=ModelConfig(head="aspp", weights_path="/w/resnet50.pth"))
    assert ExperimentConfig.from_json(cfg.to_json()) == cfg
    assert ExperimentConfig.from_dict({"model": {"backbone": "resnet18"}}).model.head == ""  # old configs read unchanged
    bad = {e.field: e.message for e in validate(dataclasses.replace(cfg, model=ModelConfig(head="deeplab")))}
    assert "model.head" in bad and "aspp" in bad["model.head"]
