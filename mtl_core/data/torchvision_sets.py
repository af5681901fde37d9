"""torchvision's real datasets, read from disk only (``download=False``, never a network call):

- ``pets``: Oxford-IIIT Pet (Parkhi et al., "Cats and dogs", CVPR 2012): breed classification
  (37 classes) and pet segmentation from the trimaps (pet pixels labelled with the breed,
  ``c + 1``; background 0; the trimap's border band 255 = ignore). Train/val: a fixed 90/10
  split of ``trainval``; test: ``test``.
- ``voc``: PASCAL VOC 2012 (Everingham et al., "The PASCAL Visual Object Classes challenge",
  IJCV 2010): detection, segmentation (``SegmentationClass``, for the images that have it;
  masked for the rest), and from the boxes classification (largest object), multilabel and
  count. Train: ``train``; val and test: a fixed half split of ``val``.
- ``celeba``: CelebA, in :mod:`~mtl_core.data.celeba` (its 40 attributes as 40 binary tasks, and
  as one multilabel task), read with these helpers.
- ``cifar10``: CIFAR-10 (Krizhevsky, "Learning multiple layers of features from tiny images",
  2009): classification. Train/val: a fixed 90/10 split of the training batches; test: the test batch.

``data.root`` is torchvision's ``root`` (the folder holding ``oxford-iiit-pet/``, ``VOCdevkit/``,
``celeba/`` or ``cifar-10-batches-py/``); pointing at that inner folder itself works too. When the
data is not there, :class:`~mtl_core.errors.DatasetUnavailableError` says where it was expected
and the command that downloads it on a machine with internet.

Images are read at ``data.image_size`` (height x width) under ``data.resize`` (letterbox unless
set), once (:mod:`~mtl_core.data.cache`); boxes and masks follow each image's
:class:`~mtl_core.data.resize.Fit` (letterbox bands: 255 = ignore in the masks).
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import torchvision.datasets as tvd
from torch import Tensor

from mtl_core.config import DataConfig
from mtl_core.data.base import DatasetInfo, Sample, Targets, register_dataset
from mtl_core.data.cache import default_cache
from mtl_core.data.coco import object_targets
from mtl_core.data.image_folder import cap, check_split, load_image, partition, resize_policy, shuffled
from mtl_core.data.resize import fit
from mtl_core.data.seg_folder import IGNORE, load_mask
from mtl_core.errors import ConfigError, DatasetUnavailableError

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor")


def _download_command(call: str) -> str:
    # torchvision fetches CelebA from Google Drive, which needs gdown
    first = "pip install gdown && " if call.startswith("CelebA") else ""
    return f"{first}python -c \"import torchvision; torchvision.datasets.{call}\""


def locate(cfg: DataConfig, title: str, inner: str, call: str, needs: Sequence[str] = ()) -> Path:
    """torchvision's root for a dataset whose files lie under ``root/inner``, checked on disk.

    ``call`` is the torchvision constructor call with ``{root}`` for the download command;
    ``needs`` are paths under ``root/inner`` that must exist.
    """
    if not cfg.root:
        raise ConfigError("data.root", f"the {cfg.dataset} dataset needs data.root: set it to the folder that holds "
                          f"{inner}/ (to download {title} there: {_download_command(call.format(root='<root>'))})")
    root = Path(cfg.root).expanduser()
    parts = Path(inner).parts
    for m in range(len(parts), 0, -1):  # data.root may name the inner folder (or a part of it)
        if root.parts[-m:] == parts[:m] and (root.parents[m - 1] / inner).is_dir():
            root = root.parents[m - 1]
            break
    base = root / inner
    lacking = [base / n for n in ("", *needs) if not (base / n).exists()]
    if lacking:
        command = _download_command(call.format(root=root))
        raise DatasetUnavailableError(
            f"{title} is not on disk: expected {lacking[0]}" + (f" (with {', '.join(needs)})" if needs else "")
            + f". Nothing is downloaded here; on a machine with internet run: {command} and copy {base} to this machine "
              "(or set data.root to where it is).")
    return root


def open_torchvision(title: str, make, root: Path, call: str) -> Any:
    """``make()`` (a torchvision constructor with ``download=False``), its failures as
    :class:`DatasetUnavailableError` with the download command."""
    try:
        return make()
    except (RuntimeError, OSError) as e:  # "Dataset not found or corrupted", a missing list file ...
        raise DatasetUnavailableError(f"{title} under {root} is incomplete or corrupted ({e}); download it again with: "
                                      f"{_download_command(call.format(root=root))}") from None


# ----------------------------------------------------------------------------------- pets
PETS_CALL = "OxfordIIITPet('{root}', download=True)"


@lru_cache(maxsize=4)
def _pets(root: str, split: str) -> Any:
    return open_torchvision("Oxford-IIIT Pet", lambda: tvd.OxfordIIITPet(root, split=split, download=False),
                            Path(root), PETS_CALL)


@register_dataset("pets")
class PetsDataset:
    """Oxford-IIIT Pet: breed and pet segmentation (see the module docstring)."""

    supplies = ("classification", "segmentation")

    def __init__(self, cfg: DataConfig, split: str, seed: int = 0) -> None:
        check_split(split)
        root = str(locate(cfg, "Oxford-IIIT Pet", "oxford-iiit-pet", PETS_CALL,
                          ("images", "annotations/trainval.txt", "annotations/test.txt")))
        trainval = _pets(root, "trainval")
        self.tv = trainval if split != "test" else _pets(root, "test")
        part = partition(len(trainval), {"train": 0.9, "val": 0.1})[split] if split != "test" \
            else shuffled(range(len(self.tv)))
        self.cfg, self.split, self.available = cfg, split, len(part)
        self.indices = cap(part, cfg, split)
        self.info = DatasetInfo(name="pets", class_names=tuple(trainval.classes), image_size=cfg.image_size,
                                tasks=self.supplies)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Sample:
        j, hw, policy, cache = self.indices[i], self.cfg.hw, resize_policy(self.cfg), default_cache()
        image, _ = load_image(self.tv._images[j], hw, policy, cache=cache)  # (3, H, W)
        label = int(self.tv._labels[j])
        trimap_path = Path(self.tv._segs[j])
        seg = torch.full(hw, IGNORE, dtype=torch.long)
        if trimap_path.is_file():
            trimap = load_mask(trimap_path, hw, policy, IGNORE, cache)  # (H, W): 1 pet, 2 background, 3 border, 255 pad
            seg[trimap == 1] = label + 1
            seg[trimap == 2] = 0
        return image, {"classification": torch.tensor(label), "segmentation": seg,
                       "valid": {"classification": True, "segmentation": trimap_path.is_file()}}


# ----------------------------------------------------------------------------------- voc
VOC_CALL = "VOCDetection('{root}', year='2012', image_set='trainval', download=True)"
VOC_DIR = "VOCdevkit/VOC2012"


@register_dataset("voc")
class VocDataset:
    """PASCAL VOC 2012: boxes and masks (see the module docstring)."""

    supplies = ("classification", "multilabel", "detection", "segmentation", "count")

    def __init__(self, cfg: DataConfig, split: str, seed: int = 0) -> None:
        check_split(split)
        root = locate(cfg, "PASCAL VOC 2012", VOC_DIR, VOC_CALL,
                      ("JPEGImages", "Annotations", "ImageSets/Main/train.txt", "ImageSets/Main/val.txt"))
        image_set = "train" if split == "train" else "val"
        self.tv = open_torchvision("PASCAL VOC 2012", lambda: tvd.VOCDetection(
            str(root), year="2012", image_set=image_set, download=False), root, VOC_CALL)
        seg_dir = root / VOC_DIR / "SegmentationClass"
        self.masks = {p.stem: p for p in seg_dir.glob("*.png")} if seg_dir.is_dir() else {}
        n = len(self.tv.images)
        part = shuffled(range(n)) if split == "train" else partition(n, {"val": 0.5, "test": 0.5})[split]
        self.cfg, self.split, self.available = cfg, split, len(part)
        self.indices = cap(part, cfg, split)
        self.info = DatasetInfo(name="voc", class_names=VOC_CLASSES, image_size=cfg.image_size, tasks=self.supplies,
                                max_objects=cfg.max_objects)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Sample:
        j, hw, policy, cache = self.indices[i], self.cfg.hw, resize_policy(self.cfg), default_cache()
        image_path = Path(self.tv.images[j])
        image, f = load_image(image_path, hw, policy, cache=cache)  # (3, H, W); the labels follow its Fit
        ann = self.tv.parse_voc_xml(ET.parse(self.tv.annotations[j]).getroot())["annotation"]
        objects = [o for o in ann.get("object", []) if o["name"] in VOC_CLASSES]
        # VOC boxes are 1-based inclusive pixel indices: pixel x spans [x - 1, x) in continuous coordinates
        xyxy = torch.tensor([[float(o["bndbox"][k]) for k in ("xmin", "ymin", "xmax", "ymax")] for o in objects])
        boxes = xyxy.reshape(-1, 4) - torch.tensor([1.0, 1.0, 0.0, 0.0])  # (n, 4) in the photo's pixels
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        boxes, keep = f.boxes(boxes)  # the model's pixels; a box a crop cut away is dropped
        labels = torch.tensor([VOC_CLASSES.index(o["name"]) for o in objects], dtype=torch.long)[keep]
        targets, valid = object_targets(boxes, labels, areas[keep], len(VOC_CLASSES))
        mask = self.masks.get(image_path.stem)
        # VOC's mask values are already ours: 0 background, class index + 1, 255 border (and letterbox bands)
        targets["segmentation"] = load_mask(mask, hw, policy, IGNORE, cache) if mask \
            else torch.full(hw, IGNORE, dtype=torch.long)
        valid["segmentation"] = mask is not None
        targets["valid"] = valid
        return image, targets


# ----------------------------------------------------------------------------------- cifar10
CIFAR_CALL = "CIFAR10('{root}', download=True)"


@lru_cache(maxsize=2)
def _cifar(root: str, train: bool) -> tuple[Tensor, Tensor, tuple[str, ...]]:
    """All images ``(N, 3, 32, 32)`` uint8, labels ``(N,)`` and class names of one CIFAR-10 half."""
    tv = open_torchvision("CIFAR-10", lambda: tvd.CIFAR10(root, train=train, download=False), Path(root), CIFAR_CALL)
    images = torch.from_numpy(tv.data).permute(0, 3, 1, 2).contiguous()  # (N, 3, 32, 32)
    return images, torch.tensor(tv.targets, dtype=torch.long), tuple(tv.classes)


@register_dataset("cifar10")
class Cifar10Dataset:
    """CIFAR-10 classification; ``get_batch`` resizes a whole batch at once."""

    supplies = ("classification",)

    def __init__(self, cfg: DataConfig, split: str, seed: int = 0) -> None:
        check_split(split)
        root = str(locate(cfg, "CIFAR-10", "cifar-10-batches-py", CIFAR_CALL, ("data_batch_1", "test_batch")))
        self.images, self.labels, classes = _cifar(root, split != "test")
        n = len(self.labels)
        part = partition(n, {"train": 0.9, "val": 0.1})[split] if split != "test" else shuffled(range(n))
        self.cfg, self.split, self.available = cfg, split, len(part)
        self.indices = torch.tensor(cap(part, cfg, split), dtype=torch.long)
        self.info = DatasetInfo(name="cifar10", class_names=classes, image_size=cfg.image_size, tasks=self.supplies)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Sample:
        images, targets = self.get_batch([i])
        return images[0], {"classification": targets["classification"][0], "valid": {"classification": True}}

    def get_batch(self, indices: Sequence[int] | Tensor) -> tuple[Tensor, Targets]:
        """Images ``(B, 3, H, W)`` (bilinear, antialiased; ``data.resize``, letterbox unless set) and
        collated targets."""
        j = self.indices[torch.as_tensor(indices, dtype=torch.long).reshape(-1)]  # IndexError when out of range
        images = self.images[j].float().div_(255.0)  # (B, 3, 32, 32)
        images = fit(tuple(images.shape[-2:]), self.cfg.hw, resize_policy(self.cfg)).image(images)
        images = images.clamp_(0.0, 1.0)  # (B, 3, H, W)
        return images, {"classification": self.labels[j],
                        "valid": {"classification": torch.ones(len(j), dtype=torch.bool)}}


__all__ = ["PetsDataset", "VocDataset", "Cifar10Dataset", "locate", "open_torchvision"]
