"""Training-split augmentation on ``torchvision.transforms.v2`` with ``tv_tensors``.

Geometric transforms (flips, random resized crop, rotation) move the image, the detection boxes,
the segmentation mask, the depth map and the surface normals together; photometric ones (colour
jitter, blur, noise, random erasing) touch only the image. Areas a rotation exposes are filled with
0 in the image, 255 (ignore) in segmentation and 0 (no label) in depth and normals. Normals also
turn with the image: a horizontal flip negates their ``x`` component, a vertical flip their
``y``, a rotation turns their ``(x, y)`` by its angle (see :class:`NormalMap`). Boxes that leave
the image, or shrink below 1 px, are dropped with their labels. ``classification``, ``multilabel`` and ``count`` pass
through unchanged.

Images stay in ``[0, 1]`` and the same size: normalisation is always done inside the model, never
here, so an all-off config is the identity and predictions never depend on the augmenter.

torchvision draws its random parameters from torch's global RNG; pass a ``torch.Generator``
(e.g. :func:`generator_for` ``(seed, step)``) to make a call deterministic without disturbing the
global RNG, so the same config and seed give the same run, resumed or not.

Methods: flips and crops, Krizhevsky et al. 2012 (AlexNet); random resized crop, Szegedy et al.
2015 (Inception); colour jitter, Howard 2013 / Chen et al. 2020 (SimCLR, also Gaussian blur);
random erasing, Zhong et al. 2020, https://arxiv.org/abs/1708.04896.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from mtl_core.config import AugmentConfig, size_hw
from mtl_core.data.base import Targets, pad_detection, unpad_detection
from mtl_core.data.resize import stretch_normals
from mtl_core.errors import ConfigError
from mtl_core.isolation import seeded_global_rng

IGNORE_INDEX = 255  # segmentation label for "no data" (matches data/base.py)
MIN_BOX_SIZE = 1.0  # px; thinner boxes are degenerate after a crop or rotation
ERASE_VALUE = 0.5  # mid-grey: what torchvision's value=0 means on a normalised image


class ZeroFillMask(tv_tensors.Mask):
    """A dense target that moves like a mask (nearest: no invented depths or ids across object
    edges) but whose "no data" value is 0, so it needs its own type for the per-type ``fill``."""


class NormalMap(tv_tensors.Mask):
    """Unit surface normals ``(B, 3, H, W)``, ``x`` right, ``y`` up, ``z`` towards the camera (see
    :mod:`mtl_core.data.base`): moved like a mask (nearest: every pixel keeps a unit vector of
    the map, none is invented between two surfaces), filled with 0 (no label) like depth, and
    turned with the image by the kernels registered below for flips, rotation and a resize that
    changes the aspect (a crop only cuts, so a mask's kernel serves)."""


def _turned(normals: Tensor, cos: float, sin: float, flip_x: float = 1.0, flip_y: float = 1.0) -> NormalMap:
    """Each vector's ``(x, y)`` mirrored by ``flip_x``, ``flip_y`` (±1) then turned
    counter-clockwise by the angle of ``(cos, sin)``; ``z`` is kept. A zero vector stays zero."""
    n = normals.as_subclass(Tensor)
    x, y = n[..., 0, :, :] * flip_x, n[..., 1, :, :] * flip_y  # (..., H, W) each
    return NormalMap(torch.stack([x * cos - y * sin, x * sin + y * cos, n[..., 2, :, :]], dim=-3))


@F.register_kernel(F.horizontal_flip, NormalMap)
def _normals_hflip(normals: Tensor, *args: Any, **kwargs: Any) -> NormalMap:
    """Mirrored left to right: a surface that faced right now faces left (``x`` negated)."""
    return _turned(F.horizontal_flip_mask(normals.as_subclass(Tensor)), 1.0, 0.0, flip_x=-1.0)


@F.register_kernel(F.vertical_flip, NormalMap)
def _normals_vflip(normals: Tensor, *args: Any, **kwargs: Any) -> NormalMap:
    """Mirrored top to bottom: a surface that faced up now faces down (``y`` negated)."""
    return _turned(F.vertical_flip_mask(normals.as_subclass(Tensor)), 1.0, 0.0, flip_y=-1.0)


@F.register_kernel(F.resize, NormalMap)
def _normals_resize(normals: Tensor, size: list[int] | None, interpolation: Any = v2.InterpolationMode.NEAREST_EXACT,
                    max_size: int | None = None, **kwargs: Any) -> NormalMap:
    """Resized as a mask; where the two sides scale differently (a crop of another aspect brought
    back to the image's), the surfaces are stretched too (:func:`~mtl_core.data.resize.stretch_normals`)."""
    n = normals.as_subclass(Tensor)
    out = F.resize_mask(n, size, interpolation=interpolation, max_size=max_size)
    return NormalMap(stretch_normals(out, out.shape[-1] / n.shape[-1], out.shape[-2] / n.shape[-2]))


@F.register_kernel(F.rotate, NormalMap)
def _normals_rotate(normals: Tensor, angle: float, interpolation: Any = None, expand: bool = False,
                    center: list[float] | None = None, fill: Any = None, **kwargs: Any) -> NormalMap:
    """Turned counter-clockwise by ``angle`` degrees as torchvision turns the image (nearest, the
    exposed corners 0 = no label), and every vector turned by the same angle about ``z``."""
    moved = F.rotate_mask(normals.as_subclass(Tensor), angle, expand=expand, center=center, fill=fill)
    a = math.radians(angle)
    return _turned(moved, math.cos(a), math.sin(a))


# dense targets moved with the image, as (batched) tv_tensors: segmentation (B, H, W) fills 255
# (ignore); depth (B, 1, H, W) and normals (B, 3, H, W) fill 0 (no label); instances (B, H, W),
# the optional ids of data/scenes.py (j + 1 = box j of the detection list), fill 0 and are
# renumbered as boxes drop
DENSE: dict[str, type[tv_tensors.Mask]] = {"segmentation": tv_tensors.Mask, "depth": ZeroFillMask, "normals": NormalMap,
                                           "instances": ZeroFillMask}
PASSED_THROUGH = ("classification", "multilabel", "count", "binary", "regression")  # unchanged by every transform


class _ResizedCrop(v2.RandomResizedCrop):
    """``RandomResizedCrop`` whose masks use nearest-*exact* resampling: torchvision's masks use
    "nearest", which samples pixel corners, not centres, and shifts masks by up to half an output
    pixel against the bilinear image and the exactly scaled boxes."""

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.Mask):
            crop = F.crop(inpt, **params)
            return F.resize(crop, self.size, interpolation=v2.InterpolationMode.NEAREST_EXACT)
        return super().transform(inpt, params)


