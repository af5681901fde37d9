"""Error drawings (``Display.draw_errors``) on hand-made 64x64 images, ground truth drawn without
scores, and the placement of box labels (``place_labels``)."""
from __future__ import annotations

import torch

from mtl_core.data.base import DatasetInfo
from mtl_core.tasks import build_task
from mtl_core.tasks.drawing import (
    HIT,
    MISSED,
    TURBO_LUT,
    WRONG,
    WRONG_PIXEL,
    colormap,
    colour_bar_margin,
    draw_all,
    font_size_for,
    place_labels,
    text_size,
)

INFO = DatasetInfo(name="toy", class_names=("circle", "square", "star"), image_size=64, max_objects=4,
                   depth_max=10.0, tasks=("classification", "count", "multilabel", "detection", "segmentation", "depth"))


def grey(h: int = 64, w: int = 64) -> torch.Tensor:
    return torch.full((3, h, w), 100, dtype=torch.uint8)


def is_colour(image: torch.Tensor, colour) -> torch.Tensor:
    """``(H, W)`` bool: pixels exactly ``colour``."""
    return (image == torch.tensor(colour, dtype=torch.uint8).view(3, 1, 1)).all(0)


def edge(box) -> torch.Tensor:
    """``(64, 64)`` bool: the one-pixel outline of an xyxy box (both ends included, as drawn)."""
    x1, y1, x2, y2 = box
    out = torch.zeros(64, 64, dtype=torch.bool)
    out[y1:y2 + 1, [x1, x2]] = True
    out[[y1, y2], x1:x2 + 1] = True
    return out


def test_detection_errors_colour_hits_false_positives_and_misses_where_they_are():
    task = build_task("detection", INFO)
    truth = {"boxes": torch.tensor([[4.0, 20.0, 20.0, 36.0], [44.0, 44.0, 60.0, 60.0]]), "labels": torch.tensor([0, 2])}
    pred = {"boxes": torch.tensor([[4.0, 20.0, 20.0, 36.0], [30.0, 4.0, 40.0, 14.0], [44.0, 4.0, 60.0, 12.0]]),
            "scores": torch.tensor([0.9, 0.8, 0.1]), "labels": torch.tensor([0, 1, 1])}  # the 0.1 box is below 0.3
    out = task.display.draw_errors(grey(), pred, truth, score_threshold=0.3)
    assert out.shape == (3, 64, 64)
    # labels sit where place_labels puts them (on 64 px they are nearly as wide as the image)
    size = font_size_for(64, 64)
    texts = ["circle 0.90", "square 0.80", "missed star"]
    boxes = [(4, 20, 20, 36), (30, 4, 40, 14), (44, 44, 60, 60)]
    covered = torch.zeros(64, 64, dtype=torch.bool)
    for (x, y), t in zip(place_labels(boxes, [text_size(t, size) for t in texts], (64, 64)), texts, strict=True):
        w, h = text_size(t, size)
        covered[max(0, y - 1):y + h + 1, max(0, x - 1):x + w + 1] = True  # the fill reaches 1 px past
    for box, colour in zip(boxes, (HIT, WRONG, MISSED), strict=True):
        visible = edge(box) & ~covered
        assert visible.sum() > 4
        drawn = is_colour(out, colour)[visible]
        assert drawn.all() if colour != MISSED else 0.4 < drawn.float().mean() < 0.8, colour  # the miss is dashed
    assert is_colour(out, MISSED)[45, 45]  # and one pixel thicker
    low = edge((44, 4, 60, 12)) & ~covered
    assert low.any() and not (is_colour(out, WRONG) | is_colour(out, HIT))[low].any()  # the 0.1 box is not drawn
    assert not is_colour(out, MISSED)[edge(boxes[0]) & ~covered].any()  # the matched truth box is drawn as the hit
    assert task.display.error_legend() == [("hit", "#2ca02c"), ("false positive", "#d62728"), ("missed", "#ffa000")]


def test_segmentation_errors_paint_exactly_the_wrong_pixels_magenta():
    task = build_task("segmentation", INFO)
    truth = torch.zeros(64, 64, dtype=torch.long)
    truth[10:30, 10:30] = 1
    truth[0:4, :] = 255  # ignored: whatever is predicted there is not wrong
    pred = truth.clone()
    pred[0:4, :] = 2
    pred[40:48, 50:60] = 3  # the wrong block
    out = task.display.draw_errors(grey(), {"mask": pred}, {"mask": truth})
    expected = torch.zeros(64, 64, dtype=torch.bool)
    expected[40:48, 50:60] = True
    assert torch.equal(is_colour(out, WRONG_PIXEL), expected)
    assert out[0, 15, 15] != out[0, 50, 5]  # a right class pixel is tinted, the right background is not
    assert task.display.error_legend() == [("wrong pixel", "#ff00ff")]


def test_depth_error_is_a_map_of_abs_rel_with_its_colour_bar_beside():
    task = build_task("depth", INFO)
    truth = torch.full((64, 64), 4.0)
    truth[:8] = 0.0  # unlabelled
    pred = truth.clone()
    pred[:8] = 3.0
    pred[30, 30] = 5.0  # abs-rel 0.25: the middle of the 0 .. 0.5 scale
    pred[40, 40] = 8.0  # abs-rel 1.0: clamped to the top
    out = task.display.draw_errors(grey(), {"depth": pred}, {"depth": truth})
    assert task.display.errors_beside
    assert out.shape == (3, 64, 64 + colour_bar_margin((64, 64), 0.0, 0.5, "abs-rel"))
    assert tuple(out[:, 30, 30].tolist()) == TURBO_LUT[8]
    assert tuple(out[:, 40, 40].tolist()) == TURBO_LUT[-1] and tuple(out[:, 20, 20].tolist()) == TURBO_LUT[0]
    assert torch.equal(out[:, :8, :64], torch.full((3, 8, 64), 128, dtype=torch.uint8))  # unlabelled: grey
    expected = colormap((pred - truth).abs() / truth, 0.0, 0.5)
    assert torch.equal(out[:, 8:, :64], expected[:, 8:])  # the bar sits beside the map, not on it


