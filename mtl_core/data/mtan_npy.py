"""NYUv2 and Cityscapes as Liu et al. preprocessed them for "End-to-End Multi-Task Learning with
Attention" (MTAN, CVPR 2019): the ``.npy`` files that MTAN, LibMTL, CAGrad, Nash-MTL and FAMO all
train and report on, read as their loaders read them.

Layout (``data.root`` is the folder holding ``train/`` and ``val/``; ``root/nyuv2`` or
``root/cityscapes`` works too)::

    train/image/<i>.npy     float (H, W, 3), RGB in [0, 1]
    train/label/<i>.npy     (H, W) class per pixel, -1 = not labelled            NYUv2: 13 classes
    train/label_7/<i>.npy   (H, W) the same with 7 classes                        Cityscapes
    train/label_19/<i>.npy  (H, W) the same with 19 classes                       Cityscapes
    train/depth/<i>.npy     float (H, W, 1), 0 = not labelled
    train/normal/<i>.npy    float (H, W, 3) unit surface normals, 0 = not labelled NYUv2 only
    val/...                 the same for the images the papers report on

``i`` runs from 0 to n - 1, n being the number of ``.npy`` files in ``image/`` (MTAN's
``create_dataset.py`` counts them with ``fnmatch`` and loads ``'{:d}.npy'.format(index)``); arrays
are channels-last and become channels-first as their ``np.moveaxis(x, -1, 0)`` does. NYUv2 is
288 x 384 (795 train, 654 val images); Cityscapes 128 x 256 (2975 train, 500 val; MTAN also
published a 256 x 512 copy, read the same way).

Targets: ``segmentation`` long (H, W), the published class ``c`` as ``c`` (no background: the
spec says ``background: 0``), -1 (and any value outside the classes) as 255, our ignore value;
``depth`` float (1, H, W), 0 = no label (their loss and metric mask ``sum over channels != 0``);
``normals`` float (3, H, W), zeros = no label. NYUv2's depth is in metres; Cityscapes' "depth"
is the official disparity as MTAN ships it, inverse depth in (0, 0.5) (MTAN issues #15, #25),
which is why its relative error runs into the tens.

Classes. NYUv2: the 13-class mapping of Couprie et al. (ICLR 2013) as Handa et al. distribute it
(github.com/ankurhanda/nyuv2-meta-data; MTAN issue #11 names it), whose labels 1..13 MTAN
shifted to 0..12 (0, "unknown", became -1); names in the order of SceneNet's table (Handa et al.,
"Understanding Real World Indoor Scenes with Synthetic Data", CVPR 2016), "painting" being what
others call "picture". Cityscapes: ``label_19`` are the 19 train ids of the Cityscapes benchmark
(Cordts et al., CVPR 2016; cityscapesScripts' ``labels.py``, the mapping MTAN's author writes out
in Auto-Lambda's ``create_dataset.py``); ``label_7`` its 7 categories other than void (flat ...
vehicle). MTAN does not publish its 7-class mapping: the category order is our assumption.

Which Cityscapes labels: the segmentation task's spec ``column`` (``task_specs: {"segmentation":
{"column": "label_19"}}``), ``label_7`` when none is given, as CAGrad, Nash-MTL and FAMO read;
LibMTL's copy names that folder ``label/``, read when there is no ``label_7/``. A task option and
not a data field because it is what the segmentation task learns, as a label table's column is,
and a run records it with its task.

Splits (:data:`SPLIT_PROTOCOL`): the papers train on the ``train`` folder and report on the
``val`` folder, with no validation set. Here ``test`` is their ``val`` folder, ``val`` a fixed
:data:`HELD_OUT` of their ``train`` folder (the same images whatever the run's seed) and
``train`` the rest; so "best on validation" never looks at the reported images, and numbers are
comparable to the papers' but for training on 90% of the images. ``data.<split>_size`` caps
apply as everywhere: set ``test_size`` to 654 (NYUv2) or 500 (Cityscapes), or more, to report on
the whole published set.

Size: at the published size arrays are used as they are. At another ``data.image_size`` (a CPU
run at 72 x 96) the image is resized bilinearly and the labels by nearest neighbour under
``data.resize`` (:mod:`~mtl_core.data.resize`), once, then served from
:mod:`~mtl_core.data.cache`.
"""
from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mtl_core.config import DataConfig, TaskSpec
from mtl_core.data.base import DatasetInfo, Sample, register_dataset
from mtl_core.data.cache import default_cache
from mtl_core.data.image_folder import as_long, cap, check_split, partition, resize_policy, shuffled
from mtl_core.data.resize import fit
from mtl_core.errors import ConfigError, DatasetUnavailableError

