"""Segmentation on hand-made label maps whose mIoU is worked out in the comments."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mtl_core.data.base import DatasetInfo
from mtl_core.tasks.base import TASKS
from mtl_core.tasks.drawing import colour_for
from mtl_core.tasks.segmentation import Segmentation

INFO = DatasetInfo("test", ("circle", "square"), 32, ("segmentation",))  # labels 0 bg, 1 circle, 2 square


def task() -> Segmentation:
    return Segmentation(INFO)


def logits_for(labels: torch.Tensor, scale: float = 10.0) -> torch.Tensor:
    """Logits whose argmax is ``labels`` (B, H, W) -> (B, 3, H, W); 255 becomes class 0."""
    clean = torch.where(labels == 255, torch.zeros_like(labels), labels)
    return F.one_hot(clean, 3).permute(0, 3, 1, 2).float() * scale


def test_registered_with_background_plus_classes():
    assert TASKS.get("segmentation") is Segmentation
    assert task().num_outputs == 3 and Segmentation.primary == "miou"


@pytest.mark.parametrize("hw", [(16, 16), (5, 9)])
def test_head_keeps_the_feature_resolution(hw):
    assert task().head(32)(torch.randn(2, 32, *hw)).shape == (2, 3, *hw)


def test_perfect_prediction_scores_one_and_all_wrong_scores_zero():
    target = torch.tensor([[[0, 1, 1, 2], [0, 1, 2, 2], [0, 0, 0, 2], [255, 255, 0, 0]]])
    assert task().metrics(logits_for(target), target) == {"miou": 1.0, "pixel_acc": 1.0}
    all_circle = torch.ones(1, 4, 4, dtype=torch.long)
    wrong = task().metrics(logits_for(torch.full_like(all_circle, 2)), all_circle)
    assert wrong == {"miou": 0.0, "pixel_acc": 0.0}


def test_hand_computed_miou_seven_twelfths():
    # target [[0, 1], [1, 1]], prediction [[0, 1], [0, 1]]
    # background: TP 1, FP 1 (bottom-left), FN 0 -> IoU 1/2
    # circle:     TP 2, FP 0, FN 1              -> IoU 2/3
    # square appears in neither -> left out: mIoU = (1/2 + 2/3) / 2 = 7/12; pixel accuracy 3/4
    target = torch.tensor([[[0, 1], [1, 1]]])
    pred = torch.tensor([[[0, 1], [0, 1]]])
    m = task().metrics(logits_for(pred), target)
    assert m["miou"] == pytest.approx(7 / 12)
    assert m["pixel_acc"] == pytest.approx(3 / 4)


def test_a_class_only_predicted_counts_with_iou_zero():
    # target all background; prediction puts square on one of 4 pixels
    # background IoU 3/4, square IoU 0 -> mIoU 3/8
    target = torch.zeros(1, 2, 2, dtype=torch.long)
    pred = torch.tensor([[[0, 0], [0, 2]]])
    assert task().metrics(logits_for(pred), target)["miou"] == pytest.approx(3 / 8)


def test_metrics_pool_pixels_over_the_whole_set():
    # two images evaluated together give the same numbers as one image holding both
    target = torch.tensor([[[0, 1], [1, 1]], [[2, 2], [0, 1]]])
    pred = torch.tensor([[[0, 1], [0, 1]], [[2, 1], [0, 1]]])
    together = task().metrics(logits_for(pred), target)
    side_by_side = task().metrics(logits_for(pred.permute(1, 0, 2).reshape(1, 2, 4)),
                                  target.permute(1, 0, 2).reshape(1, 2, 4))
    assert together == pytest.approx(side_by_side)


def test_ignored_pixels_change_neither_metrics_nor_loss():
    target = torch.tensor([[[0, 1], [255, 2]]])
    good = logits_for(torch.tensor([[[0, 1], [0, 2]]]), scale=2.0)
    other = logits_for(torch.tensor([[[0, 1], [1, 2]]]), scale=2.0)  # differs only at the ignored pixel
    t = task()
    assert t.metrics(good, target) == t.metrics(other, target) == {"miou": 1.0, "pixel_acc": 1.0}
    assert float(t.loss(good, target)) == pytest.approx(float(t.loss(other, target)))


def test_all_ignored_or_empty_gives_zeros_and_a_zero_loss_with_a_gradient():
    t = task()
    target = torch.full((2, 4, 4), 255, dtype=torch.long)
    assert t.metrics(torch.randn(2, 3, 4, 4), target) == {"miou": 0.0, "pixel_acc": 0.0}
    assert t.metrics(torch.zeros(0, 3, 4, 4), torch.zeros(0, 4, 4, dtype=torch.long)) == {"miou": 0.0, "pixel_acc": 0.0}
    logits = torch.randn(2, 3, 2, 2, requires_grad=True)
    loss = t.loss(logits, target)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(logits.grad).all()


def test_loss_decreases_as_the_prediction_gets_closer():
    target = torch.tensor([[[0, 1, 1, 2], [0, 1, 2, 2]]])
    losses = [float(task().loss(logits_for(target, scale=s), target)) for s in (0.0, 1.0, 4.0)]
    assert losses[0] > losses[1] > losses[2]


def test_low_resolution_logits_are_upsampled_to_the_label_size():
    # 2x2 logits against a 4x4 target made of 2x2 blocks: bilinear upsampling keeps each block's class
    coarse = torch.tensor([[[1, 2], [0, 1]]])
    target = coarse.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)  # (1, 4, 4)
    t = task()
    assert t.metrics(logits_for(coarse), target)["miou"] == 1.0
    assert float(t.loss(logits_for(coarse, scale=20.0), target)) < 0.01  # a uniform guess costs log 3 = 1.1


def test_loss_is_float32_under_bf16_autocast():
    t = task()
    head = t.head(32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(torch.randn(2, 32, 8, 8))
        loss = t.loss(out, torch.randint(0, 3, (2, 16, 16)))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_decode_returns_the_requested_size():
    preds = task().decode(torch.randn(2, 3, 8, 8), (20, 30))
    assert len(preds) == 2
    assert preds[0]["mask"].shape == (20, 30) and preds[0]["mask"].dtype == torch.long
    with_probs = task().decode(torch.randn(1, 3, 8, 8), (12, 10), with_probs=True)[0]
    assert with_probs["probs"].shape == (3, 12, 10)
    assert torch.allclose(with_probs["probs"].sum(0), torch.ones(12, 10))


def test_decode_upsamples_blocks_to_the_image():
    coarse = torch.tensor([[[1, 2], [0, 1]]])
    mask = task().decode(logits_for(coarse), (4, 6))[0]["mask"]
    assert mask[0, 0] == 1 and mask[0, -1] == 2 and mask[-1, 0] == 0 and mask[-1, -1] == 1


@pytest.mark.parametrize("opacity", [0.1, 0.5, 0.9])
def test_overlay_changes_exactly_the_mask_pixels(opacity):
    image = torch.randint(0, 256, (3, 24, 32), dtype=torch.uint8)
    mask = torch.zeros(24, 32, dtype=torch.long)
    mask[4:12, 6:20] = 1
    mask[15:20, 2:5] = 2
    out = task().display.draw(image, {"mask": mask}, opacity=opacity, show_legend=False)
    inside = mask > 0
    assert torch.equal(out[:, ~inside], image[:, ~inside])  # bit for bit outside
    expected = (image[:, inside].float() * (1 - opacity)
                + torch.tensor(colour_for(0)).view(3, 1).float() * opacity)[:, :8 * 14]  # circle pixels first
    got = out[:, mask == 1].float()
    assert (got - expected).abs().max() <= 1.0  # truncation, not rounding, in torchvision


def test_overlay_legend_sits_bottom_right_and_lists_the_classes_present():
    image = torch.full((3, 96, 96), 100, dtype=torch.uint8)
    mask = torch.zeros(96, 96, dtype=torch.long)
    mask[5:30, 5:30] = 2  # only squares
    out = task().display.draw(image, {"mask": mask}, opacity=0.5)
    extra = (out != image).any(0) & (mask == 0)
    ys, xs = extra.nonzero(as_tuple=True)
    assert len(ys) > 0 and ys.min() >= 48 and xs.min() >= 48
    assert (out[:, ys, xs] == torch.tensor(colour_for(1)).view(3, 1)).all(0).any()  # a square-coloured chip
    assert not (out[:, ys, xs] == torch.tensor(colour_for(0)).view(3, 1)).all(0).any()  # no circle chip


def test_ground_truth_overlay_leaves_background_and_ignored_pixels_alone():
    t = task()
    target = torch.zeros(16, 16, dtype=torch.long)
    target[2:6, 2:6] = 1
    target[10:, :] = 255
    gt = t.display.target_to_prediction(target)
    assert torch.equal(gt["mask"], target)
    image = torch.full((3, 16, 16), 100, dtype=torch.uint8)
    changed = (t.display.draw(image, gt, show_legend=False) != image).any(0)
    assert torch.equal(changed, target == 1)
    assert torch.equal(t.display.draw(image, {"mask": torch.zeros(16, 16, dtype=torch.long)}), image)


# ------------------------------------------------------------------ classes without a background
def no_background() -> Segmentation:
    """Three classes covering every pixel, as NYUv2's 13 and Cityscapes' 7 are shipped: label c is class c."""
    from mtl_core.config import TaskSpec

    return Segmentation(INFO, TaskSpec(kind="segmentation", classes=("floor", "wall", "bed"),
                                       options={"background": 0, "ignore_index": 255}))


def test_without_a_background_every_output_is_a_class_and_class_zero_is_scored():
    t = no_background()
    assert t.offset == 0 and t.num_outputs == 3 and t.head(8)(torch.randn(1, 8, 4, 4)).shape == (1, 3, 4, 4)
    # target [[0, 1], [2, 255]], prediction [[0, 1], [1, 0]]
    # floor (0): TP 1, FP 0, FN 0 -> 1; wall (1): TP 1, FP 1 -> 1/2; bed (2): TP 0, FN 1 -> 0
    # mIoU (1 + 1/2 + 0) / 3 = 1/2; pixel accuracy 2 of 3 labelled pixels
    target = torch.tensor([[[0, 1], [2, 255]]])
    pred = torch.tensor([[[0, 1], [1, 0]]])
    m = t.metrics(logits_for(pred), target)
    assert m["miou"] == pytest.approx(1 / 2) and m["pixel_acc"] == pytest.approx(2 / 3)


def test_without_a_background_class_zero_is_drawn_named_and_confused_like_the_others():
    t = no_background()
    d = t.display
    assert d.size() == 3 and [d.label_name(c) for c in range(3)] == ["floor", "wall", "bed"]
    mask = torch.zeros(16, 16, dtype=torch.long)
    mask[8:, :] = 2
    image = torch.full((3, 16, 16), 100, dtype=torch.uint8)
    out = d.draw(image, {"mask": mask}, show_legend=False)
    assert (out != image).any(0).all()  # floor (label 0) is tinted too: it is a class, not background
    assert [name for name, _ in d.legend({"mask": mask})] == ["floor", "bed"]
    assert d.legend({"mask": mask})[0][1] == "#{:02x}{:02x}{:02x}".format(*colour_for(0))
    assert d.summarize({"mask": mask}) == "floor 50%, bed 50%"
    (conf,) = d.confusions([{"mask": mask}], [{"mask": mask}])
    assert "background" not in str(conf)


def test_a_label_table_mask_column_without_a_background_takes_values_from_zero(tmp_path):
    from PIL import Image

    from mtl_core.config import TaskSpec
    from mtl_core.data.manifest import check_cell
    from mtl_core.data.table import Table

    Image.fromarray(torch.tensor([[0, 1], [2, 3]], dtype=torch.uint8).numpy()).save(tmp_path / "m.png")
    table = Table(tmp_path / "labels.csv", [], [])
    three = dict(kind="segmentation", classes=("a", "b", "c"))
    assert check_cell(table, TaskSpec(**three), "m.png", (2, 2)) is None  # 0 background, 1..3 the classes
    message = check_cell(table, TaskSpec(**three, options={"background": 0}), "m.png", (2, 2))
    assert message == "mask m.png has value 3 beyond its 3 classes (0..2 the classes, 255 not labelled)"