def _check(cfg: AugmentConfig) -> None:
    """Raise :class:`ConfigError` naming the first out-of-range field."""
    for name in ("hflip", "vflip", "crop", "blur", "erasing", "color_jitter"):
        v = getattr(cfg, name)
        if not 0.0 <= v <= 1.0:
            raise ConfigError(f"augment.{name}", f"must be between 0 and 1 (0 = off), got {v}")
    if not 0.0 <= cfg.rotation <= 180.0:
        raise ConfigError("augment.rotation", f"must be between 0 and 180 degrees (0 = off), got {cfg.rotation}")
    if not 0.0 <= cfg.noise <= 1.0:
        raise ConfigError("augment.noise", f"noise std must be between 0 and 1 (0 = off), got {cfg.noise}")
    if not 0.0 < cfg.crop_scale_min <= 1.0:
        raise ConfigError("augment.crop_scale_min", f"must be in (0, 1], the smallest kept area fraction; got {cfg.crop_scale_min}")
    if cfg.blur > 0 and cfg.blur_sigma <= 0:
        raise ConfigError("augment.blur_sigma", f"must be > 0 when blur is on, got {cfg.blur_sigma}")


def is_identity(cfg: AugmentConfig) -> bool:
    """True when every transform is off, so the engine can skip augmentation."""
    return all(getattr(cfg, n) == 0 for n in ("hflip", "vflip", "crop", "rotation", "color_jitter", "noise", "blur", "erasing"))


