"""Backbones: every registered one gives features of its stated channels and stride, and asking
for ImageNet weights that are not cached offline is a clear, actionable error."""
import pytest
import torch

from mtl_core.errors import ConfigError
from mtl_core.models.backbones import BACKBONES, build_backbone, run_stages


@pytest.mark.parametrize("name", BACKBONES.available())
def test_features_have_the_stated_channels_and_stride(name):
    net = build_backbone(name, width=8)
    out = net(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, net.channels, 64 // net.stride, 64 // net.stride)


@pytest.mark.parametrize("name", [n for n in BACKBONES.available() if getattr(BACKBONES.get(n), "imagenet", "")])
def test_uncached_pretrained_weights_say_how_to_get_them(name, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # an empty cache, no network
    with pytest.raises(ConfigError) as e:
        build_backbone(name, pretrained=True)
    assert e.value.field == "model.pretrained"
    assert "not cached" in e.value.message and "pretrained to false" in e.value.message


def test_the_stride_4_small_cnn_is_the_stride_2_one_without_its_last_decoder_stage():
    fine, fast = build_backbone("small_cnn", width=8), build_backbone("small_cnn_s4", width=8)
    extra = set(fine.state_dict()) - set(fast.state_dict())
    assert extra and all(k.startswith(("lat0.", "fuse0.")) for k in extra)
    assert set(fast.state_dict()) < set(fine.state_dict())
    fast.load_state_dict({k: v for k, v in fine.state_dict().items() if k in fast.state_dict()})
    fine.eval(), fast.eval()
    x = torch.rand(1, 3, 64, 64)
    seen = []
    run_stages(fine.stages(x), lambda j, f: seen.append(f) or f)
    assert torch.allclose(fast(x), seen[3])  # the stride-2 net's stride-4 decoder stage
