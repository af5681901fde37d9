"""A folder of images in class subfolders (``root/<class>/<image>``), for classification.

Also the shared file helpers of the real-data adapters (:mod:`~mtl_core.data.coco`,
:mod:`~mtl_core.data.seg_folder`, :mod:`~mtl_core.data.torchvision_sets`): checking
``data.root``, the fixed train/val/test split of a list of files, and reading an image at the
model's height x width (``data.image_size``) under ``data.resize`` (letterbox unless set; see
:mod:`~mtl_core.data.resize`), decoded once and then served from :mod:`~mtl_core.data.cache`.

Splits: a format without its own splits is shuffled once with a fixed seed (:data:`SPLIT_SEED`,
not the run's seed, so runs with different seeds are compared on the same test images) and cut
80/10/10. Each split then keeps at most ``data.train_size`` / ``val_size`` / ``test_size``
samples (the first ones of that shuffled order, so a cap is a random subset, not the first
classes).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor
from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

from mtl_core.config import DataConfig, size_hw
from mtl_core.data.base import SPLITS, DatasetInfo, Sample, register_dataset
from mtl_core.data.cache import ImageCache, default_cache
from mtl_core.data.resize import PAD_VALUE, POLICIES, Fit, fit
from mtl_core.errors import ConfigError

ORIENTATION_TAG = 0x0112  # EXIF
SPLIT_SEED = 1234  # fixed: the split is a property of the data, not of a run
DEFAULT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}


# ----------------------------------------------------------------------------------- helpers
def require_root(cfg: DataConfig, expected: str) -> Path:
    """``data.root`` as a path that exists; ``expected`` says what it should hold."""
    if not cfg.root:
        raise ConfigError("data.root", f"the {cfg.dataset} dataset needs data.root: set it to {expected}")
    root = Path(cfg.root).expanduser()
    if not root.exists():
        raise ConfigError("data.root", f"{root} does not exist; set data.root to {expected}")
    return root


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ConfigError("split", f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")


def partition(n: int, fractions: dict[str, float] = DEFAULT_FRACTIONS) -> dict[str, list[int]]:
    """Indices ``0 .. n-1`` shuffled with :data:`SPLIT_SEED` and cut into disjoint parts that
    cover them all, in the given proportions; every part but the first gets at least one index
    (the first gets the rest). ``n`` must be at least the number of parts."""
    names = list(fractions)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED)).tolist()
    sizes = [max(1, round(n * fractions[k])) for k in names[1:]]
    first = n - sum(sizes)
    if first < 1:
        raise ValueError(f"{n} items cannot be split into {len(names)} non-empty parts")
    out, start = {}, 0
    for name, size in zip(names, [first] + sizes, strict=True):
        out[name] = order[start:start + size]
        start += size
    return out


def shuffled(items: Sequence[int]) -> list[int]:
    """``items`` in a fixed shuffled order (for official splits, so a size cap is a random subset)."""
    order = torch.randperm(len(items), generator=torch.Generator().manual_seed(SPLIT_SEED)).tolist()
    return [items[j] for j in order]


def cap(indices: Sequence[int], cfg: DataConfig, split: str) -> list[int]:
    """The first ``data.<split>_size`` of ``indices`` (already in a shuffled order)."""
    limit = {"train": cfg.train_size, "val": cfg.val_size, "test": cfg.test_size}[split]
    return list(indices[:max(0, limit)])


def resize_policy(cfg: DataConfig) -> str:
    """``data.resize``, or letterbox (the real photos' default: nothing cut, nothing distorted)."""
    policy = cfg.resize or "letterbox"
    _check_policy(policy)
    return policy


def _check_policy(policy: str) -> None:
    if policy not in POLICIES:
        raise ConfigError("data.resize", f"unknown resize policy {policy!r}; choose one of: {', '.join(POLICIES)}")


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(ORIENTATION_TAG, 1))
    except (OSError, ValueError, TypeError, SyntaxError):
        return 1


def decode_fitted(path: str | Path, size: int | tuple[int, int], policy: str = "letterbox",
                  exif: bool = False) -> tuple[Tensor, tuple[int, int]]:
    """The part of the image file ``path`` that shows in the model's ``size`` (H x W) under
    ``policy``, as uint8 ``(3, vh, vw)`` (at most ``(3, H, W)``; the letterbox's padding is not
    stored), and the photo's own ``(h0, w0)`` (its :class:`Fit` follows from them).

    Bilinear, antialiased (Pillow filters with the full support when shrinking); a JPEG is decoded
    at 1/2, 1/4 or 1/8 scale when that still covers the scaled size (``Image.draft``). ``exif=True``
    applies the EXIF orientation (phone photos); leave it off where labels are given in the stored
    pixel frame (COCO, VOC, masks)."""
    hw = size_hw(size)
    _check_policy(policy)
    try:
        with Image.open(path) as im:
            w0, h0 = im.size
            turned = exif and _orientation(im) in (5, 6, 7, 8)  # a quarter turn: height and width swap
            if turned:
                h0, w0 = w0, h0
            f = fit((h0, w0), hw, policy)
            nh, nw = f.scaled
            im.draft("RGB", (nh, nw) if turned else (nw, nh))  # JPEG: decode reduced when that still covers it
            if exif:
                im = ImageOps.exif_transpose(im)
            im = im.convert("RGB")
            if im.size != (nw, nh):
                im = im.resize((nw, nh), Image.Resampling.BILINEAR)
            h, w = hw
            y0, x0 = max(-f.top, 0), max(-f.left, 0)  # a crop's cut, in the scaled image
            if (y0, x0) != (0, 0) or nh > h or nw > w:
                im = im.crop((x0, y0, x0 + min(nw, w), y0 + min(nh, h)))
            # numpy's copy, not torch's: one thread (see place)
            pixels = torch.from_numpy(np.ascontiguousarray(np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)))
    except (OSError, SyntaxError, ValueError) as e:  # not an image, truncated, damaged
        raise ConfigError("data.root", f"{path} cannot be read as an image ({e}); replace or remove the file") from None
    return pixels, (h0, w0)


