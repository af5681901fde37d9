"""torchvision's Pets, VOC, CelebA and CIFAR-10 through the adapters: tiny fakes in each real
on-disk layout read through torchvision itself (its md5 checks, which no fake can pass, replaced by
"the file exists" for CIFAR-10 and CelebA), the clear offline message when a set is absent, and
a short run on each fake."""
from __future__ import annotations

import math
import os
import pickle

import numpy as np
import pytest
import torch
import torchvision.datasets.celeba
import torchvision.datasets.cifar
from PIL import Image

from mtl_core.config import DataConfig, ExperimentConfig, OptimConfig
from mtl_core.data import build_dataset
from mtl_core.data.celeba import CelebADataset
from mtl_core.data.torchvision_sets import VOC_CLASSES, Cifar10Dataset, PetsDataset, VocDataset
from mtl_core.errors import ConfigError, DatasetUnavailableError

pytestmark = pytest.mark.usefixtures("no_network")



@pytest.fixture
def md5_is_existence(monkeypatch):
    """torchvision checks CIFAR-10's and CelebA's files against their real md5s; a fake passes
    only if the check is reduced to "the file exists" (the rest of torchvision's code still runs)."""
    exists = lambda fpath, md5=None: os.path.isfile(fpath)  # noqa: E731
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", exists)
    monkeypatch.setattr(torchvision.datasets.celeba, "check_integrity", exists)


def cfg_for(name: str, root, **kw) -> DataConfig:
    return DataConfig(dataset=name, root=str(root), image_size=32, **kw)


def everything(name: str, root, **kw) -> dict[str, list]:
    return {s: build_dataset(cfg_for(name, root, **kw), s) for s in ("train", "val", "test")}


# ------------------------------------------------------------------ fakes in the real layouts
PET_BREEDS = (("Abyssinian", 1, 1), ("american_bulldog", 2, 2), ("Bengal", 3, 1))


def make_pets(root):
    """oxford-iiit-pet/: 64 x 64 images; trimap 2 (background), a 3 (border) ring at 12..16 and
    48..52, 1 (pet) at 16..48; Bengal_3 has no trimap. trainval: 4 per breed, test: 1 per breed."""
    base = root / "oxford-iiit-pet"
    (base / "images").mkdir(parents=True)
    (base / "annotations" / "trimaps").mkdir(parents=True)
    trimap = np.full((64, 64), 2, dtype=np.uint8)
    trimap[12:52, 12:52] = 3
    trimap[16:48, 16:48] = 1
    lines = {"trainval": [], "test": []}
    for breed, cid, species in PET_BREEDS:
        for k in range(1, 6):
            name = f"{breed}_{k}"
            Image.new("RGB", (64, 64), (50 * cid, 80, 120)).save(base / "images" / f"{name}.jpg")
            if name != "Bengal_3":
                Image.frombytes("L", (64, 64), trimap.tobytes()).save(base / "annotations" / "trimaps" / f"{name}.png")
            lines["test" if k == 5 else "trainval"].append(f"{name} {cid} {species} {k}")
    for split, rows in lines.items():
        (base / "annotations" / f"{split}.txt").write_text("\n".join(rows) + "\n")
    return root


VOC_XML = """<annotation><folder>VOC2012</folder><filename>{stem}.jpg</filename>
<size><width>64</width><height>128</height><depth>3</depth></size><segmented>{seg}</segmented>{objects}</annotation>"""
VOC_OBJECT = """<object><name>{name}</name><pose>Left</pose><truncated>0</truncated><difficult>0</difficult>
<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"""


