"""CelebA (Liu et al., "Deep Learning Face Attributes in the Wild", ICCV 2015): 40 yes/no face
attributes per aligned 178 x 218 photo, each a ``binary`` task of its own, as the multi-task
literature trains them (Sener and Koltun, "Multi-Task Learning as Multi-Objective Optimization",
NeurIPS 2018: 40 tasks at 64 x 64; FAMO, NeurIPS 2023, the same), and all 40 together as one
``multilabel`` task.

``data.root`` is torchvision's root, the folder holding ``celeba/`` with torchvision's layout::

    celeba/img_align_celeba/000001.jpg ...
    celeba/list_attr_celeba.txt            count, header of 40 names, then "<file> 1 -1 ..." rows
    celeba/list_eval_partition.txt         "<file> 0|1|2": train, valid, test
    celeba/identity_CelebA.txt, list_bbox_celeba.txt, list_landmarks_align_celeba.txt

The files are read by torchvision's ``CelebA`` with ``download=False``: it never reaches the
network, and it checks the five lists against their published md5s, so a copy that differs from
the published one is refused as corrupted rather than read wrongly (tests, whose fakes cannot
match the md5s, reduce that check to "the file exists"). Tasks are the attribute names of the
file's header (``5_o_Clock_Shadow``, ``Arched_Eyebrows`` ... ``Young``; :data:`CELEBA_ATTRIBUTES`);
targets long 0/1 (the file's -1 is 0) for the binary tasks, float ``(40,)`` for ``multilabel``;
only the tasks a config selects are put in a sample. Splits: the official partition (0 train,
1 val, 2 test), each in a fixed shuffled order so a ``data.<split>_size`` cap is a random subset.

Size: stretched to ``data.image_size`` unless ``data.resize`` says otherwise, as MGDA's loader
(``scipy.misc.imresize`` to 64 x 64) and FAMO's (``transforms.Resize((64, 64))``) do; 64 is the
literature's size.

Groups (:data:`CELEBA_GROUPS`): the nine groups by face region of Hand and Chellappa, "Attributes
for Improved Attributes: A Multi-Task Network Utilizing Implicit and Explicit Relationships for
Facial Attribute Classification" (AAAI 2017), the grouping the MTL literature on CelebA uses,
plus ``all``. :func:`celeba_tasks` gives a group's task names; in a task list ``celeba:<group>``
stands for them (:func:`expand_task_groups`, applied by the CLI's ``--tasks``).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import torchvision.datasets as tvd

from mtl_core.config import DataConfig, TaskSpec
from mtl_core.data.base import DatasetInfo, Sample, register_dataset
from mtl_core.data.cache import default_cache
from mtl_core.data.image_folder import cap, check_split, load_image, shuffled
from mtl_core.data.torchvision_sets import locate, open_torchvision
from mtl_core.errors import ConfigError

CELEBA_CALL = "CelebA('{root}', split='all', download=True)"
CELEBA_FILES = ("img_align_celeba", "list_attr_celeba.txt", "list_eval_partition.txt", "identity_CelebA.txt",
                "list_bbox_celeba.txt", "list_landmarks_align_celeba.txt")
DEFAULT_RESIZE = "stretch"  # as MGDA and FAMO resize the 178 x 218 faces to 64 x 64

# the header of list_attr_celeba.txt, in its order
CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips", "Big_Nose",
    "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses",
    "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes",
    "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling",
    "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace",
    "Wearing_Necktie", "Young")

# Hand and Chellappa (AAAI 2017), Table 1: the attributes grouped by where on the face they are
CELEBA_GROUPS: dict[str, tuple[str, ...]] = {
    "gender": ("Male",),
    "nose": ("Big_Nose", "Pointy_Nose"),
    "mouth": ("Big_Lips", "Smiling", "Wearing_Lipstick", "Mouth_Slightly_Open"),
    "eyes": ("Arched_Eyebrows", "Bags_Under_Eyes", "Bushy_Eyebrows", "Narrow_Eyes", "Eyeglasses"),
    "face": ("Attractive", "Blurry", "Oval_Face", "Pale_Skin", "Young", "Heavy_Makeup"),
    "around_head": ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair", "Bald", "Receding_Hairline", "Bangs",
                    "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Necklace",
                    "Wearing_Necktie"),
    "facial_hair": ("5_o_Clock_Shadow", "Mustache", "No_Beard", "Sideburns", "Goatee"),
    "cheeks": ("High_Cheekbones", "Rosy_Cheeks"),
    "fat": ("Chubby", "Double_Chin"),
    "all": CELEBA_ATTRIBUTES,
}
GROUP_PREFIX = "celeba:"


def celeba_tasks(group: str) -> tuple[str, ...]:
    """The task names of one of :data:`CELEBA_GROUPS` (``"mouth"`` -> ``("Big_Lips", "Smiling", ...)``)."""
    if group not in CELEBA_GROUPS:
        raise ConfigError("tasks", f"unknown CelebA attribute group {group!r}; choose one of: {', '.join(CELEBA_GROUPS)}")
    return CELEBA_GROUPS[group]


def expand_task_groups(tasks: Sequence[str]) -> tuple[str, ...]:
    """``tasks`` with each ``celeba:<group>`` replaced by its attributes (each name once, in order)."""
    out: dict[str, None] = {}
    for t in tasks:
        out.update(dict.fromkeys(celeba_tasks(t[len(GROUP_PREFIX):]) if t.startswith(GROUP_PREFIX) else (t,)))
    return tuple(out)


@lru_cache(maxsize=1)
def _celeba(root: str) -> tuple[Any, list[int]]:
    """torchvision's CelebA over all images (its five lists parsed once for the three splits) and
    each image's partition (0 train, 1 valid, 2 test)."""
    tv = open_torchvision("CelebA", lambda: tvd.CelebA(root, split="all", target_type="attr", download=False),
                          Path(root), CELEBA_CALL)
    rows = (Path(root) / "celeba" / "list_eval_partition.txt").read_text().split()
    part = dict(zip(rows[0::2], (int(p) for p in rows[1::2]), strict=True))
    return tv, [part[name] for name in tv.filename]


