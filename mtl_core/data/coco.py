"""COCO-format annotations (Lin et al., "Microsoft COCO: Common Objects in Context", ECCV 2014):
boxes and polygon or RLE masks, read without pycocotools.

One json gives five tasks: ``detection`` (the boxes), ``segmentation`` (the masks painted in
file order, later over earlier, class ``c`` as ``c + 1``, ``iscrowd`` regions as 255 = ignore),
``classification`` (the class of the largest object), ``multilabel`` (the classes present) and
``count`` (the number of objects; the count task tops out at ``data.max_objects``). Crowd
annotations are not objects: they only mark ignored pixels.

Missing labels are masked, not dropped: an image without (non-crowd) objects has no
classification label, and one with an object whose ``segmentation`` is absent has no
segmentation (``targets["valid"]``, see :mod:`mtl_core.data.base`).

Each image is read at ``data.image_size`` (height x width) under ``data.resize`` (letterbox
unless set), and its boxes and mask go through the same :class:`~mtl_core.data.resize.Fit`: a box
a crop cuts away is dropped with its object, the letterbox's bands are 255 (ignore) in the mask.

``data.root`` is a folder holding ``annotations.json`` (or the json file itself); images lie
under ``images/<file_name>`` or at ``<file_name>`` relative to the json's folder. The json has
no splits: a fixed 80/10/10 split of its images, by image id (see
:mod:`~mtl_core.data.image_folder`).
"""
from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from mtl_core.config import DataConfig, size_hw
from mtl_core.data.base import SPLITS, DatasetInfo, Sample, Targets, register_dataset
from mtl_core.data.cache import default_cache
from mtl_core.data.image_folder import as_long, cap, check_split, load_image, partition, require_root, resize_policy
from mtl_core.data.resize import Fit, fit
from mtl_core.errors import ConfigError

IGNORE = 255
OBJECT_TASKS = ("classification", "multilabel", "detection", "count")


# ----------------------------------------------------------------------------------- masks
def rle_counts_from_string(s: str | bytes) -> list[int]:
    """Decode COCO's compressed RLE string (``rleFrString`` in the COCO API's ``maskApi.c``).

    Each count is a little-endian varint of 5-bit groups, offset by 48 into printable ASCII;
    0x20 in a group means another follows, 0x10 in the last one is the sign. From the fourth
    count on, the stored value is the difference to the count two places back.
    """
    if isinstance(s, bytes):
        s = s.decode("ascii")
    counts: list[int] = []
    p = 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p, k = p + 1, k + 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)  # sign-extend
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def decode_rle(counts: list[int] | str | bytes, height: int, width: int) -> Tensor:
    """A COCO RLE (alternating runs of 0 and 1, starting with 0, in column-major order) as a bool
    ``(height, width)`` mask; ``counts`` is the uncompressed list or the compressed string."""
    if isinstance(counts, (str, bytes)):
        counts = rle_counts_from_string(counts)
    runs = torch.tensor(counts, dtype=torch.long)
    if int(runs.sum()) != height * width or bool((runs < 0).any()):
        raise ValueError(f"RLE counts sum to {int(runs.sum())}, not height * width = {height * width}")
    values = torch.arange(len(runs)) % 2 == 1  # 0, 1, 0, 1, ...
    flat = torch.repeat_interleave(values, runs)  # (H * W,) column by column
    return flat.view(width, height).t()  # (H, W)