def make_voc(root):
    """VOCdevkit/VOC2012: 6 train and 6 val images (64 x 128). Each has a dog at pixels x 8..23,
    y 16..47 (1-based 9..24, 17..48); the even ones also a person at x 32..63, y 64..95 and a
    SegmentationClass mask; image 2000_000003 has no objects."""
    base = root / "VOCdevkit" / "VOC2012"
    for d in ("JPEGImages", "Annotations", "ImageSets/Main", "ImageSets/Segmentation", "SegmentationClass"):
        (base / d).mkdir(parents=True)
    mask = np.zeros((128, 64), dtype=np.uint8)
    mask[16:48, 8:24] = VOC_CLASSES.index("dog") + 1
    mask[64:96, 32:64] = VOC_CLASSES.index("person") + 1
    mask[12:16, :] = 255  # a band of VOC's "void" border label
    stems = {"train": [f"2000_{i:06d}" for i in range(6)], "val": [f"2001_{i:06d}" for i in range(6)]}
    for split, names in stems.items():
        for i, stem in enumerate(names):
            Image.new("RGB", (64, 128), (30 * i, 60, 90)).save(base / "JPEGImages" / f"{stem}.jpg")
            objects = [VOC_OBJECT.format(name="dog", x0=9, y0=17, x1=24, y1=48)]
            if i % 2 == 0:
                objects.append(VOC_OBJECT.format(name="person", x0=33, y0=65, x1=64, y1=96))
                Image.frombytes("L", (64, 128), mask.tobytes()).convert("P").save(base / "SegmentationClass" / f"{stem}.png")
            if stem == "2000_000003":
                objects = []
            xml = VOC_XML.format(stem=stem, seg=int(i % 2 == 0), objects="".join(objects))
            (base / "Annotations" / f"{stem}.xml").write_text(xml)
        (base / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(names) + "\n")
    return root


CELEBA_ATTRS = ("Bald", "Eyeglasses", "Male", "Smiling")


def make_celeba(root, n: int = 12):
    """celeba/: n aligned 178 x 218 faces; image k has attribute j iff bit j of k is set;
    partition: k % 4 == 1 -> valid, k % 4 == 2 -> test, else train."""
    base = root / "celeba"
    (base / "img_align_celeba").mkdir(parents=True)
    names = [f"{k:06d}.jpg" for k in range(1, n + 1)]
    for k, name in enumerate(names, 1):
        Image.new("RGB", (178, 218), (10 * k, 100, 150)).save(base / "img_align_celeba" / name)
    attrs = [" ".join("1" if k >> j & 1 else "-1" for j in range(len(CELEBA_ATTRS))) for k in range(1, n + 1)]
    (base / "list_attr_celeba.txt").write_text(
        f"{n}\n{' '.join(CELEBA_ATTRS)} \n" + "".join(f"{nm}  {a}\n" for nm, a in zip(names, attrs, strict=True)))
    (base / "list_eval_partition.txt").write_text(
        "".join(f"{nm} {[0, 1, 2, 0][k % 4]}\n" for k, nm in enumerate(names, 1)))
    (base / "identity_CelebA.txt").write_text("".join(f"{nm} {k}\n" for k, nm in enumerate(names, 1)))
    (base / "list_bbox_celeba.txt").write_text(
        f"{n}\nimage_id x_1 y_1 width height\n" + "".join(f"{nm} 95 71 226 313\n" for nm in names))
    (base / "list_landmarks_align_celeba.txt").write_text(
        f"{n}\nlefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y\n"
        + "".join(f"{nm} 69 109 106 113 77 142 73 152 108 154\n" for nm in names))
    return root


CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def make_cifar(root, per_batch: int = 4):
    """cifar-10-batches-py/ in CIFAR's python pickle format: 5 training batches and a test batch of
    solid-colour 32 x 32 images whose red level encodes the label (25 * label)."""
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    for b, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        labels = [(b * per_batch + i) % 10 for i in range(per_batch)]
        data = np.zeros((per_batch, 3, 32, 32), dtype=np.uint8)
        for i, y in enumerate(labels):
            data[i, 0], data[i, 1], data[i, 2] = 25 * y, 100, 200
        with open(base / name, "wb") as f:
            pickle.dump({"batch_label": name, "labels": labels, "data": data.reshape(per_batch, 3072),
                         "filenames": [f"{name}_{i}.png" for i in range(per_batch)]}, f)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": list(CIFAR_CLASSES), "num_cases_per_batch": per_batch, "num_vis": 3072}, f)
    return root


