"""Backbones: every registered one gives features of its stated channels and stride, and asking
for ImageNet weights that are not cached offline is a clear, actionable error."""
import pytest
import torch

from mtl_core.errors import ConfigError
from mtl_core.models.backbones import BACKBONES, build_backbone


@pytest.mark.parametrize("name", BACKBONES.available())
def test_features_have_the_stated_channels_and_stride(name):
    net = build_backbone(name, width=8)
    out = net(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, net.channels, 64 // net.stride, 64 // net.stride)


@pytest.mark.parametrize("name", [n for n in BACKBONES.available() if n != "small_cnn"])
def test_uncached_pretrained_weights_say_how_to_get_them(name, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # an empty cache, no network
    with pytest.raises(ConfigError) as e:
        build_backbone(name, pretrained=True)
    assert e.value.field == "model.pretrained"
    assert "not cached" in e.value.message and "pretrained to false" in e.value.message
