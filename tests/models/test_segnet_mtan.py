"""SegNet and SegNet-MTAN (Liu, Johns and Davison, CVPR 2019): the paper's network at width 64
(parameter for parameter), SegNet alone as the single-task baseline at stride 1, each task's
attention its own, ``shared_parameters()`` exactly what every task's loss reaches, and the tools
(attention maps, per-task importance, channel pruning, TorchScript) working on it."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from mtl_core.config import DataConfig, ModelConfig
from mtl_core.data import build_dataset
from mtl_core.errors import ConfigError
from mtl_core.isolation import seeded_global_rng
from mtl_core.models import build_model
from mtl_core.models.backbones import build_backbone, run_stages
from mtl_core.models.segnet import filters
from mtl_core.tasks import build_task

TASKS = ("segmentation", "depth", "classification")
HW = (32, 48)  # 48 is not a multiple of 32: MTAN's own code needs one, ours does not
pytestmark = pytest.mark.usefixtures("one_thread")  # many small ops: see tests/conftest.py


@pytest.fixture(scope="module")
def tasks() -> dict:
    info = build_dataset(DataConfig(image_size=HW, train_size=4, val_size=4, test_size=4), "val", 0).info
    return {t: build_task(t, info) for t in TASKS}


def model(tasks, arch: str = "segnet_mtan", **kw):
    with seeded_global_rng(0):
        return build_model(tasks, ModelConfig(architecture=arch, width=4, **kw)).eval()


def images(n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, *HW, generator=torch.Generator().manual_seed(seed))


class Bare:
    def head(self, channels: int, stride: int = 1) -> nn.Module:
        return nn.Conv2d(channels, 1, 1)


def test_width_64_is_the_papers_network_parameter_for_parameter():
    """MTAN's code: its single-task SegNet has 24,981,069 parameters with its 13-class prediction
    layer (3x3 then 1x1 convolution: 37,773); its SegNet-MTAN for three tasks 44,117,184 without
    its three prediction layers and its uncertainty weights."""
    assert filters(64) == [64, 128, 256, 512, 512] and filters(16) == [16, 32, 64, 128, 128]
    segnet = build_backbone("segnet", width=64)
    assert sum(p.numel() for p in segnet.parameters()) == 24_981_069 - 37_773
    cfg = SimpleNamespace(width=64, pretrained=False, weights_path="", head="")
    with seeded_global_rng(0):
        mtan = build_model({t: Bare() for t in "abc"}, SimpleNamespace(architecture="segnet_mtan", **vars(cfg)))
    heads = sum(p.numel() for p in mtan.heads.parameters())
    assert sum(p.numel() for p in mtan.parameters()) - heads == 44_117_184
    assert mtan.backbone.channels == 64 and mtan.backbone.stride == 1


def test_segnet_has_ten_stages_down_to_stride_32_and_back():
    net = build_backbone("segnet", width=4).eval()
    seen = []
    out = run_stages(net.stages(images()), lambda j, f: seen.append(f) or f)
    f = filters(4)
    encoder = [(f[j], 2 ** j) for j in range(5)]  # (channels, stride) before each pooling
    decoder = [(f[3], 16), (f[2], 8), (f[1], 4), (f[0], 2), (f[0], 1)]  # each after its unpooling (48 / 16 = 3)
    assert [(s.shape[1], HW[1] // s.shape[-1]) for s in seen] == encoder + decoder
    assert out.shape == (2, f[0], *HW)


def test_every_task_gets_what_segnet_alone_gives_it(tasks):
    """The single-task baselines are hard_sharing on the segnet backbone: the same output shapes."""
    x = images()
    alone = model(tasks, "hard_sharing", backbone="segnet")(x)
    mtan = model(tasks)(x)
    assert {t: o.shape for t, o in mtan.items()} == {t: o.shape for t, o in alone.items()}
    assert mtan["segmentation"].shape[-2:] == HW  # stride 1


def test_model_backbone_does_not_change_it(tasks):
    a, b = model(tasks, backbone="small_cnn_s4"), model(tasks, backbone="resnet18")
    assert type(a.backbone).__name__ == type(b.backbone).__name__ == "SegNet"
    assert torch.equal(a(images())["segmentation"], b(images())["segmentation"])


def test_each_tasks_attention_is_its_own(tasks):
    m = model(tasks).train()  # batch statistics: at initialisation, eval-mode activations fade through 26 layers
    x = images()
    before = m(x)
    with torch.no_grad():
        for p in m.enc_att["segmentation"].parameters():
            p.add_(0.5)
    after = m(x)
    assert not torch.allclose(after["segmentation"], before["segmentation"])
    for t in ("depth", "classification"):
        assert torch.equal(after[t], before[t])


def test_shared_parameters_are_exactly_what_every_task_updates(tasks):
    m = model(tasks).train()
    out = m(images())
    reached = []
    for t in TASKS:
        m.zero_grad(set_to_none=True)
        out[t].float().pow(2).mean().backward(retain_graph=True)
        reached.append({n for n, p in m.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0})
    every = set.intersection(*reached)
    names = {id(p): n for n, p in m.named_parameters()}
    shared = {names[id(p)] for p in m.shared_parameters()}
    assert shared == every, (sorted(shared - every)[:5], sorted(every - shared)[:5])
    assert {n.split(".")[0] for n in shared} == {"backbone", "enc_conv", "dec_conv"}  # not the masks, not the heads


def test_attention_maps_are_each_tasks_last_mask_at_full_resolution(tasks):
    maps = model(tasks).attention_maps(images(n=3))
    assert list(maps) == list(TASKS)
    for m in maps.values():
        assert m.shape == (3, *HW) and 0 < m.min() and m.max() < 1


def test_it_has_no_single_shared_representation(tasks):
    with pytest.raises(ConfigError, match="rep_grad"):
        model(tasks).forward_train(images(), rep_grad=True)


def test_per_task_importance_reads_the_shared_segnet(tasks):
    from mtl_core.deploy.importance import feature_importance

    ds = build_dataset(DataConfig(image_size=HW, train_size=4, val_size=4, test_size=4), "val", 0)
    imp = feature_importance(model(tasks), tasks, [ds.get_batch(range(2))])
    assert set(imp.tasks) == set(TASKS)
    assert imp.layers["features"].shape[1] == filters(4)[0]  # the SegNet's last block
    assert len(imp.layers) == 10  # nine stages and the output


def test_it_exports_to_torchscript_and_computes_the_same(tasks, tmp_path):
    from mtl_core.deploy.export import export_torchscript, load_torchscript

    m = model(tasks)
    assert export_torchscript(m, tmp_path / "m.pt", images(n=3)).ok
    loaded, _ = load_torchscript(tmp_path / "m.pt")
    x = images(seed=5)
    assert torch.allclose(dict(loaded(x))["segmentation"], m(x)["segmentation"], atol=1e-5)