@register_dataset("celeba")
class CelebADataset:
    """CelebA's 40 face attributes as 40 binary tasks and as multilabel (see the module docstring)."""

    supplies = ("multilabel",)
    # what validation knows without opening the files: each attribute a binary task
    declares = {name: TaskSpec(kind="binary") for name in CELEBA_ATTRIBUTES}
    reads_specs = True  # build_dataset passes tasks: a sample holds only theirs

    def __init__(self, cfg: DataConfig, split: str, seed: int = 0, specs: Mapping[str, TaskSpec] | None = None,
                 tasks: Sequence[str] | None = None) -> None:
        check_split(split)
        root = str(locate(cfg, "CelebA", "celeba", CELEBA_CALL, CELEBA_FILES))
        self.tv, partition_of = _celeba(root)
        wanted = {"train": 0, "val": 1, "test": 2}[split]
        part = shuffled([k for k, p in enumerate(partition_of) if p == wanted])
        self.cfg, self.split, self.available = cfg, split, len(part)
        self.indices = cap(part, cfg, split)
        names = tuple(n for n in self.tv.attr_names if n)  # the header line may end in a space
        lacking = [t for t in (tasks or ()) if t in CELEBA_ATTRIBUTES and t not in names]
        if lacking:
            raise ConfigError("tasks", f"{lacking[0]!r} is not an attribute of {root}/celeba/list_attr_celeba.txt; "
                              f"its header names: {', '.join(names)}")
        # attribute -> its column; only the selected ones (all of them when no task list is given)
        self.columns = {n: k for k, n in enumerate(names) if tasks is None or n in tasks}
        self.multilabel = tasks is None or "multilabel" in tasks
        self.policy = cfg.resize or DEFAULT_RESIZE
        self.image_dir = Path(root) / "celeba" / "img_align_celeba"
        self.info = DatasetInfo(name="celeba", class_names=names, image_size=cfg.image_size,
                                tasks=(*self.supplies, *names), specs={n: TaskSpec(kind="binary") for n in names})

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Sample:
        j = self.indices[i]
        image, _ = load_image(self.image_dir / self.tv.filename[j], self.cfg.hw, self.policy,
                              cache=default_cache())  # (3, H, W)
        attr = self.tv.attr[j]  # (40,) 0/1
        targets: dict[str, Any] = {name: attr[k].long() for name, k in self.columns.items()}
        if self.multilabel:
            targets["multilabel"] = attr.float()
        targets["valid"] = {key: True for key in targets}
        return image, targets


__all__ = ["CELEBA_ATTRIBUTES", "CELEBA_GROUPS", "CelebADataset", "celeba_tasks", "expand_task_groups"]
