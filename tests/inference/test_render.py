"""Drawing for the pages: enlargement keeps predictions on their pixels, overlays follow the
tasks' drawing order, and every line of words comes from the task itself."""
from __future__ import annotations

import torch

from mtl_core.data.base import DatasetInfo
from mtl_core.tasks import TASKS, build_task
from mtl_core.tasks.drawing import colour_bar_margin, draw_all
from mtl_core.views.render import describe, enlarge, map_image, resize_prediction

INFO = DatasetInfo(name="t", class_names=("circle", "square", "triangle"), image_size=32, max_objects=4,
                   tasks=("classification", "detection", "segmentation", "depth", "count", "multilabel"), depth_max=10.0)


def test_small_images_are_enlarged_with_their_predictions_so_labels_stay_readable():
    image = torch.zeros(3, 32, 40, dtype=torch.uint8)
    image[:, 0, 0] = 255
    preds = {"detection": {"boxes": torch.tensor([[1.0, 2.0, 3.0, 4.0]]), "labels": torch.tensor([0])},
             "segmentation": {"mask": torch.eye(32, 40, dtype=torch.long)}, "classification": {"label": 1}}
    big, scaled = enlarge(image, preds, 256)
    assert big.shape == (3, 256, 320)  # factor 8: the short side reaches 256
    assert big[:, :8, :8].eq(255).all() and big[:, 8, 8].eq(0).all()  # pixels stay square and crisp
    assert scaled["detection"]["boxes"].tolist() == [[8.0, 16.0, 24.0, 32.0]]
    assert scaled["segmentation"]["mask"].shape == (256, 320) and scaled["segmentation"]["mask"][15, 15] == 1
    assert scaled["classification"] == {"label": 1}
    assert enlarge(big, scaled, 256)[0] is big  # large enough already: unchanged


def test_enlarge_by_a_factor_moves_boxes_and_masks_with_the_image():
    image = torch.zeros(3, 32, 32)
    image[:, 4:12, 2:10] = 1.0
    mask = torch.zeros(32, 32, dtype=torch.long)
    mask[4:12, 2:10] = 3
    preds = {"detection": {"boxes": torch.tensor([[2.0, 4.0, 10.0, 12.0]]), "labels": torch.tensor([1])},
             "segmentation": {"mask": mask}, "depth": {"depth": mask[None].float()}, "classification": {"label": 2}}
    big, out = enlarge(image, preds, factor=6)
    assert big.shape == (3, 192, 192)
    assert out["detection"]["boxes"].tolist() == [[12.0, 24.0, 60.0, 72.0]]
    seg = out["segmentation"]["mask"]
    assert seg.dtype == torch.long and seg.shape == (192, 192)
    # the mask's object is exactly where the image's bright square is, and the box frames both
    assert torch.equal(seg == 3, big[0] == 1.0)
    assert torch.equal((seg == 3).nonzero().amin(0), torch.tensor([24, 12]))
    assert out["depth"]["depth"].shape == (1, 192, 192) and out["classification"] == {"label": 2}


def test_a_downscaled_map_keeps_its_labels_and_boxes_follow_each_axis():
    mask = torch.zeros(40, 80, dtype=torch.long)
    mask[:, 40:] = 2
    boxes = torch.tensor([[40.0, 0.0, 80.0, 40.0]])
    out = resize_prediction({"mask": mask, "boxes": boxes}, (40, 80), (20, 20))
    assert out["mask"].shape == (20, 20) and set(out["mask"].unique().tolist()) == {0, 2}  # no blended labels
    assert out["boxes"].tolist() == [[10.0, 0.0, 20.0, 20.0]]


def test_overlays_follow_the_tasks_drawing_order_whatever_the_dict_order():
    drawn: list[str] = []

    class Recorder:
        def __init__(self, name: str, order: int) -> None:
            self.name, self.draw_order = name, order
            self.display = self  # a task and its display in one

        def draw(self, image, prediction, opacity=0.5, score_threshold=0.3):
            drawn.append(self.name)
            return image

    tasks = {"labels": Recorder("labels", 50), "map": Recorder("map", 0), "boxes": Recorder("boxes", 20)}
    draw_all(tasks, torch.zeros(3, 4, 4, dtype=torch.uint8), {"labels": {}, "boxes": {}, "map": {}})
    assert drawn == ["map", "boxes", "labels"]
    order = sorted(TASKS.available(), key=lambda t: TASKS.get(t).display_type().draw_order)
    assert order.index("depth") < order.index("segmentation") < order.index("detection") < order.index("classification")


def test_every_registered_task_describes_draws_and_summarises_its_own_ground_truth():
    targets = {"classification": torch.tensor(1), "count": torch.tensor(2), "multilabel": torch.tensor([1.0, 0.0, 1.0]),
               "detection": {"boxes": torch.tensor([[2.0, 2.0, 20.0, 20.0]]), "labels": torch.tensor([2])},
               "segmentation": torch.ones(32, 32, dtype=torch.long), "depth": torch.full((1, 32, 32), 4.0),
               "normals": torch.tensor([0.0, 0.6, 0.8])[:, None, None].expand(3, 32, 32)}
    image = torch.full((3, 32, 32), 128, dtype=torch.uint8)
    for name in TASKS.available():
        task = build_task(name, INFO)
        assert task.description and task.title, name
        truth = task.display.target_to_prediction(targets[task.target_name()])
        out = task.display.draw(image, truth)
        assert out.shape == image.shape and out.dtype == torch.uint8
        assert isinstance(task.display.summarize(truth), str) and task.display.summarize(truth)
    tasks = {t: build_task(t, INFO) for t in ("classification", "count", "detection", "segmentation", "depth", "normals",
                                              "multilabel")}
    truth = {t: task.display.target_to_prediction(targets[t]) for t, task in tasks.items()}
    lines = describe(tasks, truth)
    assert "Classification: square" in lines  # a ground truth has no score to show
    assert "Object count: 2 objects" in lines
    assert "Detection: 1 box: triangle" in lines
    assert "Segmentation: circle 100%" in lines
    assert "Depth: from 4.00 to 4.00" in lines
    assert "Normals: mean tilt 37°, leaning up" in lines
    assert "Multi-label: circle, triangle" in lines
    assert tasks["segmentation"].display.legend(truth["segmentation"]) == [("circle", "#1f77b4")]
    assert tasks["classification"].display.caption(truth["classification"]) == "square"
    assert tasks["count"].display.caption(truth["count"]) == "2 objects"


def test_a_map_shown_beside_is_the_tasks_opaque_overlay_at_most_max_side():
    depth = build_task("depth", INFO)
    image = torch.zeros(3, 400, 800, dtype=torch.uint8)
    pred = {"depth": torch.linspace(0, 10, 800).expand(400, 800).clone()}
    shown = map_image(depth, image, pred, max_side=200)
    assert shown.shape == (3, 100, 200 + colour_bar_margin((100, 200), 0.0, depth.depth_max))  # its colour bar beside
    # opaque: the near (left) end is the colour map's first colour, not the black image
    assert shown[:, 50, 60].tolist() != [0, 0, 0]