IGNORE = 255  # our "not labelled" in a segmentation target (theirs: -1)
HELD_OUT = 0.1  # share of their train folder held out as our validation split
SPLIT_PROTOCOL = (f"test = the published val folder (what the papers report on); val = a fixed {HELD_OUT:.0%} of the "
                  f"published train folder; train = the other {1 - HELD_OUT:.0%}")

NYUV2_CLASSES = ("bed", "books", "ceiling", "chair", "floor", "furniture", "objects", "painting", "sofa", "table",
                 "tv", "wall", "window")
CITYSCAPES_7 = ("flat", "construction", "object", "nature", "sky", "human", "vehicle")
CITYSCAPES_19 = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
                 "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle",
                 "bicycle")


@dataclass(frozen=True)
class Benchmark:
    """What differs between the two sets: sizes, label folders and where to get them."""

    name: str
    title: str
    size: tuple[int, int]  # (height, width) as published
    counts: tuple[int, int]  # images in the published train and val folders
    labels: dict[str, tuple[str, ...]]  # label folder (a segmentation column) -> its classes
    default_label: str
    depth_max: float  # the depth head's output scale (the largest depth, about)
    download: str


NYUV2 = Benchmark(
    name="nyuv2", title="NYUv2 (MTAN's preprocessed .npy)", size=(288, 384), counts=(795, 654),
    labels={"label": NYUV2_CLASSES}, default_label="label",
    depth_max=10.0,  # metres: the Kinect's range
    download="https://www.dropbox.com/sh/86nssgwm6hm3vkb/AACrnUQ4GxpdrBbLjb6n-mWNa?dl=0 (the link in the README of "
             "github.com/lorenmt/mtan and of LibMTL's examples/nyu)")
CITYSCAPES = Benchmark(
    name="cityscapes", title="Cityscapes (MTAN's preprocessed .npy)", size=(128, 256), counts=(2975, 500),
    labels={"label_7": CITYSCAPES_7, "label_19": CITYSCAPES_19, "label": CITYSCAPES_7}, default_label="label_7",
    depth_max=0.5,  # inverse depth as shipped: 0 to 0.49 (MTAN issue #25)
    download="https://www.dropbox.com/sh/gaw6vh6qusoyms6/AADwWi0Tp3E3M4B2xzeGlsEna?dl=0 (128 x 256; the link in the "
             "README of github.com/lorenmt/mtan and of LibMTL's examples/cityscapes)")

FOLDERS = {"depth": "depth", "normals": "normal"}  # task -> its folder (segmentation: the label column)


def _npy_count(folder: Path) -> int:
    return len(fnmatch.filter(os.listdir(folder), "*.npy"))


def _unavailable(b: Benchmark, expected: Path, what: str) -> DatasetUnavailableError:
    return DatasetUnavailableError(
        f"{b.title} is not on disk: expected {expected} ({what}). Nothing is downloaded here; on a machine with "
        f"internet get it from {b.download}, unzip it, copy it to this machine and set data.root to the folder "
        "that holds its train/ and val/ folders.")


def locate_npy(cfg: DataConfig, b: Benchmark) -> Path:
    """The folder holding ``train/`` and ``val/`` (``data.root`` itself, or its ``nyuv2/`` /
    ``cityscapes/`` inside), checked on disk."""
    if not cfg.root:
        raise ConfigError("data.root", f"the {b.name} dataset needs data.root: set it to the folder holding train/ and "
                          f"val/ of {b.title} (download: {b.download})")
    root = Path(cfg.root).expanduser()
    for candidate in (root, root / b.name):
        if (candidate / "train" / "image").is_dir():
            root = candidate
            break
    for split in ("train", "val"):
        if not (root / split / "image").is_dir():
            raise _unavailable(b, root / split / "image", f"a folder of <i>.npy images for the published {split} split")
    return root


@lru_cache(maxsize=16)
def _checked(folder: str, version: int, title: str) -> int:
    """How many images ``folder/image`` holds, after checking that its first image is RGB in
    [0, 1] (once per folder version: the three splits share the train folder)."""
    path = Path(folder)
    n = _npy_count(path / "image")
    if n == 0:
        raise DatasetUnavailableError(f"{path / 'image'} holds no .npy file; {title} is incomplete: copy it again")
    first = path / "image" / "0.npy"
    if not first.is_file():
        raise ConfigError("data.root", f"{first} does not exist, but {path / 'image'} holds {n} .npy files: "
                          "the files must be named 0.npy .. <n-1>.npy, as MTAN's preprocessing writes them")
    arr = np.load(first, mmap_mode="r", allow_pickle=False)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ConfigError("data.root", f"{first} has shape {arr.shape}; expected (height, width, 3), as MTAN's images")
    if arr.dtype != np.uint8 and float(np.max(arr)) > 1.0 + 1e-3:
        raise ConfigError("data.root", f"{first} has values up to {float(np.max(arr)):g}; expected RGB in [0, 1] as "
                          "MTAN's preprocessed images (divide by 255 when saving)")
    return n


