"""DeepLab-v3's ASPP before each task's head (``model.head = "aspp"``): every architecture builds
it, the task's own head still shapes its output, a batch of one image trains, training draws no
random numbers, and the papers' NYUv2 model (dilated ResNet-50 with three ASPP heads) trains a
step on a CPU."""
from __future__ import annotations

import time

import pytest
import torch

from mtl_core.config import DataConfig, ModelConfig
from mtl_core.data import build_dataset
from mtl_core.errors import ConfigError
from mtl_core.isolation import seeded_global_rng
from mtl_core.models import ARCHITECTURES, build_model
from mtl_core.models.aspp import DEEPLAB_RATES, ASPPHead, PooledBatchNorm
from mtl_core.tasks import build_task

TASKS = ("segmentation", "depth", "classification")


def scene_tasks(hw) -> tuple[dict, tuple]:
    ds = build_dataset(DataConfig(image_size=hw, train_size=4, val_size=4, test_size=4), "train", 0)
    return {t: build_task(t, ds.info) for t in TASKS}, ds.get_batch(range(2))


@pytest.fixture(scope="module")
def tasks():
    return scene_tasks(32)[0]


def model(tasks, arch="hard_sharing", backbone="small_cnn_s4", head="aspp", **kw):
    with seeded_global_rng(0):
        return build_model(tasks, ModelConfig(architecture=arch, backbone=backbone, width=4, head=head, **kw))


def shapes(out: dict) -> dict:
    return {t: {k: v.shape for k, v in o.items()} if isinstance(o, dict) else o.shape for t, o in out.items()}


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("arch", ARCHITECTURES.available())
def test_every_architecture_puts_an_aspp_before_each_tasks_head_and_keeps_its_outputs(tasks, arch):
    plain, aspp = model(tasks, arch, head="").eval(), model(tasks, arch).eval()
    assert set(aspp.heads) == set(TASKS)
    for t, h in aspp.heads.items():
        assert isinstance(h, ASPPHead), t
        assert len(h.aspp.convs) == 2 + len(DEEPLAB_RATES)  # 1x1, one per rate, image pooling
        assert [c[0].dilation for c in h.aspp.convs[1:-1]] == [(r, r) for r in DEEPLAB_RATES]
        assert type(h.head) is type(plain.heads[t])  # the task's own head, on 256 channels
    x = torch.rand(2, 3, 32, 32)
    assert shapes(aspp(x)) == shapes(plain(x))


def test_the_aspp_reads_the_trunks_channels_and_the_head_its_256(tasks):
    m = model(tasks)
    for h in m.heads.values():
        assert h.aspp.convs[0][0].in_channels == m.backbone.channels
        assert h.aspp.project[0].out_channels == 256
    assert m.heads["depth"].head.__class__.__name__ == "DepthHead"


def test_a_batch_of_one_trains_and_leaves_the_pooling_statistics_alone(tasks):
    m = model(tasks).train()
    pool_bn = m.heads["depth"].aspp.convs[-1][2]
    assert isinstance(pool_bn, PooledBatchNorm)
    before = pool_bn.running_mean.clone(), pool_bn.running_var.clone()
    out = m(torch.rand(1, 3, 32, 32))  # torchvision's ASPP raises here: one value per channel
    sum(o.float().mean() for o in out.values()).backward()
    assert torch.equal(pool_bn.running_mean, before[0]) and torch.equal(pool_bn.running_var, before[1])
    m(torch.rand(2, 3, 32, 32))  # two images: batch statistics, as torchvision's
    assert not torch.equal(pool_bn.running_mean, before[0])
    m.eval()
    with torch.no_grad():
        assert m(torch.rand(1, 3, 32, 32))["depth"].shape[0] == 1


def test_training_draws_no_random_numbers(tasks):
    """No dropout: a run owns its randomness, so a training forward is the same whatever the
    process-wide generator holds."""
    m = model(tasks).train()
    x = torch.rand(2, 3, 32, 32)
    torch.manual_seed(1)
    a = m(x)["segmentation"]
    torch.manual_seed(2)
    b = m(x)["segmentation"]
    assert torch.equal(a, b)


def test_an_unknown_head_is_a_config_error(tasks):
    with pytest.raises(ConfigError) as e:
        model(tasks, head="deeplab")
    assert e.value.field == "model.head" and "aspp" in e.value.message


def test_the_nyuv2_model_trains_a_step_at_96_by_128_on_a_cpu(capsys):
    """LibMTL's NYUv2 network: dilated ResNet-50 (stride 8, 2048 channels) and an ASPP per task."""
    tasks, _ = scene_tasks((96, 128))
    m = model(tasks, backbone="resnet50_dilated").train()
    assert m.backbone.channels == 2048 and m.backbone.stride == 8
    x = torch.rand(1, 3, 96, 128)
    t0 = time.perf_counter()
    out = m(x)
    assert out["segmentation"].shape[-2:] == (12, 16)  # stride 8; the task upsamples its logits itself
    assert (out["depth"] > 0).all()  # the depth head's softplus, behind the ASPP
    sum(o.float().mean() for o in out.values()).backward()
    seconds = time.perf_counter() - t0
    assert m.backbone.conv1.weight.grad.abs().sum() > 0
    assert all(h.aspp.convs[3][0].weight.grad.abs().sum() > 0 for h in m.heads.values())
    with capsys.disabled():
        print(f"\n  resnet50_dilated + 3 ASPP heads, 1x3x96x128, forward+backward on CPU: {seconds:.2f} s")