# ------------------------------------------------------------------ absent: a clear offline message
@pytest.mark.parametrize("name, inner, call", [
    ("pets", "oxford-iiit-pet", "OxfordIIITPet("),
    ("voc", "VOCdevkit/VOC2012", "VOCDetection("),
    ("celeba", "celeba", "CelebA("),
    ("cifar10", "cifar-10-batches-py", "CIFAR10("),
])
def test_an_absent_dataset_says_where_it_was_expected_and_how_to_get_it(tmp_path, name, inner, call):
    with pytest.raises(DatasetUnavailableError) as err:
        build_dataset(cfg_for(name, tmp_path), "train")
    message = str(err.value)
    assert f"expected {tmp_path / inner}" in message
    assert f"python -c \"import torchvision; torchvision.datasets.{call}'{tmp_path}'" in message
    assert "download=True" in message
    with pytest.raises(ConfigError, match=f"data.root: the {name} dataset needs data.root.*{inner}"):
        build_dataset(cfg_for(name, ""), "train")


def test_files_that_fail_torchvisions_own_check_are_reported_as_corrupted(tmp_path):
    make_cifar(tmp_path)  # without md5_is_existence: torchvision rejects the fake's md5s
    with pytest.raises(DatasetUnavailableError, match="incomplete or corrupted.*download it again with: python -c"):
        build_dataset(cfg_for("cifar10", tmp_path), "train")


# ------------------------------------------------------------------ pets
def test_pets_gives_breed_and_trimap_segmentation(tmp_path):
    make_pets(tmp_path)
    splits = everything("pets", tmp_path)
    info = splits["train"].info
    assert info.class_names == ("Abyssinian", "American Bulldog", "Bengal") and info.tasks == ("classification", "segmentation")
    stems = {s: [ds.tv._images[k].stem for k in ds.indices] for s, ds in splits.items()}
    assert sorted(stems["train"] + stems["val"]) == sorted(f"{b}_{k}" for b, _, _ in PET_BREEDS for k in range(1, 5))
    assert (len(stems["val"]), sorted(stems["test"])) == (1, ["Abyssinian_5", "Bengal_5", "american_bulldog_5"])
    seen_missing = False
    for ds in splits.values():
        for i in range(len(ds)):
            image, t = ds[i]
            stem, label = ds.tv._images[ds.indices[i]].stem, int(t["classification"])
            assert image.shape == (3, 32, 32)
            assert info.class_names[label].lower().replace(" ", "_") == stem.rsplit("_", 1)[0].lower()
            seg = t["segmentation"]
            if stem == "Bengal_3":
                seen_missing = True
                assert t["valid"] == {"classification": True, "segmentation": False} and (seg == 255).all()
                continue
            assert t["valid"] == {"classification": True, "segmentation": True}
            expected = torch.zeros(32, 32, dtype=torch.long)
            expected[6:26, 6:26] = 255  # the border band, at half size
            expected[8:24, 8:24] = label + 1  # the pet, labelled with its breed
            assert torch.equal(seg, expected), stem
    assert seen_missing


def test_root_may_name_the_inner_folder(tmp_path):
    make_pets(tmp_path)
    ds = PetsDataset(cfg_for("pets", tmp_path / "oxford-iiit-pet"), "test")
    assert len(ds) == 3


# ------------------------------------------------------------------ voc
def test_voc_boxes_masks_and_splits(tmp_path):
    make_voc(tmp_path)
    splits = everything("voc", tmp_path, resize="stretch")  # x scales by 1/2, y by 1/4
    stems = {s: [os.path.basename(ds.tv.images[k])[:-4] for k in ds.indices] for s, ds in splits.items()}
    assert sorted(stems["train"]) == [f"2000_{i:06d}" for i in range(6)]  # VOC's own train list
    assert sorted(stems["val"] + stems["test"]) == [f"2001_{i:06d}" for i in range(6)]  # its val list, halved
    assert len(stems["val"]) == len(stems["test"]) == 3
    dog, person = VOC_CLASSES.index("dog"), VOC_CLASSES.index("person")
    ds = splits["train"]
    for i in range(len(ds)):
        image, t = ds[i]
        stem = stems["train"][i]
        k = int(stem[-1])
        assert image.shape == (3, 32, 32)
        if stem == "2000_000003":
            assert len(t["detection"]["labels"]) == 0 and t["valid"]["classification"] is False
            continue
        # 1-based inclusive 9..24 x 17..48 is [8, 24) x [16, 48); at (1/2, 1/4) scale [4, 12) x [4, 12)
        boxes = [[4.0, 4.0, 12.0, 12.0]] + ([[16.0, 16.0, 32.0, 24.0]] if k % 2 == 0 else [])
        torch.testing.assert_close(t["detection"]["boxes"], torch.tensor(boxes))
        assert t["detection"]["labels"].tolist() == [dog] + ([person] if k % 2 == 0 else [])
        assert int(t["classification"]) == (person if k % 2 == 0 else dog)  # the largest object
        assert int(t["count"]) == len(boxes) and int(t["multilabel"].sum()) == len(boxes)
        assert t["valid"]["segmentation"] is (k % 2 == 0)
        if k % 2 == 0:
            expected = torch.zeros(32, 32, dtype=torch.long)
            expected[4:12, 4:12] = dog + 1
            expected[16:24, 16:32] = person + 1
            expected[3, :] = 255  # output row 3 takes stored row 14 (nearest to its centre, 4 * 3.5)
            assert torch.equal(t["segmentation"], expected)
        else:
            assert (t["segmentation"] == 255).all()


