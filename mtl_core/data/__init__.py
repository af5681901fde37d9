"""Datasets: the built-in procedural scenes and adapters for real data, all yielding one sample type
(see :mod:`mtl_core.data.base`, which also holds the registry), and their augmentation (``augment``)."""
from __future__ import annotations

from mtl_core.data import celeba, coco, image_folder, manifest, mtan_npy, scenes, seg_folder, torchvision_sets  # noqa: F401  (registers)
from mtl_core.data.base import DATASETS, SPLITS, DatasetInfo, Sample, build_dataset, collate, register_dataset
from mtl_core.registry import load_plugins

DATASETS.prefer("scenes")
load_plugins()

__all__ = ["DATASETS", "SPLITS", "DatasetInfo", "Sample", "build_dataset", "collate", "register_dataset"]