def paint(canvas: Image.Image, segm: Any, value: int) -> bool:
    """Paint an annotation's ``segmentation`` (polygons, or RLE with list or string counts) with
    ``value`` onto the label image ``canvas`` (mode ``I``, the image's size), over what is there;
    False when the annotation has no mask."""
    w, h = canvas.size
    if isinstance(segm, dict) and "counts" in segm:
        rh, rw = (int(v) for v in segm.get("size", (h, w)))
        mask = decode_rle(segm["counts"], rh, rw).to(torch.uint8).mul_(255)  # (rh, rw)
        stencil = Image.frombytes("L", (rw, rh), mask.numpy().tobytes())
        if (rw, rh) != (w, h):  # an RLE stored at another size: bring it to the image's
            stencil = stencil.resize((w, h), Image.Resampling.NEAREST)
        canvas.paste(value, mask=stencil)
        return True
    if isinstance(segm, list) and segm and all(isinstance(v, (int, float)) for v in segm):
        segm = [segm]  # one flat polygon, as some exporters write
    if isinstance(segm, list) and segm and all(isinstance(p, (list, tuple)) for p in segm):
        draw = ImageDraw.Draw(canvas)
        for poly in segm:
            if len(poly) >= 6:  # at least three points
                draw.polygon([(float(poly[i]), float(poly[i + 1])) for i in range(0, len(poly) - 1, 2)], fill=value)
        return True
    return False


def label_map(canvas: Image.Image, size: int | tuple[int, int], policy: str = "stretch", fill: int = IGNORE) -> Tensor:
    """A label image to long ``(H, W)`` (``size``: one number for a square) under ``policy``,
    nearest neighbour at pixel centres (labels never blend); ``fill`` in a letterbox's bands."""
    values = torch.from_numpy(np.array(canvas, dtype=np.int64))  # (h0, w0)
    return fit(tuple(values.shape), size_hw(size), policy).mask(values, fill)


# ----------------------------------------------------------------------------------- objects
def object_targets(boxes: Tensor, labels: Tensor, areas: Tensor, num_classes: int) -> tuple[Targets, dict[str, bool]]:
    """The image-level targets of a set of objects (``boxes (n, 4)``, ``labels (n,)``,
    ``areas (n,)``): detection, classification (the largest), multilabel and count, and which
    of them are labelled (classification is not when there are no objects)."""
    multilabel = torch.zeros(num_classes)
    multilabel[labels] = 1.0
    has = len(labels) > 0
    targets: Targets = {
        "detection": {"boxes": boxes.float().reshape(-1, 4), "labels": labels.long()},
        "classification": labels[areas.argmax()].long() if has else torch.tensor(0),
        "multilabel": multilabel,
        "count": torch.tensor(len(labels)),
    }
    return targets, {"detection": True, "classification": has, "multilabel": True, "count": True}


def scale_boxes(boxes: Tensor, width: int, height: int, size: int | tuple[int, int], policy: str = "stretch") -> Tensor:
    """xyxy pixel boxes of a ``width`` x ``height`` image, in the model's ``size`` (one number: a
    square) under ``policy``; boxes that leave the frame (crop) are dropped (see :meth:`Fit.boxes`)."""
    return fit((height, width), size_hw(size), policy).boxes(boxes.reshape(-1, 4))[0]  # (n, 4)