def describe(cfg: AugmentConfig) -> list[str]:
    """Human-readable active transforms, in the order they run (empty when all are off).
    Normalisation is not listed: the model always does it."""
    out = []
    if cfg.hflip:
        out.append(f"horizontal flip (p={cfg.hflip:g})")
    if cfg.vflip:
        out.append(f"vertical flip (p={cfg.vflip:g})")
    if cfg.crop:
        out.append(f"random resized crop (p={cfg.crop:g}, area {cfg.crop_scale_min:g}-1)")
    if cfg.rotation:
        out.append(f"rotation (±{cfg.rotation:g}°)")
    if cfg.color_jitter:
        out.append(f"colour jitter (strength {cfg.color_jitter:g})")
    if cfg.blur:
        out.append(f"Gaussian blur (p={cfg.blur:g}, σ≤{cfg.blur_sigma:g})")
    if cfg.noise:
        out.append(f"Gaussian noise (σ={cfg.noise:g})")
    if cfg.erasing:
        out.append(f"random erasing (p={cfg.erasing:g})")
    return out


def generator_for(seed: int, step: int) -> torch.Generator:
    """A generator for one training step: depends only on ``(seed, step)``, so a resumed run
    augments step ``k`` exactly as an uninterrupted one."""
    return torch.Generator().manual_seed(((seed & 0xFFFFFFFF) << 32) | (step & 0xFFFFFFFF))


@contextmanager
def _rng_from(generator: torch.Generator | None, device: torch.device) -> Iterator[None]:
    """Run torchvision's global-RNG draws from a seed taken from ``generator`` (the global state
    as it is when None), alone among the threads that use the global generator, which is
    restored afterwards (see :mod:`mtl_core.isolation`). The noise is drawn on the image's
    device, so that device's generator is seeded too."""
    seed = None if generator is None else int(torch.randint(0, 2**62, (1,), generator=generator))
    with seeded_global_rng(seed, device):
        yield


def _renumber(instances: Tensor, valid: tuple[Tensor, ...]) -> Tensor:
    """Instance ids after boxes were dropped: id ``j + 1`` of a kept box becomes its new position
    + 1, a dropped box's pixels become background (0). ``instances (b, H, W)``; ``valid`` per image."""
    width = max([len(v) for v in valid] + [int(instances.max())]) + 1
    table = torch.zeros(len(valid), width, dtype=instances.dtype, device=instances.device)  # (b, old id + 1)
    for i, v in enumerate(valid):
        table[i, 1:len(v) + 1] = torch.cumsum(v, 0) * v
    return table.gather(1, instances.flatten(1)).view_as(instances)


