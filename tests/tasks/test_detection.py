"""The CenterNet detection task: targets, loss, decoding, metrics and overlay on hand-made boxes."""
from __future__ import annotations

import pytest
import torch

from mtl_core.data.base import DatasetInfo, pad_detection
from mtl_core.tasks.base import TASKS
from mtl_core.tasks.detection import DetectionTask
from mtl_core.tasks.drawing import colour_for

INFO = DatasetInfo(name="toy", class_names=("circle", "square", "triangle"), image_size=64, tasks=("detection",))


def sample(boxes, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "labels": torch.tensor(labels, dtype=torch.long)}


@pytest.fixture
def task():
    return DetectionTask(INFO)


@pytest.fixture
def batch():
    """Three images: two boxes of different classes, one small box, and no box at all."""
    return pad_detection([
        sample([[5, 6, 20, 30], [30, 30, 60, 50]], [0, 2]),
        sample([[10, 10, 18, 18]], [1]),
        sample([], []),
    ])


def test_registered_under_its_name():
    assert TASKS.get("detection") is DetectionTask
    assert DetectionTask.primary == "map50" and DetectionTask.higher_is_better


def test_head_shapes_and_focal_prior(task):
    torch.manual_seed(0)
    out = task.head(16, stride=8)(torch.randn(2, 16, 8, 8))
    assert out["heatmap"].shape == (2, 3, 8, 8)
    assert out["size"].shape == (2, 2, 8, 8) and out["offset"].shape == (2, 2, 8, 8)
    # an untrained head says "object here" with probability about 0.1 everywhere (bias -2.19)
    assert torch.sigmoid(out["heatmap"]).mean().item() == pytest.approx(0.1, abs=0.03)
    # on finer features (the small CNN's stride 2) the head halves the grid to CenterNet's stride 4
    assert task.head(16, stride=2)(torch.randn(2, 16, 8, 8))["heatmap"].shape == (2, 3, 4, 4)


def test_targets_peak_once_per_box_in_the_right_class(task, batch):
    enc = task.encode(batch, 16, 16)  # stride 4
    heat = enc["heatmap"]
    assert heat.shape == (3, 3, 16, 16)
    assert int(heat.eq(1).sum()) == 3  # one peak per box, none for the empty image
    # box (5, 6, 20, 30): centre (12.5, 18) px -> cell (x 3, y 4), class 0
    assert heat[0, 0, 4, 3] == 1.0
    assert heat[2].max() == 0.0
    assert enc["offset"][0, 0].tolist() == pytest.approx([0.125, 0.5])
    assert enc["size"][0, 0].tolist() == pytest.approx([15 / 64, 24 / 64])


@pytest.mark.parametrize("grid", [8, 16])
def test_ideal_output_decodes_to_the_ground_truth(task, batch, grid):
    out = task.ideal_output(batch, grid, grid)
    preds = task.decode(out, (64, 64))
    assert len(preds) == 3
    for pred, n in zip(preds, (2, 1, 0)):
        assert len(pred["boxes"]) == n
        assert (pred["scores"] > 0.9).all()
        assert (pred["scores"][:-1] >= pred["scores"][1:]).all()
    order = preds[0]["labels"].argsort()
    assert preds[0]["labels"][order].tolist() == [0, 2]
    assert torch.allclose(preds[0]["boxes"][order], batch["boxes"][0, :2], atol=1.0)
    assert torch.allclose(preds[1]["boxes"], batch["boxes"][1, :1], atol=1.0)
    # decoding for an image twice the size scales the boxes
    big = task.decode(out, (128, 128))
    assert torch.allclose(big[1]["boxes"], 2 * batch["boxes"][1, :1], atol=2.0)
    assert task.metrics(out, batch) == {"map50": pytest.approx(1.0), "map": pytest.approx(1.0)}


