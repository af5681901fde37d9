"""Multi-label presence on hand-made scores whose AP is worked out in the comments."""
from __future__ import annotations

import math

import pytest
import torch

from mtl_core.data.base import DatasetInfo
from mtl_core.tasks.base import TASKS
from mtl_core.tasks.drawing import colour_for
from mtl_core.tasks.multilabel import MultiLabel, average_precision

INFO = DatasetInfo("test", ("circle", "square", "star"), 32, ("multilabel",))


def task() -> MultiLabel:
    return MultiLabel(INFO)


def confident(present, scale=10.0):
    return (torch.tensor(present, dtype=torch.float32) * 2 - 1) * scale  # +scale present, -scale absent


def test_registered_and_head_shape():
    assert TASKS.get("multilabel") is MultiLabel and MultiLabel.primary == "map"
    assert task().head(32)(torch.randn(2, 32, 16, 16)).shape == (2, 3)


def test_perfect_predictions_score_one():
    truth = [[1, 0, 1], [0, 1, 0], [1, 1, 1]]
    m = task().metrics(confident(truth), torch.tensor(truth, dtype=torch.float32))
    assert m == {"map": 1.0, "exact_match": 1.0, "f1": 1.0}


def test_inverted_predictions_score_zero_decisions():
    truth = [[1, 0, 1], [0, 1, 0]]
    inverted = [[0, 1, 0], [1, 0, 1]]
    m = task().metrics(confident(inverted), torch.tensor(truth, dtype=torch.float32))
    assert m["exact_match"] == 0.0 and m["f1"] == 0.0 and m["map"] < 1.0


def test_hand_computed_average_precision():
    # ranked labels 1, 0, 1, 0: precision 1 at recall 1/2, 2/3 at recall 1 -> AP = 1/2 * 1 + 1/2 * 2/3 = 5/6
    assert average_precision(torch.tensor([0.9, 0.8, 0.7, 0.6]), torch.tensor([1, 0, 1, 0])) == pytest.approx(5 / 6)
    # all scores tied: one threshold with precision 1/2 at recall 1 -> AP 1/2 (not 1, whatever the order)
    assert average_precision(torch.tensor([0.5, 0.5]), torch.tensor([1, 0])) == pytest.approx(0.5)
    assert average_precision(torch.tensor([0.5, 0.5]), torch.tensor([0, 1])) == pytest.approx(0.5)
    assert math.isnan(average_precision(torch.tensor([0.5, 0.2]), torch.tensor([0, 0])))


def test_map_averages_only_classes_with_a_positive():
    # circle: AP 5/6 as above; square: no positive (left out); star: perfectly ranked, AP 1 -> mAP 11/12
    logits = torch.tensor([[0.9, 0.1, 0.9], [0.8, 0.2, 0.8], [0.7, 0.3, 0.1], [0.6, 0.4, 0.2]])
    truth = torch.tensor([[1, 0, 1], [0, 0, 1], [1, 0, 0], [0, 0, 0]], dtype=torch.float32)
    assert task().metrics(logits, truth)["map"] == pytest.approx(11 / 12)


def test_exact_match_and_micro_f1_on_a_constructed_case():
    # image 1 misses star (1 FN), image 2 is right: exact match 1/2; TP 2, FP 0, FN 1 -> F1 4/5
    truth = torch.tensor([[1, 0, 1], [0, 1, 0]], dtype=torch.float32)
    m = task().metrics(confident([[1, 0, 0], [0, 1, 0]]), truth)
    assert m["exact_match"] == 0.5
    assert m["f1"] == pytest.approx(4 / 5)


def test_empty_set_and_no_positives_give_zeros_not_nan():
    assert task().metrics(torch.zeros(0, 3), torch.zeros(0, 3)) == {"map": 0.0, "exact_match": 0.0, "f1": 0.0}
    m = task().metrics(confident([[0, 0, 0]]), torch.zeros(1, 3))
    assert m == {"map": 0.0, "exact_match": 1.0, "f1": 0.0}


def test_loss_decreases_as_the_prediction_gets_closer_and_is_float32_under_autocast():
    truth = torch.tensor([[1, 0, 1]], dtype=torch.float32)
    losses = [float(task().loss(confident([[1, 0, 1]], scale=s), truth)) for s in (0.0, 1.0, 4.0)]
    assert losses[0] == pytest.approx(math.log(2)) and losses[0] > losses[1] > losses[2]
    head = task().head(32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = task().loss(head(torch.randn(2, 32, 4, 4)), torch.ones(2, 3))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_decode_lists_present_classes_most_likely_first():
    pred = task().decode(torch.tensor([[0.5, -3.0, 2.0]]), (10, 10))[0]
    assert pred["labels"] == [2, 0]
    assert pred["probs"][1] == pytest.approx(1 / (1 + math.exp(3)))


def test_draw_shows_chips_above_the_threshold_at_the_bottom_left():
    image = torch.full((3, 96, 96), 100, dtype=torch.uint8)
    t = task()
    pred = {"labels": [2], "probs": [0.1, 0.4, 0.9]}
    out = t.display.draw(image, pred, score_threshold=0.3)
    ys, xs = (out != image).any(0).nonzero(as_tuple=True)
    assert len(ys) > 0 and ys.min() >= 48 and xs.min() <= 2 and xs.max() < 90
    shown = {c for c in range(3) if (out == torch.tensor(colour_for(c), dtype=torch.uint8).view(3, 1, 1)).all(0).any()}
    assert shown == {1, 2}  # square (0.4) and star (0.9); circle (0.1) is below the threshold
    assert torch.equal(t.display.draw(image, pred, score_threshold=0.95), image)


def test_ground_truth_round_trips_to_drawable_prediction():
    gt = task().display.target_to_prediction(torch.tensor([1.0, 0.0, 1.0]))
    assert gt == {"labels": [0, 2], "probs": [1.0, 0.0, 1.0], "truth": True}  # marked: drawn without numbers
