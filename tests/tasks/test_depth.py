"""Depth on hand-made depth maps, plus the turbo colour map it draws with."""
from __future__ import annotations

import math

import pytest
import torch

from mtl_core.data.base import DatasetInfo
from mtl_core.tasks.base import TASKS
from mtl_core.tasks.depth import Depth
from mtl_core.tasks.drawing import TURBO_LUT, colormap, colour_bar_margin

INFO = DatasetInfo("test", ("circle",), 32, ("depth",), depth_max=10.0)


def task() -> Depth:
    return Depth(INFO)


def ramp(h: int = 4, w: int = 4) -> torch.Tensor:
    return torch.linspace(1.0, 9.0, h * w).reshape(1, 1, h, w)  # (1, 1, H, W)


def test_registered_lower_is_better():
    assert TASKS.get("depth") is Depth
    assert Depth.primary == "abs_rel" and not Depth.higher_is_better


def test_head_gives_positive_depth_of_the_feature_size():
    head = task().head(32)
    out = head(torch.randn(2, 32, 16, 16))
    assert out.shape == (2, 1, 16, 16) and (out > 0).all()
    assert (head(torch.full((1, 32, 4, 4), -1e4)) > 0).all()  # still positive far from the data


def test_perfect_prediction():
    gt = ramp()
    assert task().metrics(gt.clone(), gt) == {"abs_rel": 0.0, "abs_err": 0.0, "rmse": 0.0, "delta1": 1.0}


def test_constant_double_gives_abs_rel_one_and_delta1_zero():
    gt = ramp()
    m = task().metrics(2 * gt, gt)
    assert m["abs_rel"] == pytest.approx(1.0)
    assert m["delta1"] == 0.0
    assert m["rmse"] == pytest.approx(math.sqrt(float((gt ** 2).mean())))


def test_hand_computed_metrics_ignore_unlabelled_pixels():
    # labelled: (pred, gt) = (1.1, 1), (2, 2), (2, 4); the 4th pixel has gt 0 (no label) and pred 7
    # abs_rel = (0.1 + 0 + 0.5) / 3 = 0.2; abs_err = (0.1 + 0 + 2) / 3 = 0.7
    # rmse = sqrt((0.01 + 0 + 4) / 3); ratios 1.1, 1, 2 -> delta1 2/3
    gt = torch.tensor([1.0, 2.0, 4.0, 0.0]).reshape(1, 1, 2, 2)
    pred = torch.tensor([1.1, 2.0, 2.0, 7.0]).reshape(1, 1, 2, 2)
    m = task().metrics(pred, gt)
    assert m["abs_rel"] == pytest.approx(0.2)
    assert m["abs_err"] == pytest.approx(0.7)
    assert m["rmse"] == pytest.approx(math.sqrt(4.01 / 3))
    assert m["delta1"] == pytest.approx(2 / 3)


def test_no_labelled_pixels_gives_zeros_and_a_zero_loss_with_a_gradient():
    t = task()
    zeros = {"abs_rel": 0.0, "abs_err": 0.0, "rmse": 0.0, "delta1": 0.0}
    assert t.metrics(torch.rand(2, 1, 4, 4) + 0.1, torch.zeros(2, 1, 4, 4)) == zeros
    assert t.metrics(torch.zeros(0, 1, 4, 4), torch.zeros(0, 1, 4, 4)) == zeros
    pred = (torch.rand(2, 1, 2, 2) + 0.1).requires_grad_()
    loss = t.loss(pred, torch.zeros(2, 1, 8, 8))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(pred.grad).all()


def test_loss_is_the_mean_absolute_log_ratio_and_shrinks_as_prediction_gets_closer():
    gt = ramp()
    t = task()
    assert float(t.loss(2 * gt, gt)) == pytest.approx(math.log(2), rel=1e-5)
    assert float(t.loss(gt / 2, gt)) == pytest.approx(math.log(2), rel=1e-5)  # relative: symmetric
    assert float(t.loss(1.5 * gt, gt)) > float(t.loss(1.1 * gt, gt)) > float(t.loss(gt, gt)) == 0.0


def test_loss_ignores_unlabelled_pixels_and_survives_zero_predictions():
    gt = torch.tensor([1.0, 2.0, 0.0, 0.0]).reshape(1, 1, 2, 2)
    a = torch.tensor([1.0, 2.0, 5.0, 0.0]).reshape(1, 1, 2, 2)
    b = torch.tensor([1.0, 2.0, 9.0, 3.0]).reshape(1, 1, 2, 2)
    t = task()
    assert float(t.loss(a, gt)) == float(t.loss(b, gt)) == 0.0
    assert math.isfinite(float(t.loss(torch.zeros(1, 1, 2, 2), gt)))