def test_loss_prefers_the_ideal_output(task, batch):
    ideal = task.ideal_output(batch, 16, 16)
    torch.manual_seed(0)
    random = {k: torch.randn_like(v) for k, v in ideal.items()}
    terms_ideal = task.loss_terms(ideal, batch)
    terms_random = task.loss_terms(random, batch)
    assert float(task.loss(ideal, batch)) < 0.01
    for k in ("heatmap", "size", "offset"):
        assert terms_random[k] > 10 * terms_ideal[k] + 1e-2, k
    # a slightly wrong size costs more than the right one
    wrong = dict(ideal, size=ideal["size"] * 1.2)
    assert task.loss(wrong, batch) > task.loss(ideal, batch) + 1e-3


def test_empty_images_give_finite_gradients_that_lower_every_score(task):
    empty = pad_detection([sample([], []), sample([], [])])
    torch.manual_seed(0)
    out = {"heatmap": torch.randn(2, 3, 8, 8, requires_grad=True), "size": torch.randn(2, 2, 8, 8, requires_grad=True),
           "offset": torch.randn(2, 2, 8, 8, requires_grad=True)}
    loss = task.loss(out, empty)
    loss.backward()
    assert torch.isfinite(loss) and loss > 0
    assert torch.isfinite(out["heatmap"].grad).all()
    assert (out["heatmap"].grad > 0).all()  # gradient descent pushes every logit towards "no object"
    assert out["size"].grad.abs().sum() == 0  # nothing to regress


def test_loss_is_float32_under_autocast(task, batch):
    ideal = task.ideal_output(batch, 16, 16)
    torch.manual_seed(0)
    low = {k: (v + torch.randn_like(v)).bfloat16() for k, v in ideal.items()}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = task.loss(low, batch)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_decode_suppresses_overlapping_peaks_of_one_class_only(task):
    # 16 x 16 grid on a 64 px image (stride 4): peaks at cells x 6 and x 8 of row 8 (both local
    # maxima), 32 x 32 px boxes at centres (24, 32) and (32, 32): IoU = 24*32 / (40*32) = 0.6 > 0.5
    out = {"heatmap": torch.full((1, 3, 16, 16), -10.0), "size": torch.zeros(1, 2, 16, 16),
           "offset": torch.zeros(1, 2, 16, 16)}
    out["size"][0, :, 8, 6] = out["size"][0, :, 8, 8] = 0.5
    out["heatmap"][0, 0, 8, 6] = 3.0
    out["heatmap"][0, 0, 8, 8] = 2.0
    pred = task.decode(out, (64, 64))[0]
    assert pred["labels"].tolist() == [0]
    assert pred["scores"].item() == pytest.approx(torch.sigmoid(torch.tensor(3.0)).item())
    assert pred["boxes"][0].tolist() == pytest.approx([8.0, 16.0, 40.0, 48.0])
    out["heatmap"][0, 0, 8, 8] = -10.0
    out["heatmap"][0, 1, 8, 8] = 2.0  # the same overlapping box, another class: both kept
    assert sorted(task.decode(out, (64, 64))[0]["labels"].tolist()) == [0, 1]
    out["heatmap"][0, 1, 8, 8] = -3.0  # score 0.047 < 0.05: dropped
    assert task.decode(out, (64, 64))[0]["labels"].tolist() == [0]


def test_metrics_without_any_ground_truth_are_zero(task):
    empty = pad_detection([sample([], []), sample([], [])])
    out = task.ideal_output(pad_detection([sample([[5, 5, 20, 20]], [0]), sample([], [])]), 8, 8)
    assert task.metrics(out, empty) == {"map50": 0.0, "map": 0.0}


def test_head_learns_to_detect_on_fixed_features():
    """The loss trains: a head on fixed random features fits two images' boxes."""
    info = DatasetInfo(name="toy", class_names=("circle", "square"), image_size=32, tasks=("detection",))
    task = DetectionTask(info)
    target = pad_detection([sample([[4, 4, 14, 12], [18, 16, 30, 30]], [0, 1]), sample([[8, 14, 22, 26]], [1])])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is faster on a shared machine
    try:
        torch.manual_seed(0)
        feats = torch.randn(2, 8, 8, 8)  # (B, C, h, w): stride 4
        head = task.head(8, stride=4)
        before = task.metrics(head(feats), target)["map50"]
        opt = torch.optim.Adam(head.parameters(), lr=1e-2)
        for _ in range(100):
            loss = task.loss(head(feats), target)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            after = task.metrics(head(feats), target)
    finally:
        torch.set_num_threads(threads)
    assert before < 0.5
    assert after["map50"] == pytest.approx(1.0)