def test_classification_verdict_is_green_when_right_and_red_when_wrong():
    task = build_task("classification", INFO)
    truth = task.display.target_to_prediction(torch.tensor(2))
    right = task.display.draw_errors(grey(), {"label": 2, "score": 0.93, "probs": [0.02, 0.05, 0.93]}, truth)
    wrong = task.display.draw_errors(grey(), {"label": 0, "score": 0.62, "probs": [0.62, 0.1, 0.28]}, truth)
    assert is_colour(right, HIT).sum() > 20 and not is_colour(right, WRONG).any()
    assert is_colour(wrong, WRONG).sum() > 20 and not is_colour(wrong, HIT).any()
    assert task.display.error_chips({"label": 0, "score": 0.62}, truth) == [("circle ✗ 62% (truth: star)", WRONG)]
    assert task.display.error_chips({"label": 2, "score": 0.93}, truth) == [("star ✓ 93%", HIT)]
    assert task.display.top_k({"label": 0, "score": 0.62, "probs": [0.62, 0.1, 0.28]}, 2) == [("circle", 0.62), ("star", 0.28)]
    count = build_task("count", INFO)
    assert count.display.top_k({"count": 1, "score": 0.7, "probs": [0.1, 0.7, 0.2, 0, 0]}, 2) == [("1 object", 0.7),
                                                                                         ("2 objects", 0.2)]


def test_multilabel_error_chips_tell_hits_false_positives_and_misses():
    task = build_task("multilabel", INFO)
    truth = task.display.target_to_prediction(torch.tensor([1.0, 0.0, 1.0]))
    chips = task.display.error_chips({"labels": [0, 1], "probs": [0.9, 0.7, 0.2]}, truth)
    assert chips == [("circle 0.90", HIT), ("square 0.70", WRONG), ("missed star 0.20", MISSED)]


def test_ground_truth_is_drawn_and_summarised_without_a_score():
    cls, count, multi = (build_task(t, INFO) for t in ("classification", "count", "multilabel"))
    gt = cls.display.target_to_prediction(torch.tensor(2))
    assert "score" not in gt and cls.display.summarize(gt) == "star" and cls.display.chips(gt) == [("star", cls.display.chips(gt)[0][1])]
    assert cls.display.summarize({"label": 2, "score": 0.93}) == "star (93%)"
    # the drawing of a ground truth is the drawing of the bare name, not of "star 1.00"
    assert not torch.equal(cls.display.draw(grey(), gt), cls.display.draw(grey(), {"label": 2, "score": 1.0}))
    assert [t for t, _ in count.display.chips(count.display.target_to_prediction(torch.tensor(3)))] == ["3 objects"]
    assert [t for t, _ in count.display.chips({"count": 3, "score": 0.81})] == ["3 objects 0.81"]
    mgt = multi.display.target_to_prediction(torch.tensor([1.0, 0.0, 1.0]))
    assert [t for t, _ in multi.display.chips(mgt)] == ["circle", "star"] and multi.display.summarize(mgt) == "circle, star"


def test_small_images_get_their_image_level_labels_in_a_band_above():
    tasks = {t: build_task(t, INFO) for t in ("classification", "segmentation")}
    mask = torch.zeros(64, 64, dtype=torch.long)
    mask[20:40, 20:40] = 1
    truth = {"classification": tasks["classification"].display.target_to_prediction(torch.tensor(1)), "segmentation": {"mask": mask}}
    image = grey()
    on_image = draw_all(tasks, image, truth)
    banded = draw_all(tasks, image, truth, band=True)
    band = banded.shape[-2] - 64
    assert on_image.shape == (3, 64, 64) and band > 5
    # below the band: the mask alone; its legend moved into the band with the class, off the objects
    assert torch.equal(banded[:, band:], tasks["segmentation"].display.draw(image, truth["segmentation"], show_legend=False))
    assert not torch.equal(on_image, tasks["segmentation"].display.draw(image, truth["segmentation"], show_legend=False))


def test_a_label_goes_above_its_box_when_there_is_room_else_below():
    assert place_labels([(10, 20, 30, 40)], [(15, 8)], (64, 64)) == [(10, 12)]
    assert place_labels([(10, 0, 30, 40)], [(15, 8)], (64, 64)) == [(10, 40)]  # touches the top: below
    assert place_labels([(0, 0, 64, 64)], [(15, 8)], (64, 64)) == [(0, 0)]  # no room outside: inside, last resort


def test_labels_of_adjacent_boxes_do_not_overlap_each_other_or_another_box():
    boxes = [(10, 20, 30, 40), (31, 20, 50, 40)]
    sizes = [(25, 8), (25, 8)]
    placed = place_labels(boxes, sizes, (64, 64))
    rects = [(x, y, x + w, y + h) for (x, y), (w, h) in zip(placed, sizes, strict=True)]
    a, b = rects
    assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])
    for r in rects:
        assert 0 <= r[0] and r[2] <= 64 and 0 <= r[1] and r[3] <= 64
        assert not any(r[0] < x2 and x1 < r[2] and r[1] < y2 and y1 < r[3] for x1, y1, x2, y2 in boxes)