def test_low_resolution_output_is_upsampled_to_the_target():
    t = task()
    assert float(t.loss(torch.full((1, 1, 2, 2), 3.0), torch.full((1, 1, 8, 8), 3.0))) == 0.0
    assert t.metrics(torch.full((1, 1, 2, 2), 3.0), torch.full((1, 1, 8, 8), 3.0))["abs_rel"] == 0.0


def test_loss_is_float32_under_bf16_autocast():
    t = task()
    head = t.head(32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(torch.randn(2, 32, 8, 8))
        loss = t.loss(out, torch.rand(2, 1, 16, 16) * 10)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_decode_returns_the_requested_size():
    preds = task().decode(torch.rand(2, 1, 8, 8) + 1, (20, 30))
    assert len(preds) == 2 and preds[1]["depth"].shape == (20, 30)
    assert preds[1]["depth"].dtype == torch.float32


def test_colormap_runs_blue_to_red_and_clamps():
    values = torch.tensor([[-5.0, 0.0, 5.0, 10.0, 50.0, float("nan")]])
    rgb = colormap(values, 0.0, 10.0)
    assert rgb.shape == (3, 1, 6) and rgb.dtype == torch.uint8
    assert tuple(rgb[:, 0, 1].tolist()) == TURBO_LUT[0] == tuple(rgb[:, 0, 0].tolist()) == tuple(rgb[:, 0, 5].tolist())
    assert tuple(rgb[:, 0, 3].tolist()) == TURBO_LUT[-1] == tuple(rgb[:, 0, 4].tolist())
    assert tuple(rgb[:, 0, 2].tolist()) == TURBO_LUT[8]  # the middle entry
    near, far = rgb[:, 0, 1].int(), rgb[:, 0, 3].int()
    assert near[2] > near[0] and far[0] > far[2]  # near is blue, far is red


def test_overlay_opacity_one_is_the_colour_map_and_zero_the_image():
    t = task()
    image = torch.randint(0, 256, (3, 12, 16), dtype=torch.uint8)
    depth = torch.linspace(0.5, 9.5, 12 * 16).reshape(12, 16)
    full = t.display.draw(image, {"depth": depth}, opacity=1.0, show_scale=False)
    assert torch.equal(full, colormap(depth, 0.0, 10.0))
    assert torch.equal(t.display.draw(image, {"depth": depth}, opacity=0.0, show_scale=False), image)
    half = t.display.draw(image, {"depth": depth}, opacity=0.5, show_scale=False).float()
    assert (half - (image.float() + colormap(depth, 0, 10).float()) / 2).abs().max() <= 0.5


def test_overlay_of_ground_truth_leaves_unlabelled_pixels_alone():
    t = task()
    target = torch.zeros(1, 12, 16)
    target[:, 3:9, 4:12] = 4.0
    gt = t.display.target_to_prediction(target)
    assert gt["depth"].shape == (12, 16)
    image = torch.full((3, 12, 16), 100, dtype=torch.uint8)
    changed = (t.display.draw(image, gt, opacity=0.7, show_scale=False) != image).any(0)
    assert torch.equal(changed, target[0] > 0)


def test_scale_bar_sits_beside_the_map_not_on_it():
    t = task()
    image = torch.full((3, 128, 128), 100, dtype=torch.uint8)
    no_depth = {"depth": torch.zeros(128, 128)}  # nothing to tint: the map area stays the image
    shown = t.display.draw(image, no_depth, show_scale=True)
    assert shown.shape == (3, 128, 128 + colour_bar_margin((128, 128), 0.0, 10.0))
    assert torch.equal(shown[:, :, :128], image)  # the bar covers nothing of the map
    bar = shown[:, :, 128:]
    assert (bar == torch.tensor(TURBO_LUT[-1], dtype=torch.uint8).view(3, 1, 1)).all(0).any()  # far, at the top
    assert torch.equal(t.display.draw(image, no_depth), image)  # blended into a photo: no bar


def test_abs_err_and_abs_rel_pool_pixels_over_the_set_not_batch_means():
    # image 1: one labelled pixel, error 1 (gt 1); image 2: three labelled pixels, error 0 (gt 2)
    # pooled over the 4 pixels: abs_err 1/4, abs_rel 1/4. LibMTL's batch-size-weighted mean of
    # per-image means would say (1 + 0) / 2 = 1/2 for both: we follow the pooled definition
    gt = torch.tensor([[1.0, 0.0, 0.0, 0.0], [2.0, 2.0, 2.0, 0.0]]).reshape(2, 1, 2, 2)
    pred = torch.tensor([[2.0, 5.0, 5.0, 5.0], [2.0, 2.0, 2.0, 9.0]]).reshape(2, 1, 2, 2)
    m = task().metrics(pred, gt)
    assert m["abs_err"] == pytest.approx(1 / 4) and m["abs_rel"] == pytest.approx(1 / 4)
    halves = [task().metrics(pred[i:i + 1], gt[i:i + 1]) for i in range(2)]
    assert [h["abs_err"] for h in halves] == [pytest.approx(1.0), pytest.approx(0.0)]
