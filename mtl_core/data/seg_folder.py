"""A folder of images with label masks, for semantic segmentation:

    root/images/<stem>.<jpg|png|...>
    root/masks/<stem>.png        palette or grayscale PNG of class indices; 0 = background, 255 = ignore
    root/classes.txt             optional: one class name per line

With ``classes.txt``, mask value ``v`` is the class on line ``v`` when the first line names the
background (``background``, ``_background_``, ``bg``), else the class on line ``v - 1`` (the file
lists only the object classes). Without it, the classes are the mask values found (other than 0
and 255), in increasing order, named by their value. An image without a mask is kept, with its
segmentation masked out (``targets["valid"]``). The split is a fixed 80/10/10 split of the images.

Image and mask are brought to ``data.image_size`` through the same :class:`~mtl_core.data.resize.Fit`
(``data.resize``, letterbox unless set); the letterbox's bands are 255 (ignore) in the mask.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision.datasets.folder import IMG_EXTENSIONS

from mtl_core.config import DataConfig, size_hw
from mtl_core.data.base import SPLITS, DatasetInfo, Sample, register_dataset
from mtl_core.data.cache import ImageCache, default_cache
from mtl_core.data.image_folder import as_long, cap, check_split, load_image, partition, require_root, resize_policy
from mtl_core.data.resize import fit
from mtl_core.errors import ConfigError

IGNORE = 255
BACKGROUND_NAMES = ("background", "_background_", "bg", "__background__")


def read_label_png(path: str | Path, size: int | tuple[int, int] | None = None, policy: str = "stretch",
                   fill: int = IGNORE) -> Tensor:
    """A label image's raw values (palette indices or grey levels) as long ``(h0, w0)``; with
    ``size`` (one number for a square, or ``(H, W)``) brought there under ``policy`` by nearest
    neighbour at pixel centres (labels never blend), ``fill`` in a letterbox's bands."""
    with Image.open(path) as im:
        if im.mode not in ("P", "L", "I", "I;16", "1"):
            raise ConfigError("data.root", f"mask {path} is a {im.mode} image; save class indices as a palette "
                              "or grayscale PNG (one value per pixel)")
        values = torch.from_numpy(np.array(im, dtype=np.int64))  # (h0, w0)
    if size is None:
        return values
    return fit(tuple(values.shape), size_hw(size), policy).mask(values, fill)  # (H, W)


def load_mask(path: str | Path, size: int | tuple[int, int], policy: str = "letterbox", fill: int = IGNORE,
              cache: ImageCache | None = None) -> Tensor:
    """:func:`read_label_png` at ``size`` under ``policy`` as long ``(H, W)``; with ``cache``,
    decoded once. A mask of its image's size goes through the image's own :class:`Fit`."""
    hw = size_hw(size)
    if cache is None:
        return read_label_png(path, hw, policy, fill)

    def make() -> tuple[Tensor, tuple[int, int]]:
        m = read_label_png(path)
        src = (int(m.shape[0]), int(m.shape[1]))
        m = fit(src, hw, policy).mask(m, fill)
        small = torch.uint8 if int(m.min()) >= 0 and int(m.max()) <= 255 else torch.int32
        return m.to(small), src

    return as_long(cache.get(path, f"mask1:{policy}:{hw[0]}x{hw[1]}:fill{fill}", make)[0])


@lru_cache(maxsize=4)
def _values_found(masks: tuple[str, ...], mtime: float) -> tuple[int, ...]:
    """The distinct label values over all masks (cached per folder version: it reads every mask)."""
    found: set[int] = set()
    for m in masks:
        found.update(torch.unique(read_label_png(m)).tolist())
    return tuple(sorted(found))


@register_dataset("seg_folder")
class SegFolderDataset:
    """Images and label masks (see the module docstring)."""

    supplies = ("segmentation",)

    def __init__(self, cfg: DataConfig, split: str, seed: int = 0) -> None:
        check_split(split)
        expected = "a folder holding images/ and masks/ (label PNGs with the same file stems)"
        root = require_root(cfg, expected)
        img_dir, mask_dir = root / "images", root / "masks"
        if not img_dir.is_dir() or not mask_dir.is_dir():
            lacking = " and ".join(str(d) for d in (img_dir, mask_dir) if not d.is_dir())
            raise ConfigError("data.root", f"{lacking} not found; set data.root to {expected}")
        images = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMG_EXTENSIONS)
        masks = {p.stem: p for p in sorted(mask_dir.iterdir()) if p.suffix.lower() == ".png"}
        if len(images) < len(SPLITS):
            raise ConfigError("data.root", f"{img_dir} holds {len(images)} images; at least {len(SPLITS)} are needed")
        if not any(p.stem in masks for p in images):
            raise ConfigError("data.root", f"no mask in {mask_dir} matches an image of {img_dir} "
                              "(a mask is <stem>.png for the image <stem>.<ext>)")
        self.cfg, self.split = cfg, split
        self.items = [(p, masks.get(p.stem)) for p in images]
        names, self.lut = self._classes(root, tuple(str(m) for m in masks.values()), os.path.getmtime(mask_dir))
        part = partition(len(images))[split]
        self.available = len(part)
        self.indices = cap(part, cfg, split)
        self.info = DatasetInfo(name="seg_folder", class_names=names, image_size=cfg.image_size, tasks=self.supplies)

    @staticmethod
    def _classes(root: Path, masks: tuple[str, ...], mtime: float) -> tuple[tuple[str, ...], Tensor]:
        """Class names and the lookup table raw mask value -> target (``c + 1``, 0, or 255)."""
        listing = root / "classes.txt"
        lut = torch.full((65536,), -1, dtype=torch.long)  # -1: a value no class claims
        lut[0], lut[IGNORE] = 0, IGNORE
        if listing.is_file():
            lines = [ln.strip() for ln in listing.read_text(encoding="utf-8").splitlines() if ln.strip()]
            if lines and lines[0].lower() in BACKGROUND_NAMES:
                lines = lines[1:]
            if not lines:
                raise ConfigError("data.root", f"{listing} names no classes; list one class name per line")
            lut[1:len(lines) + 1] = torch.arange(1, len(lines) + 1)
            return tuple(lines), lut
        values = [v for v in _values_found(masks, mtime) if v not in (0, IGNORE)]
        if not values:
            raise ConfigError("data.root", f"the masks in {root / 'masks'} hold only 0 (background) and 255 "
                              "(ignore); label objects with values 1..254")
        lut[torch.tensor(values)] = torch.arange(1, len(values) + 1)  # compact: no empty classes
        return tuple(f"class {v}" for v in values), lut

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Sample:
        image_path, mask_path = self.items[self.indices[i]]
        hw, policy, cache = self.cfg.hw, resize_policy(self.cfg), default_cache()
        image, _ = load_image(image_path, hw, policy, cache=cache)  # (3, H, W)
        if mask_path is None:
            return image, {"segmentation": torch.full(hw, IGNORE, dtype=torch.long),
                           "valid": {"segmentation": False}}
        raw = load_mask(mask_path, hw, policy, IGNORE, cache)  # (H, W); 255 in the letterbox's bands
        seg = self.lut[raw.clamp(0, len(self.lut) - 1)]
        if bool((seg < 0).any()):
            bad = int(raw[seg < 0][0])
            raise ConfigError("data.root", f"mask {mask_path} has value {bad}, but classes.txt names only "
                              f"{self.info.num_classes} classes (values 1..{self.info.num_classes}); add names or relabel")
        return image, {"segmentation": seg, "valid": {"segmentation": True}}