# ----------------------------------------------------------------------------------- arrays
def to_image(arr: np.ndarray) -> Tensor:
    """``(H, W, 3)`` in [0, 1] (or uint8) -> float ``(3, H, W)`` in [0, 1]."""
    a = np.asarray(arr, dtype=np.float32)
    if arr.dtype == np.uint8:
        a = a / np.float32(255.0)
    return torch.from_numpy(np.ascontiguousarray(np.clip(a, 0.0, 1.0).transpose(2, 0, 1)))


def to_labels(arr: np.ndarray, num_classes: int) -> Tensor:
    """``(H, W)`` (or ``(H, W, 1)``) class per pixel, -1 unlabelled -> long ``(H, W)``, 255 unlabelled."""
    a = np.asarray(arr)
    a = a.reshape(a.shape[:2]) if a.ndim == 3 and a.shape[-1] == 1 else a
    labels = np.rint(a).astype(np.int64) if a.dtype.kind == "f" else a.astype(np.int64)
    labels[(labels < 0) | (labels >= num_classes)] = IGNORE
    return torch.from_numpy(labels)


def to_channels_first(arr: np.ndarray) -> Tensor:
    """``(H, W, C)`` (or ``(H, W)``) float -> float ``(C, H, W)``, as ``np.moveaxis(x, -1, 0)``."""
    a = np.asarray(arr)
    a = a[..., None] if a.ndim == 2 else a
    return torch.from_numpy(np.array(a.transpose(2, 0, 1), dtype=np.float32, order="C"))  # a copy, never the mmap


# ----------------------------------------------------------------------------------- dataset
class MtanNpyDataset:
    """One of the MTAN ``.npy`` benchmarks (see the module docstring); a subclass names which."""

    benchmark: Benchmark
    supplies: tuple[str, ...] = ()
    split_note = SPLIT_PROTOCOL
    reads_specs = True  # build_dataset passes task_specs (the label column) and tasks (what to read)

    def __init__(self, cfg: DataConfig, split: str, seed: int = 0, specs: Mapping[str, TaskSpec] | None = None,
                 tasks: Sequence[str] | None = None) -> None:
        check_split(split)
        b = self.benchmark
        root = locate_npy(cfg, b)
        column = (specs or {}).get("segmentation", TaskSpec()).column
        if column and column not in b.labels:
            raise ConfigError("task_specs.segmentation.column", f"{column!r} is not a label folder of {b.name}; "
                              f"choose one of: {', '.join(k for k in b.labels if k != 'label' or len(b.labels) == 1)}")
        self.column = column
        classes = b.labels[column or b.default_label]
        self.split_dir = root / ("val" if split == "test" else "train")
        self.available_images = {s: _checked(str(root / s), (root / s / "image").stat().st_mtime_ns, b.title)
                                 for s in ("train", "val")}
        # task -> (target key, folder); only what the config's tasks learn is read
        label = self._label_folder(self.split_dir, column or b.default_label)
        reads = {"segmentation": (column or "segmentation", label), **{t: (t, f) for t, f in FOLDERS.items()}}
        self.reads = {t: kf for t, kf in reads.items() if t in self.supplies and (tasks is None or t in tasks)}
        for t, (_, f) in self.reads.items():
            src = self.split_dir / f
            if not src.is_dir():
                raise _unavailable(b, src, f"the {t} labels, <i>.npy beside each image")
            if (found := _npy_count(src)) != self.available_images[self.split_dir.name]:
                raise ConfigError("data.root", f"{src} holds {found} .npy files but {self.split_dir / 'image'} holds "
                                  f"{self.available_images[self.split_dir.name]}: the copy is incomplete")
        n = self.available_images[self.split_dir.name]
        part = shuffled(range(n)) if split == "test" else partition(n, {"train": 1 - HELD_OUT, "val": HELD_OUT})[split]
        self.cfg, self.split, self.available = cfg, split, len(part)
        self.indices = cap(part, cfg, split)
        self.num_classes = len(classes)
        seg = TaskSpec(kind="segmentation", column=column, classes=classes,
                       options={"ignore_index": IGNORE, "background": 0})
        specs_out = {"segmentation": seg, "depth": TaskSpec(kind="depth"), "normals": TaskSpec(kind="normals")}
        self.info = DatasetInfo(name=b.name, class_names=classes, image_size=cfg.image_size, tasks=self.supplies,
                                depth_max=b.depth_max, specs={t: s for t, s in specs_out.items() if t in self.supplies})

    @staticmethod
    def _label_folder(split_dir: Path, folder: str) -> str:
        """``label_7`` as LibMTL's copy names it (``label``) when only that one is there."""
        if folder == "label_7" and not (split_dir / folder).is_dir() and (split_dir / "label").is_dir():
            return "label"
        return folder

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Sample:
        j = self.indices[i]
        image = self._load(self.split_dir / "image" / f"{j}.npy", "image")  # (3, H, W)
        targets: dict[str, object] = {}
        for t, (key, folder) in self.reads.items():
            targets[key] = self._load(self.split_dir / folder / f"{j}.npy", t)
        targets["valid"] = {key: True for key, _ in self.reads.values()}
        return image, targets

    def _convert(self, arr: np.ndarray, what: str) -> Tensor:
        if what == "image":
            return to_image(arr)  # (3, H, W)
        if what == "segmentation":
            return to_labels(arr, self.num_classes)  # (H, W)
        return to_channels_first(arr)  # depth (1, H, W), normals (3, H, W)

    def _load(self, path: Path, what: str) -> Tensor:
        """One array as its target at the model's size (see the module docstring)."""
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            raise ConfigError("data.root", f"{path} does not exist; the copy of {self.benchmark.title} is incomplete") \
                from None
        src, hw = (int(arr.shape[0]), int(arr.shape[1])), self.cfg.hw
        if src == hw:
            return self._convert(arr, what)
        policy = resize_policy(self.cfg)

        def make() -> tuple[Tensor, tuple[int, int]]:
            f = fit(src, hw, policy)
            x = self._convert(arr, what)
            if what == "image":
                return f.image(x).clamp_(0.0, 1.0), src
            if what == "segmentation":
                return f.mask(x, IGNORE).to(torch.uint8), src
            return f.mask(x, 0.0), src  # nearest: no depth or normal invented across an edge; 0 = no label

        made = default_cache().get(path, f"mtan1:{what}:{policy}:{hw[0]}x{hw[1]}", make)[0]
        return as_long(made) if what == "segmentation" else made.clone()


