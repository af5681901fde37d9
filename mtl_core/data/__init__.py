"""Datasets: the built-in procedural scenes and adapters for real data, all yielding one sample type
(see :mod:`mtl_core.data.base`), and their augmentation (``augment``)."""
from __future__ import annotations

from mtl_core.data.base import DatasetInfo, Sample, collate
from mtl_core.registry import Registry, load_plugins

DATASETS: Registry = Registry("dataset")
register_dataset = DATASETS.register

SPLITS = ("train", "val", "test")

from mtl_core.data import coco, image_folder, scenes, seg_folder, torchvision_sets  # noqa: E402,F401  (registers)

DATASETS.prefer("scenes")
load_plugins()


def build_dataset(cfg, split: str, seed: int = 0):
    """The dataset named by ``cfg.dataset`` (a :class:`~mtl_core.config.DataConfig`) for one split.

    Every dataset has ``info`` (:class:`DatasetInfo`), ``__len__`` and ``__getitem__`` returning a
    :data:`Sample`; fast ones also have ``get_batch(indices) -> (images, targets)`` (collated).
    """
    return DATASETS.get(cfg.dataset, "data.dataset")(cfg, split, seed)


__all__ = ["DATASETS", "SPLITS", "DatasetInfo", "Sample", "build_dataset", "collate", "register_dataset"]
