"""mtl_core.views.preview: samples with their ground truth drawn, for the Setup and Data pages."""
from __future__ import annotations

import dataclasses

import numpy as np

from mtl_core.config import AugmentConfig, DataConfig, ExperimentConfig
from mtl_core.views.preview import dataset_summary, preview_samples, sample_captions, sample_overlays

OFF = AugmentConfig(hflip=0.0)


def config(**kw) -> ExperimentConfig:
    return ExperimentConfig(data=DataConfig(image_size=32, train_size=16, val_size=8, test_size=8), **kw)


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
            "depth": False, "normals": False, "count": False}
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