# ----------------------------------------------------------------------------------- dataset
@lru_cache(maxsize=2)
def _load_json(path: str, mtime: float) -> dict[str, Any]:
    """The parsed json (cached per file and version: COCO's own is ~450 MB, read once not thrice)."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _find_json(cfg: DataConfig) -> Path:
    expected = "a folder holding annotations.json (COCO format) and the images, or the json file itself"
    root = require_root(cfg, expected)
    path = root / "annotations.json" if root.is_dir() else root
    if not path.is_file():
        others = sorted(p.name for p in root.glob("*.json"))[:5]
        hint = f" (found {', '.join(others)}; set data.root to one of them)" if others else ""
        raise ConfigError("data.root", f"{path} does not exist{hint}; set data.root to {expected}")
    return path


@register_dataset("coco")
class CocoDataset:
    """Images and annotations of one COCO json (see the module docstring)."""

    supplies = ("classification", "multilabel", "detection", "segmentation", "count")

    def __init__(self, cfg: DataConfig, split: str, seed: int = 0) -> None:
        check_split(split)
        path = _find_json(cfg)
        try:
            data = _load_json(str(path), os.path.getmtime(path))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError("data.root", f"{path} is not valid JSON ({e})") from None
        keys = ("images", "annotations", "categories")
        missing = [k for k in keys if not isinstance(data, dict) or not isinstance(data.get(k), list)]
        if missing:
            raise ConfigError("data.root", f"{path} is not COCO format: it lacks the list(s) {', '.join(missing)} "
                              "(expected keys images, annotations, categories)")
        cats = sorted(data["categories"], key=lambda c: c["id"])
        if not cats:
            raise ConfigError("data.root", f"{path} lists no categories")
        images = sorted(data["images"], key=lambda im: im["id"])
        if len(images) < len(SPLITS):
            raise ConfigError("data.root", f"{path} lists {len(images)} images; at least {len(SPLITS)} are needed")
        self.cfg, self.split = cfg, split
        self.class_index = {c["id"]: i for i, c in enumerate(cats)}
        self.anns: dict[int, list[dict[str, Any]]] = {}
        for a in data["annotations"]:  # file order kept: later annotations paint over earlier
            self.anns.setdefault(a["image_id"], []).append(a)
        self.json = path
        self.image_dir = self._image_dir(path.parent, images[0]["file_name"])
        self.images = images
        part = partition(len(images))[split]
        self.available = len(part)
        self.indices = cap(part, cfg, split)
        self.info = DatasetInfo(name="coco", class_names=tuple(str(c["name"]) for c in cats), image_size=cfg.image_size,
                                tasks=self.supplies, max_objects=cfg.max_objects)

    @staticmethod
    def _image_dir(base: Path, first: str) -> Path:
        """Where ``file_name`` is relative to: ``<base>/images`` or ``<base>`` (checked on the first image)."""
        for d in (base / "images", base):
            if (d / first).is_file():
                return d
        raise ConfigError("data.root", f"image {first!r} is at neither {base / 'images' / first} nor {base / first}; "
                          "put the images under images/ next to the json")

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Sample:
        im = self.images[self.indices[i]]
        hw, policy, cache = self.cfg.hw, resize_policy(self.cfg), default_cache()
        # the labels follow the image file's own pixels (the json's width and height should match them)
        image, f = load_image(self.image_dir / im["file_name"], hw, policy, cache=cache)  # (3, H, W)
        anns = [a for a in self.anns.get(im["id"], []) if a.get("category_id") in self.class_index]
        objects = [a for a in anns if not a.get("iscrowd", 0) and a["bbox"][2] > 0 and a["bbox"][3] > 0]
        xywh = torch.tensor([a["bbox"] for a in objects], dtype=torch.float).reshape(-1, 4)
        boxes, keep = f.boxes(torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1))  # (n, 4) xyxy, model pixels
        labels = torch.tensor([self.class_index[a["category_id"]] for a in objects], dtype=torch.long)[keep]
        areas = torch.tensor([float(a.get("area") or a["bbox"][2] * a["bbox"][3]) for a in objects])[keep]
        targets, valid = object_targets(boxes, labels, areas, self.info.num_classes)
        variant = f"coco-seg1:{im['id']}:{f.src[0]}x{f.src[1]}:{policy}:{hw[0]}x{hw[1]}"
        seg, _ = cache.get(self.json, variant, lambda: (self._segmentation(anns, f), f.src))
        ok = seg.numel() > 0
        targets["segmentation"] = as_long(seg) if ok else torch.full(hw, IGNORE, dtype=torch.long)
        valid["segmentation"] = ok
        targets["valid"] = valid
        return image, targets

    def _segmentation(self, anns: list[dict[str, Any]], f: Fit) -> Tensor:
        """The label map at the model's size (uint8 or int32, to keep in the cache), painted in
        file order at the image's own size and brought through its Fit; empty when an object has
        no mask."""
        h0, w0 = f.src
        canvas = Image.new("I", (w0, h0), 0)  # 32-bit labels: any number of classes
        for a in anns:
            crowd = bool(a.get("iscrowd", 0))
            value = IGNORE if crowd else self.class_index[a["category_id"]] + 1
            if not paint(canvas, a.get("segmentation"), value) and not crowd:
                return torch.empty(0, dtype=torch.uint8)  # a crowd without a region has nothing to ignore
        seg = label_map(canvas, f.dst, f.policy)
        return seg.to(torch.uint8 if int(seg.max()) <= 255 else torch.int32)