def place(pixels: Tensor, f: Fit, pad: float = PAD_VALUE) -> Tensor:
    """What :func:`decode_fitted` kept, as float ``(3, H, W)`` in ``[0, 1]`` at its place in the
    model's frame (the letterbox's bands grey, as :meth:`Fit.image`).

    In numpy, on purpose: a per-sample torch op on more than 32,768 elements runs on every
    intra-op thread, and on a busy machine their handshake costs milliseconds for microseconds
    of work (measured: 0.6-4 ms against 15 us for this conversion at 96 x 128 on 2 shared cores)."""
    a = pixels.numpy()
    h, w = f.dst
    out = np.full((a.shape[0], h, w), pad, dtype=np.float32)
    y0, x0 = max(f.top, 0), max(f.left, 0)
    np.divide(a, np.float32(255.0), out=out[:, y0:y0 + a.shape[1], x0:x0 + a.shape[2]], dtype=np.float32)
    return torch.from_numpy(out)


def as_long(t: Tensor) -> Tensor:
    """A cached label map as a new long tensor (numpy: one thread, see :func:`place`)."""
    return torch.from_numpy(t.numpy().astype(np.int64))


def load_image(path: str | Path, size: int | tuple[int, int], policy: str = "letterbox", exif: bool = False,
               cache: ImageCache | None = None) -> tuple[Tensor, Fit]:
    """An image file as float ``(3, H, W)`` in ``[0, 1]`` under ``policy``, and the :class:`Fit`
    its labels go through (``fit.boxes``, ``fit.mask``). With ``cache``, decoded once (see
    :mod:`~mtl_core.data.cache`)."""
    hw = size_hw(size)
    if cache is None:
        pixels, src = decode_fitted(path, hw, policy, exif)
    else:
        variant = f"rgb1:{policy}:{hw[0]}x{hw[1]}:exif{int(exif)}"
        pixels, src = cache.get(path, variant, lambda: decode_fitted(path, hw, policy, exif))
    f = fit(src, hw, policy)
    return place(pixels, f), f


def load_rgb(path: str | Path, size: int | tuple[int, int], exif: bool = False, policy: str = "letterbox") -> Tensor:
    """An image file as float ``(3, H, W)`` in ``[0, 1]`` (``size``: one number for a square, or
    ``(H, W)``), uncached; :func:`load_image` also gives the :class:`Fit`."""
    return load_image(path, size, policy, exif)[0]


# ----------------------------------------------------------------------------------- dataset
@register_dataset("image_folder")
class ImageFolderDataset:
    """``root/<class name>/<image>``: one class per subfolder (sorted names, as torchvision's
    ``ImageFolder``, hidden folders skipped); the split is a fixed 80/10/10 shuffle of all images."""

    supplies = ("classification",)

    def __init__(self, cfg: DataConfig, split: str, seed: int = 0) -> None:
        check_split(split)
        expected = "a folder with one subfolder of images per class (root/<class>/<image>.png)"
        root = require_root(cfg, expected)
        if not root.is_dir():
            raise ConfigError("data.root", f"{root} is a file; set data.root to {expected}")
        # hidden folders (.ipynb_checkpoints, .git ...) are not classes
        classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not classes:
            raise ConfigError("data.root", f"{root} has no class subfolders; expected {expected}")
        try:
            samples = make_dataset(root, {c: i for i, c in enumerate(classes)}, extensions=IMG_EXTENSIONS)
        except FileNotFoundError as e:  # a class subfolder without images
            raise ConfigError("data.root", f"{root} has the wrong layout ({e}); expected {expected}") from None
        if len(samples) < len(SPLITS):
            raise ConfigError("data.root", f"{root} holds {len(samples)} images; at least {len(SPLITS)} "
                              "are needed (one per split)")
        self.cfg, self.split = cfg, split
        self.samples = samples  # [(path, class index)] sorted by class, then file name
        part = partition(len(samples))[split]
        self.available = len(part)  # before the data.<split>_size cap
        self.indices = cap(part, cfg, split)
        self.info = DatasetInfo(name="image_folder", class_names=tuple(classes), image_size=cfg.image_size,
                                tasks=self.supplies)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Sample:
        path, label = self.samples[self.indices[i]]
        image, _ = load_image(path, self.cfg.hw, resize_policy(self.cfg), exif=True, cache=default_cache())  # (3, H, W)
        return image, {"classification": torch.tensor(label), "valid": {"classification": True}}