# ------------------------------------------------------------------ celeba
def test_celeba_attributes_as_multilabel_with_the_official_partition(tmp_path, md5_is_existence):
    make_celeba(tmp_path)
    splits = everything("celeba", tmp_path)
    assert splits["train"].info.class_names == CELEBA_ATTRS and splits["val"].info.tasks == ("multilabel", *CELEBA_ATTRS)
    ids = {s: sorted(int(ds.tv.filename[k][:6]) for k in ds.indices) for s, ds in splits.items()}
    assert ids == {"train": [3, 4, 7, 8, 11, 12], "val": [1, 5, 9], "test": [2, 6, 10]}
    for ds in splits.values():
        for i in range(len(ds)):
            image, t = ds[i]
            k = int(ds.tv.filename[ds.indices[i]][:6])
            assert image.shape == (3, 32, 32)
            assert t["multilabel"].tolist() == [float(k >> j & 1) for j in range(len(CELEBA_ATTRS))]


# ------------------------------------------------------------------ cifar10
def test_cifar10_reads_the_pickled_batches(tmp_path, md5_is_existence):
    make_cifar(tmp_path)
    splits = everything("cifar10", tmp_path)
    assert splits["test"].info.class_names == CIFAR_CLASSES
    assert (len(splits["train"]), len(splits["val"]), len(splits["test"])) == (18, 2, 4)
    assert not set(splits["train"].indices.tolist()) & set(splits["val"].indices.tolist())
    for ds in splits.values():
        images, targets = ds.get_batch(list(range(len(ds))))
        assert images.shape == (len(ds), 3, 32, 32)
        # solid colours survive resizing; the red level is 25 * label
        torch.testing.assert_close(images[:, 0, 5, 7] * 255, targets["classification"].float() * 25)
        torch.testing.assert_close(images[:, 2].mean(), torch.tensor(200 / 255))
        image, t = ds[1]
        assert torch.equal(image, images[1]) and int(t["classification"]) == int(targets["classification"][1])
    big = build_dataset(DataConfig(dataset="cifar10", root=str(tmp_path), image_size=64), "test")
    assert big[0][0].shape == (3, 64, 64)


# ------------------------------------------------------------------ a short run on each fake
@pytest.mark.parametrize("name, make, cls", [
    ("pets", make_pets, PetsDataset), ("voc", make_voc, VocDataset),
    ("celeba", make_celeba, CelebADataset), ("cifar10", make_cifar, Cifar10Dataset),
])
def test_a_short_run_trains_on_each_fake(tmp_path, md5_is_existence, name, make, cls):
    from mtl_core.runs.manager import RunManager
    from mtl_core.tasks import TASKS

    make(tmp_path / "data")
    tasks = tuple(t for t in cls.supplies if t in TASKS)
    assert tasks
    cfg = ExperimentConfig(name=name, tasks=tasks, device="cpu", eval_every=3, checkpoint_every=0,
                           data=cfg_for(name, tmp_path / "data"), optim=OptimConfig(batch_size=4, steps=3, warmup_steps=0))
    m = RunManager(tmp_path / "runs", max_concurrent=1)
    try:
        rid = m.start(cfg)
        assert m.wait(rid, 120) == "finished", m.store.get_run(rid).get("error")
        losses = {r[2]: r[3] for r in m.store.metrics(rid, "train", key_prefix="loss/")}
        assert {f"loss/{t}" for t in tasks} <= set(losses) and all(math.isfinite(v) for v in losses.values())
    finally:
        m.shutdown()