@register_dataset("nyuv2")
class NyuV2Dataset(MtanNpyDataset):
    """NYUv2 (Silberman et al., ECCV 2012) as MTAN ships it: 13-class segmentation, depth, normals."""

    benchmark = NYUV2
    supplies = ("segmentation", "depth", "normals")


@register_dataset("cityscapes")
class CityscapesDataset(MtanNpyDataset):
    """Cityscapes (Cordts et al., CVPR 2016) as MTAN ships it: 7- or 19-class segmentation, inverse depth."""

    benchmark = CITYSCAPES
    supplies = ("segmentation", "depth")


__all__ = ["CITYSCAPES", "CITYSCAPES_7", "CITYSCAPES_19", "HELD_OUT", "NYUV2", "NYUV2_CLASSES", "SPLIT_PROTOCOL",
           "CityscapesDataset", "MtanNpyDataset", "NyuV2Dataset", "locate_npy"]


def write_random_copy(root: str | os.PathLike, name: str = "nyuv2", n_train: int = 8, n_val: int = 4,
                      size: tuple[int, int] | None = None, seed: int = 0) -> Path:
    """A folder in the published layout of ``name`` (``nyuv2`` or ``cityscapes``) filled with random
    arrays of the published dtypes and shapes (``size``: height x width, default the published
    one): image float64 (H, W, 3) in [0, 1), every label folder float (H, W) in -1..K-1, depth
    float32 (H, W, 1) with its bottom rows 0 (unmeasured), NYUv2's normals float32 (H, W, 3) unit
    vectors, 0 where depth is missing. For benches and tests on a machine without the data."""
    b = {"nyuv2": NYUV2, "cityscapes": CITYSCAPES}[name]
    root = Path(root)
    h, w = size or b.size
    rng = np.random.default_rng(seed)
    folders = {k: len(v) for k, v in b.labels.items() if k != "label" or name == "nyuv2"}
    for split, n in (("train", n_train), ("val", n_val)):
        for folder in ("image", *folders, "depth", *(("normal",) if name == "nyuv2" else ())):
            (root / split / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            np.save(root / split / "image" / f"{i}.npy", rng.random((h, w, 3)))
            for folder, k in folders.items():
                np.save(root / split / folder / f"{i}.npy", rng.integers(-1, k, (h, w)).astype(np.float32))
            depth = (rng.random((h, w, 1)) * b.depth_max * 0.9 + b.depth_max * 0.05).astype(np.float32)
            depth[-max(1, h // 16):] = 0.0
            np.save(root / split / "depth" / f"{i}.npy", depth)
            if name == "nyuv2":
                normals = rng.normal(size=(h, w, 3))
                normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
                normals[-max(1, h // 16):] = 0.0
                np.save(root / split / "normal" / f"{i}.npy", normals.astype(np.float32))
    return root
