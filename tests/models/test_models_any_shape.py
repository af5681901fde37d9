"""The shape contract: every registered architecture and backbone, with every built-in task, trains
and predicts on wide and tall images, not only squares. Read from the registries, so a new
architecture, backbone or task is held to it without touching this file."""
from __future__ import annotations

import pytest
import torch

from mtl_core.config import DataConfig, ModelConfig
from mtl_core.data.scenes import ScenesDataset
from mtl_core.isolation import seeded_global_rng
from mtl_core.models import ARCHITECTURES, BACKBONES, build_model
from mtl_core.models.channel_prune import multiply_adds
from mtl_core.tasks import build_task, supported_tasks

SIZES = [(48, 80), (80, 48)]  # (height, width): neither a square nor a multiple of every stride's square


pytestmark = pytest.mark.usefixtures("one_thread")  # many small ops: see tests/conftest.py


@pytest.fixture(scope="module", params=SIZES, ids=lambda hw: f"{hw[0]}x{hw[1]}")
def scenes(request):
    """Every built-in task's head and a batch of scenes with all their targets at ``(H, W)``."""
    ds = ScenesDataset(DataConfig(image_size=request.param, train_size=4, max_objects=3), "train")
    tasks = {t: build_task(t, ds.info) for t in supported_tasks(ds.info.tasks)}
    assert len(tasks) >= 6
    return request.param, tasks, ds.get_batch(range(2))


def _check_trains_and_predicts(model, tasks, hw, batch) -> None:
    """forward + every task's loss + backward, then each task's decoded prediction at ``(H, W)``."""
    h, w = hw
    images, targets = batch
    model.train()
    outputs = model(images)
    losses = {t: task.loss(outputs[t], targets[task.target_name()]) for t, task in tasks.items()}
    for t, loss in losses.items():
        assert loss.dim() == 0 and torch.isfinite(loss), t
    sum(losses.values()).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    model.eval()
    with torch.no_grad():
        outputs = model(images)
    for t, task in tasks.items():
        pred = task.decode(outputs[t], (h, w))[0]
        if task.kind == "segmentation":
            assert pred["mask"].shape == (h, w), t
            assert task.decode(outputs[t])[0]["mask"].shape == (h, w), t  # the default size is the data's (H, W)
        elif task.kind == "depth":
            assert pred["depth"].shape == (h, w), t
            assert task.decode(outputs[t])[0]["depth"].shape == (h, w), t
        elif task.kind == "detection":
            boxes = pred["boxes"]
            assert boxes.shape[1:] == (4,) and len(boxes) > 0, t
            assert (boxes[:, 0::2] >= 0).all() and (boxes[:, 0::2] <= w).all(), t
            assert (boxes[:, 1::2] >= 0).all() and (boxes[:, 1::2] <= h).all(), t
            assert (boxes[:, 2:] - boxes[:, :2]).min() >= 0, t
            # the heatmap grid keeps the image's aspect (CenterNet's stride 4 or coarser)
            gh, gw = outputs[t]["heatmap"].shape[-2:]
            assert gh * w == gw * h or abs(gh / gw - h / w) < 0.2, (t, gh, gw)
        metrics = task.metrics(outputs[t], targets[task.target_name()])
        assert task.primary in metrics, t


@pytest.mark.parametrize("arch", ARCHITECTURES.available())
def test_every_architecture_trains_and_predicts_every_task_at_height_by_width(scenes, arch):
    hw, tasks, batch = scenes
    with seeded_global_rng(0):
        model = build_model(tasks, ModelConfig(architecture=arch, backbone="small_cnn_s4", width=4))
    _check_trains_and_predicts(model, tasks, hw, batch)


@pytest.mark.parametrize("backbone", BACKBONES.available())
def test_every_backbone_trains_and_predicts_every_task_at_height_by_width(scenes, backbone):
    hw, tasks, batch = scenes
    with seeded_global_rng(0):
        model = build_model(tasks, ModelConfig(architecture="hard_sharing", backbone=backbone, width=4))
    features = model.backbone(batch[0])
    s = model.backbone.stride
    assert features.shape[-2:] == (-(-hw[0] // s), -(-hw[1] // s))  # (ceil(H / s), ceil(W / s))
    _check_trains_and_predicts(model, tasks, hw, batch)


def test_multiply_adds_count_the_height_by_width_image():
    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1, bias=False)

        def forward(self, x):
            return self.conv(x)

    assert multiply_adds(Tiny(), (24, 40)) == 24 * 40 * 4 * 27
    assert multiply_adds(Tiny(), 32) == multiply_adds(Tiny(), (32, 32))