class Augmenter:
    """Augments one sample (``__call__``) or a collated batch (:meth:`augment_batch`)."""

    def __init__(self, cfg: AugmentConfig, image_size: int | tuple[int, int], groups: int = 8,
                 kinds: Mapping[str, str] | None = None) -> None:
        """``image_size``: the images' size, one number for a square or ``(height, width)``;
        ``kinds``: target key -> its kind, for keys that are not a kind's own name."""
        _check(cfg)
        self.cfg = cfg
        # target key -> its kind (a label table's column "mask" is a segmentation); a key not
        # named is its own kind, as the scenes' targets are
        self.kinds = dict(kinds or {})
        self.image_size = image_size
        self.hw = size_hw(image_size)
        self.groups = max(1, groups)  # batch path: one random draw per group of samples
        self._geometric: dict[tuple[int, int], v2.Compose | None] = {}
        self._photometric = self._build_photometric(cfg, image_size)

    @property
    def is_identity(self) -> bool:
        return is_identity(self.cfg)

    def kind(self, key: str) -> str:
        """The kind of the target under ``key``."""
        return self.kinds.get(key, key)

    def detection_key(self, targets: Targets) -> str | None:
        """The key of the boxes among ``targets`` (at most one detection target is moved)."""
        keys = [k for k in targets if self.kind(k) == "detection"]
        if len(keys) > 1:
            raise ValueError(f"{len(keys)} detection targets ({', '.join(keys)}): geometric augmentation moves one; "
                             "turn flips, crops and rotation off, or learn one of them")
        return keys[0] if keys else None

    def _geometric_for(self, size: tuple[int, int]) -> v2.Compose | None:
        """The geometric pipeline for one image size (the crop resizes back to it)."""
        if size not in self._geometric:
            cfg, t = self.cfg, []
            if cfg.hflip:
                t.append(v2.RandomHorizontalFlip(cfg.hflip))
            if cfg.vflip:
                t.append(v2.RandomVerticalFlip(cfg.vflip))
            if cfg.crop:
                crop = _ResizedCrop(size, scale=(cfg.crop_scale_min, 1.0), ratio=(3 / 4, 4 / 3))
                t.append(v2.RandomApply([crop], p=cfg.crop))
            if cfg.rotation:
                fill = {tv_tensors.Image: 0.0, tv_tensors.Mask: IGNORE_INDEX, ZeroFillMask: 0.0, NormalMap: 0.0, "others": 0.0}
                t.append(v2.RandomRotation(cfg.rotation, interpolation=v2.InterpolationMode.BILINEAR, fill=fill))
            self._geometric[size] = v2.Compose(t) if t else None
        return self._geometric[size]

    @staticmethod
    def _build_photometric(cfg: AugmentConfig, image_size: int | tuple[int, int]) -> v2.Compose | None:
        t: list[v2.Transform] = []
        if cfg.color_jitter:
            # one SimCLR-style strength; no hue: it can change a colour-coded class, and its RGB->HSV
            # round trip costs 6x brightness + contrast + saturation together
            s = cfg.color_jitter
            t.append(v2.ColorJitter(brightness=s, contrast=s, saturation=s))
        if cfg.blur:
            sigma = cfg.blur_sigma
            side = min(size_hw(image_size))
            kernel = min(2 * math.ceil(3 * sigma) + 1, side - (1 - side % 2))  # odd, fits the image's short side
            t.append(v2.RandomApply([v2.GaussianBlur(max(kernel, 1), sigma=(min(0.1, sigma), sigma))], p=cfg.blur))
        if cfg.noise:
            t.append(v2.GaussianNoise(sigma=cfg.noise, clip=True))  # clip keeps [0, 1]
        if cfg.erasing:
            t.append(v2.RandomErasing(p=cfg.erasing, value=ERASE_VALUE))
        return v2.Compose(t) if t else None

    def _apply_group(self, images: Tensor, targets: Targets, det: list[dict[str, Tensor]] | None) -> tuple[Tensor, Targets, list[dict[str, Tensor]] | None]:
        """One random draw applied to a group: ``images (b, 3, H, W)``, stacked dense targets,
        ``det`` one ``{"boxes", "labels"}`` per image (not padded)."""
        b, _, h, w = images.shape
        out = dict(targets)
        geometric = self._geometric_for((h, w))
        if geometric is not None:
            inputs: dict[str, Any] = {"image": tv_tensors.Image(images)}  # (b, 3, H, W)
            inputs.update({k: DENSE[self.kind(k)](v) for k, v in targets.items()})  # (b, H, W) or (b, 1, H, W)
            if det is not None:
                # every box of the group on one canvas: the same transform moves them all
                counts = torch.tensor([len(d["labels"]) for d in det], device=images.device)
                owner = torch.repeat_interleave(torch.arange(b, device=images.device), counts)  # (n,) image index
                labels = torch.cat([d["labels"] for d in det])
                boxes = torch.cat([d["boxes"].float().reshape(-1, 4) for d in det])  # (n, 4)
                inputs["boxes"] = tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(h, w))
            moved = geometric(inputs)
            images = moved["image"]
            out.update({k: moved[k].as_subclass(Tensor) for k in targets})
            if det is not None:
                boxes = F.clamp_bounding_boxes(moved["boxes"])
                boxes, valid = F.sanitize_bounding_boxes(boxes, min_size=MIN_BOX_SIZE, min_area=MIN_BOX_SIZE)
                boxes, labels, owner = boxes.as_subclass(Tensor), labels[valid], owner[valid]
                det = [{"boxes": boxes[owner == i], "labels": labels[owner == i]} for i in range(b)]
                if "instances" in out:
                    out["instances"] = _renumber(out["instances"], valid.split(counts.tolist()))
        if self._photometric is not None:
            # blur's kernel sums to 1 only up to rounding: clamp to keep the [0, 1] contract
            images = self._photometric(tv_tensors.Image(images)).clamp(0.0, 1.0)
        return images.as_subclass(Tensor), out, det

    def _check_keys(self, targets: Targets, size: tuple[int, int]) -> None:
        """Refuse a spatial target the augmenter would not move: it would silently misalign."""
        if self._geometric_for(size) is None:
            return
        for k, v in targets.items():
            if self.kind(k) not in (*DENSE, *PASSED_THROUGH, "detection") and isinstance(v, Tensor) \
                    and v.dim() >= 2 and tuple(v.shape[-2:]) == size:
                raise ValueError(f"target {k!r} looks spatial {tuple(v.shape)} but augmentation does not know how "
                                 f"to move it; supported: {', '.join(DENSE)}; or turn geometric augmentation off")

    def __call__(self, image: Tensor, targets: Targets, generator: torch.Generator | None = None) -> tuple[Tensor, Targets]:
        """Augment one sample: ``image (3, H, W)`` in ``[0, 1]`` and its targets dict."""
        if self.is_identity:
            return image, targets
        self._check_keys(targets, tuple(image.shape[-2:]))
        dense = {k: v.unsqueeze(0) for k, v in targets.items() if self.kind(k) in DENSE}  # type: ignore[union-attr]
        key = self.detection_key(targets)
        det = [targets[key]] if key else None  # type: ignore[list-item]
        with _rng_from(generator, image.device):
            img, moved, det = self._apply_group(image.unsqueeze(0), dense, det)
        out = dict(targets)
        out.update({k: v[0] for k, v in moved.items()})  # type: ignore[index]
        if det is not None:
            out[key] = det[0]
        return img[0], out

    def augment_batch(self, images: Tensor, targets: Targets, generator: torch.Generator | None = None) -> tuple[Tensor, Targets]:
        """Augment a collated batch: ``images (B, 3, H, W)``, detection padded as in
        :func:`~mtl_core.data.base.collate` (kept at the same ``M``, dropped boxes become ``-1``).

        The batch is split into ``groups`` contiguous groups; each group gets one random draw,
        applied to all its images, masks and boxes at once (torchvision kernels are batched).
        """
        if self.is_identity or len(images) == 0:
            return images, targets
        self._check_keys(targets, tuple(images.shape[-2:]))
        key = self.detection_key(targets)
        det_in = targets.get(key) if key else None
        items = unpad_detection(det_in) if det_in is not None else None  # type: ignore[arg-type]
        chunks = torch.arange(len(images)).chunk(min(self.groups, len(images)))
        out_images, dense, det_out = [], {k: [] for k in targets if self.kind(k) in DENSE}, []
        with _rng_from(generator, images.device):
            for idx in chunks:
                sl = slice(int(idx[0]), int(idx[-1]) + 1)
                group = {k: targets[k][sl] for k in dense}  # type: ignore[index]
                img, moved, det = self._apply_group(images[sl], group, items[sl] if items is not None else None)
                out_images.append(img)
                for k in dense:
                    dense[k].append(moved[k])
                det_out += det or []
        out = dict(targets)
        out.update({k: torch.cat(v) for k, v in dense.items()})
        if det_in is not None:
            m = det_in["boxes"].shape[1]  # type: ignore[index]
            padded = pad_detection(det_out, max_boxes=m)
            out[key] = {k: v.to(images.device) for k, v in padded.items()}
        return torch.cat(out_images), out
