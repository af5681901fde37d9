"""Object counting as classification over 0..max_objects, on hand-made logits."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mtl_core.data.base import DatasetInfo
from mtl_core.tasks.base import TASKS
from mtl_core.tasks.count import Count

INFO = DatasetInfo("test", ("circle", "square"), 32, ("count",), max_objects=4)


def task() -> Count:
    return Count(INFO)


def logits_for(counts, scale=10.0):
    return F.one_hot(torch.tensor(counts), 5).float() * scale  # (N, 5)


def test_registered_with_one_class_per_count():
    assert TASKS.get("count") is Count and Count.primary == "accuracy"
    assert task().head(32)(torch.randn(2, 32, 16, 16)).shape == (2, 5)  # 0, 1, 2, 3, 4 objects


def test_perfect_and_wrong_counts():
    counts = [0, 1, 4, 2]
    assert task().metrics(logits_for(counts), torch.tensor(counts)) == {"accuracy": 1.0, "mae": 0.0}
    m = task().metrics(logits_for([1, 2, 3, 3]), torch.tensor(counts))
    assert m["accuracy"] == 0.0 and m["mae"] == pytest.approx((1 + 1 + 1 + 1) / 4)


def test_hand_computed_accuracy_and_mean_absolute_error():
    # predicted 0, 2, 4 for true 1, 2, 1: one right; errors 1, 0, 3 -> MAE 4/3
    m = task().metrics(logits_for([0, 2, 4]), torch.tensor([1, 2, 1]))
    assert m["accuracy"] == pytest.approx(1 / 3)
    assert m["mae"] == pytest.approx(4 / 3)


def test_counts_above_the_maximum_are_the_maximum_and_empty_gives_zeros():
    assert task().metrics(logits_for([4]), torch.tensor([7]))["accuracy"] == 1.0
    assert torch.isfinite(task().loss(logits_for([4]), torch.tensor([7])))
    assert task().metrics(torch.zeros(0, 5), torch.zeros(0, dtype=torch.long)) == {"accuracy": 0.0, "mae": 0.0}


def test_loss_decreases_as_the_prediction_gets_closer_and_is_float32_under_autocast():
    target = torch.tensor([3, 1])
    losses = [float(task().loss(logits_for([3, 1], scale=s), target)) for s in (0.0, 1.0, 4.0)]
    assert losses[0] > losses[1] > losses[2]
    head = task().head(32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = task().loss(head(torch.randn(2, 32, 4, 4)), target)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_decode_and_ground_truth():
    pred = task().decode(torch.tensor([[0.0, 0.0, 0.0, 3.0, 0.0]]), (8, 8))[0]
    assert pred["count"] == 3 and pred["score"] == pytest.approx(max(pred["probs"]))
    gt = task().display.target_to_prediction(torch.tensor(2))
    assert gt["count"] == 2 and gt["probs"] == [0.0, 0.0, 1.0, 0.0, 0.0]


def test_draw_writes_the_count_at_the_top_right_only():
    image = torch.full((3, 96, 128), 100, dtype=torch.uint8)
    t = task()
    out = t.display.draw(image, {"count": 3, "score": 0.81})
    ys, xs = (out != image).any(0).nonzero(as_tuple=True)
    assert len(ys) > 0 and ys.max() < 96 // 3 and xs.min() >= 128 // 4 and xs.max() >= 124
    assert not torch.equal(out, t.display.draw(image, {"count": 2, "score": 0.81}))
