"""Classification on hand-made logits, plus the shared text helpers it draws with
(label_text, legend, colour_for from mtl_core.tasks.drawing)."""
from __future__ import annotations

import math

import pytest
import torch

from mtl_core.data.base import DatasetInfo
from mtl_core.tasks.base import TASKS
from mtl_core.tasks.classification import Classification
from mtl_core.tasks.drawing import PALETTE, colour_for, label_text, legend

NAMES = ("star", "circle", "square", "triangle", "cross")
INFO = DatasetInfo("test", NAMES, 32, ("classification",))


def task(names=NAMES) -> Classification:
    return Classification(DatasetInfo("test", names, 32, ("classification",)))


def one_hot_logits(labels, k=len(NAMES), scale=10.0):
    return torch.nn.functional.one_hot(torch.tensor(labels), k).float() * scale  # (N, K)


def changed(a, b):
    return (a != b).any(dim=0)  # (H, W)


def test_registered_under_its_name():
    assert TASKS.get("classification") is Classification
    assert Classification.primary == "accuracy" and Classification.higher_is_better


@pytest.mark.parametrize("hw", [(16, 16), (5, 7), (1, 1)])
def test_head_gives_one_logit_per_class_at_any_feature_size(hw):
    head = task().head(32)
    assert head(torch.randn(2, 32, *hw)).shape == (2, len(NAMES))


def test_perfect_predictions_score_one_and_wrong_ones_zero():
    labels = [0, 3, 1, 4]
    t = task()
    assert t.metrics(one_hot_logits(labels), torch.tensor(labels)) == {"accuracy": 1.0, "top3": 1.0}
    wrong = t.metrics(one_hot_logits([1, 0, 2, 0]), torch.tensor(labels))
    assert wrong["accuracy"] == 0.0


def test_top3_on_a_constructed_case():
    # the target ranks 1st, 2nd and 4th of 5 in the three rows: top-1 1/3, top-3 2/3
    logits = torch.tensor([[5.0, 4, 3, 2, 1],
                           [5.0, 4, 3, 2, 1],
                           [5.0, 4, 3, 2, 1]])
    m = task().metrics(logits, torch.tensor([0, 1, 3]))
    assert m["accuracy"] == pytest.approx(1 / 3)
    assert m["top3"] == pytest.approx(2 / 3)


def test_top3_with_two_classes_is_top2():
    t = task(("a", "b"))
    m = t.metrics(torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([0, 1]))
    assert m == {"accuracy": 0.5, "top3": 1.0}


def test_empty_set_gives_zeros_not_nan():
    m = task().metrics(torch.zeros(0, len(NAMES)), torch.zeros(0, dtype=torch.long))
    assert m == {"accuracy": 0.0, "top3": 0.0}


def test_loss_decreases_as_the_right_class_gets_more_likely():
    t, target = task(), torch.tensor([2, 0])
    losses = [float(t.loss(one_hot_logits([2, 0], scale=s), target)) for s in (0.0, 1.0, 3.0)]
    assert losses[0] == pytest.approx(math.log(len(NAMES)))  # uniform guess
    assert losses[0] > losses[1] > losses[2]


def test_loss_is_float32_under_bf16_autocast():
    t = task()
    head = t.head(32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(torch.randn(2, 32, 4, 4))
        loss = t.loss(out, torch.tensor([1, 2]))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()


def test_decode_gives_label_score_and_probabilities():
    preds = task().decode(torch.tensor([[0.0, 2.0, 0.0, 0.0, 0.0], [3.0, 0.0, 0.0, 0.0, 0.0]]), (10, 20))
    assert [p["label"] for p in preds] == [1, 0]
    assert sum(preds[0]["probs"]) == pytest.approx(1.0)
    expected = math.exp(2) / (math.exp(2) + 4)
    assert preds[0]["score"] == pytest.approx(expected)


def test_draw_puts_the_label_in_its_class_colour_at_the_top_left_only():
    image = torch.full((3, 96, 128), 100, dtype=torch.uint8)
    out = task().display.draw(image, {"label": 2, "score": 0.93, "probs": []})
    assert out.shape == image.shape and out.dtype == torch.uint8
    ys, xs = changed(out, image).nonzero(as_tuple=True)
    assert len(ys) > 50
    assert ys.max() < 96 // 3 and xs.min() <= 2 and xs.max() < 128 * 3 // 4
    # the label's box is filled with the class colour: its most frequent changed colour
    colours = [tuple(c) for c in out[:, ys, xs].T.tolist()]
    assert max(set(colours), key=colours.count) == colour_for(2)


def test_draw_of_ground_truth_shows_the_true_class():
    t = task()
    image = torch.full((3, 64, 64), 100, dtype=torch.uint8)
    gt = t.display.target_to_prediction(torch.tensor(3))
    assert gt["label"] == 3 and gt["probs"][3] == 1.0
    assert not torch.equal(t.display.draw(image, gt), t.display.draw(image, t.display.target_to_prediction(torch.tensor(1))))


def test_palette_is_fixed_and_wraps():
    assert colour_for(0) == PALETTE[0] and colour_for(len(PALETTE)) == PALETTE[0]
    assert len(set(PALETTE)) == len(PALETTE)


@pytest.mark.parametrize("corner", ["top-left", "top-right", "bottom-left", "bottom-right"])
def test_label_text_stays_in_its_corner(corner):
    image = torch.full((3, 80, 120), 100, dtype=torch.uint8)
    ys, xs = changed(label_text(image, "3 objects", (200, 30, 30), corner=corner), image).nonzero(as_tuple=True)
    assert len(ys) > 0
    top, left = corner.startswith("top"), corner.endswith("left")
    assert (ys.max() < 40) if top else (ys.min() >= 40)
    assert (xs.max() < 80) if left else (xs.min() >= 40)


def test_legend_stacks_one_chip_per_entry():
    image = torch.full((3, 120, 120), 100, dtype=torch.uint8)
    one = changed(legend(image, [("circle", (200, 0, 0))]), image)
    two = changed(legend(image, [("circle", (200, 0, 0)), ("square", (0, 0, 200))]), image)
    rows_one, rows_two = one.any(dim=1).sum(), two.any(dim=1).sum()
    assert rows_two > 1.5 * rows_one  # a second row, not drawn over the first
    assert torch.equal(legend(image, []), image)


def test_builtin_font_works_without_a_font_file(monkeypatch):
    import mtl_core.tasks.drawing as drawing

    monkeypatch.setattr(drawing, "font_path", lambda: None)
    drawing._font.cache_clear()
    try:
        image = torch.full((3, 64, 64), 100, dtype=torch.uint8)
        assert changed(label_text(image, "star 0.93", (0, 100, 0)), image).any()
    finally:
        drawing._font.cache_clear()