def test_target_to_prediction_drops_padding(task, batch):
    gt = task.display.target_to_prediction({k: v[1] for k, v in batch.items()})
    assert gt["labels"].tolist() == [1]
    assert gt["boxes"].tolist() == [[10.0, 10.0, 18.0, 18.0]]
    assert "scores" not in gt


def _image():
    return torch.full((3, 96, 96), 40, dtype=torch.uint8)


def test_overlay_draws_the_box_edges_where_the_box_is(task):
    image = _image()
    pred = {"boxes": torch.tensor([[30.0, 40.0, 70.0, 80.0]]), "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}
    out = task.display.draw(image, pred, opacity=0.0)
    assert out.dtype == torch.uint8 and out.shape == image.shape
    assert torch.equal(image, _image())  # the input is not modified
    colour = torch.tensor(colour_for(1), dtype=torch.uint8)
    for y, x in [(60, 30), (60, 70), (80, 50), (40, 50)]:  # left, right, bottom, top edges
        assert torch.equal(out[:, y, x], colour), (y, x)
    assert torch.equal(out[:, 60, 50], image[:, 60, 50])  # inside, no tint at opacity 0
    assert torch.equal(out[:, 90, 5], image[:, 90, 5])  # far away: untouched
    assert torch.equal(out[:, 88:, :], image[:, 88:, :])  # nothing drawn below the box
    assert not torch.equal(out[:, 25:40, 30:70], image[:, 25:40, 30:70])  # the "square 0.90" label above it
    tinted = task.display.draw(image, pred, opacity=0.5)
    assert not torch.equal(tinted[:, 60, 50], image[:, 60, 50])
    assert torch.equal(tinted[:, 90, 5], image[:, 90, 5])


def test_overlay_hides_low_scores_but_shows_every_ground_truth_box(task):
    image = _image()
    low = {"boxes": torch.tensor([[30.0, 40.0, 70.0, 80.0]]), "scores": torch.tensor([0.2]), "labels": torch.tensor([0])}
    assert torch.equal(task.display.draw(image, low, score_threshold=0.3), image)
    assert not torch.equal(task.display.draw(image, low, score_threshold=0.1), image)
    gt = task.display.target_to_prediction({"boxes": torch.tensor([[30.0, 40.0, 70.0, 80.0], [0, 0, 0, 0]]),
                                    "labels": torch.tensor([0, -1])})
    out = task.display.draw(image, gt, opacity=0.0)
    assert torch.equal(out[:, 60, 30], torch.tensor(colour_for(0), dtype=torch.uint8))


@pytest.mark.parametrize("hw", [(48, 80), (80, 48)])
def test_a_wide_or_tall_image_encodes_and_decodes_its_boxes_exactly(hw):
    """The grid's cells are W / w wide and H / h tall, and sizes are fractions of each side: on a
    non-square image a square ``s`` would put centres in the wrong cells."""
    h, w = hw
    task = DetectionTask(DatasetInfo(name="toy", class_names=("circle", "square"), image_size=hw, tasks=("detection",)))
    boxes = [[4, 4, 20, 16], [w - 24, h - 20, w - 2, h - 2]]
    batch = pad_detection([sample(boxes, [0, 1])])
    enc = task.encode(batch, h // 4, w // 4)
    # the second box's centre (w - 13, h - 11) px lies in cell (x (w - 13) // 4, y (h - 11) // 4)
    assert enc["heatmap"][0, 1, (h - 11) // 4, (w - 13) // 4] == 1.0
    assert enc["size"][0, 1].tolist() == pytest.approx([22 / w, 18 / h])
    out = task.ideal_output(batch, h // 4, w // 4)
    pred = task.decode(out, hw)[0]
    order = pred["labels"].argsort()
    assert torch.allclose(pred["boxes"][order], batch["boxes"][0], atol=0.5)
    assert task.metrics(out, batch)["map50"] == pytest.approx(1.0)
