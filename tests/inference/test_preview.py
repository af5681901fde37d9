"""mtl_core.inference.preview: samples with their ground truth drawn, for the Setup and Data pages."""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from mtl_core.config import AugmentConfig, DataConfig, ExperimentConfig
from mtl_core.inference.preview import dataset_summary, enlarge, preview_samples, sample_captions, sample_overlays

OFF = AugmentConfig(hflip=0.0)


def config(**kw) -> ExperimentConfig:
    return ExperimentConfig(data=DataConfig(image_size=32, train_size=16, val_size=8, test_size=8), **kw)


def test_enlarge_moves_boxes_and_masks_with_the_image():
    image = torch.zeros(3, 32, 32)
    image[:, 4:12, 2:10] = 1.0
    mask = torch.zeros(32, 32, dtype=torch.long)
    mask[4:12, 2:10] = 3
    targets = {"detection": {"boxes": torch.tensor([[2.0, 4.0, 10.0, 12.0]]), "labels": torch.tensor([1])},
               "segmentation": mask, "depth": mask[None].float(), "classification": torch.tensor(2)}
    big, out = enlarge(image, targets, size=192)  # a factor of 6
    assert big.shape == (3, 192, 192)
    assert out["detection"]["boxes"].tolist() == [[12.0, 24.0, 60.0, 72.0]]
    assert out["segmentation"].dtype == torch.long and out["segmentation"].shape == (192, 192)
    # the mask's object is exactly where the image's bright square is, and the box frames both
    assert torch.equal(out["segmentation"] == 3, big[0] == 1.0)
    assert torch.equal((out["segmentation"] == 3).nonzero().amin(0), torch.tensor([24, 12]))
    assert out["depth"].shape == (1, 192, 192) and int(out["classification"]) == 2


def test_a_certain_flip_mirrors_the_preview():
    cfg = config(tasks=(), augment=dataclasses.replace(OFF, hflip=1.0))
    for original, augmented in preview_samples(cfg, n=2):
        assert original.shape == (192, 192, 3) and original.dtype == np.uint8
        assert np.array_equal(augmented, original[:, ::-1])


def test_no_augmentation_leaves_the_preview_alone_and_labels_are_drawn():
    plain = preview_samples(config(tasks=(), augment=OFF), n=2)
    drawn = preview_samples(config(tasks=("detection",), augment=OFF), n=2)
    for (original, augmented), (with_boxes, _) in zip(plain, drawn, strict=True):
        assert np.array_equal(original, augmented)
        assert not np.array_equal(original, with_boxes)


def test_per_task_toggles_and_captions():
    cfg = config()
    none = {"classification": False, "multilabel": False, "detection": False, "segmentation": False,
            "depth": False, "count": False}
    bare = sample_overlays(cfg, "val", [0, 1], show=none)
    boxes = sample_overlays(cfg, "val", [0, 1], show={**none, "detection": True})
    assert len(bare) == 2 and not np.array_equal(bare[0], boxes[0])
    assert np.array_equal(bare[0], preview_samples(dataclasses.replace(cfg, tasks=(), augment=OFF), 1, "val")[0][0])
    captions = sample_captions(cfg, "val", [3, 5])
    assert captions[0].startswith("#3 · ") and captions[1].startswith("#5 · ") and "object" in captions[0]


def test_the_summary_lists_classes_sizes_and_tasks():
    s = dataset_summary(config())
    assert s["class_names"] == ["circle", "square", "triangle", "star"]
    assert s["sizes"] == {"train": 16, "val": 8, "test": 8}
    by_name = {t["name"]: t for t in s["tasks"]}
    assert by_name["segmentation"]["available"] and "every pixel" in by_name["segmentation"]["description"]
