"""The image-folder adapter on a tiny folder of coloured images: classes from the subfolders,
images read at image_size, fixed disjoint splits, clear errors; and a short run."""
from __future__ import annotations

import math

import pytest
import torch
from PIL import Image

from mtl_core.config import DataConfig, ExperimentConfig, OptimConfig
from mtl_core.data import build_dataset
from mtl_core.data.image_folder import ImageFolderDataset, partition
from mtl_core.errors import ConfigError

COLOURS = {"blue": (20, 30, 220), "green": (30, 200, 40), "red": (230, 20, 30)}


def make_folder(root, per_class: int = 4):
    """``root/<colour>/<i>.png``: a grey 48 x 40 picture with a big rectangle of that colour."""
    for name, rgb in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            im = Image.new("RGB", (48, 40), (120, 120, 120))
            im.paste(rgb, (4 + i, 4, 44, 36))
            im.save(root / name / f"{i}.{'png' if i % 2 else 'jpg'}")
    return root


def cfg_for(root, **kw) -> DataConfig:
    return DataConfig(dataset="image_folder", root=str(root), image_size=32, **kw)


def test_classes_are_the_subfolders_and_each_image_shows_its_class(tmp_path):
    make_folder(tmp_path)
    seen = 0
    for split in ("train", "val", "test"):
        ds = build_dataset(cfg_for(tmp_path), split)
        assert ds.info.class_names == ("blue", "green", "red") and ds.info.tasks == ("classification",)
        for i in range(len(ds)):
            image, t = ds[i]
            assert image.shape == (3, 32, 32) and image.dtype == torch.float32
            assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
            # the rectangle's colour wins the channel means: blue -> channel 2, green -> 1, red -> 0
            channel = int(image.mean(dim=(1, 2)).argmax())
            assert {0: "red", 1: "green", 2: "blue"}[channel] == ds.info.class_names[int(t["classification"])]
            assert t["valid"] == {"classification": True}
            seen += 1
    assert seen == 12


def test_hidden_folders_are_not_classes(tmp_path):
    make_folder(tmp_path)
    (tmp_path / ".ipynb_checkpoints").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / ".ipynb_checkpoints" / "x.png")
    assert ImageFolderDataset(cfg_for(tmp_path), "train").info.class_names == ("blue", "green", "red")


def test_splits_are_disjoint_cover_all_images_and_are_fixed(tmp_path):
    make_folder(tmp_path)

    def files(split: str, seed: int = 0, **kw) -> list[str]:
        ds = ImageFolderDataset(cfg_for(tmp_path, **kw), split, seed)
        return [ds.samples[k][0] for k in ds.indices]

    train, val, test = files("train"), files("val"), files("test")
    assert sorted(train + val + test) == sorted(str(p) for p in tmp_path.rglob("*.*"))
    assert (len(train), len(val), len(test)) == (10, 1, 1)
    assert files("train", seed=7) == train and files("test", seed=7) == test  # not the run's seed: same test set
    assert files("train", train_size=4) == train[:4]
    assert ImageFolderDataset(cfg_for(tmp_path, train_size=4), "train").available == 10


def test_partition_keeps_every_split_non_empty_and_proportional():
    parts = partition(3)
    assert sorted(sum(parts.values(), [])) == [0, 1, 2] and all(len(p) == 1 for p in parts.values())
    parts = partition(1000)
    assert [len(parts[s]) for s in ("train", "val", "test")] == [800, 100, 100]
    assert sorted(sum(parts.values(), [])) == list(range(1000))
    assert partition(1000) == parts


def test_bad_roots_say_what_is_expected(tmp_path):
    with pytest.raises(ConfigError, match="data.root: the image_folder dataset needs data.root"):
        ImageFolderDataset(cfg_for(""), "train")
    with pytest.raises(ConfigError, match="nowhere does not exist.*subfolder of images per class"):
        ImageFolderDataset(cfg_for(tmp_path / "nowhere"), "train")
    Image.new("RGB", (8, 8)).save(tmp_path / "loose.png")
    with pytest.raises(ConfigError, match="no class subfolders.*one subfolder of images per class"):
        ImageFolderDataset(cfg_for(tmp_path), "train")
    (tmp_path / "cat").mkdir()
    with pytest.raises(ConfigError, match="wrong layout.*cat"):  # a class without images
        ImageFolderDataset(cfg_for(tmp_path), "train")
    Image.new("RGB", (8, 8)).save(tmp_path / "cat" / "a.png")
    with pytest.raises(ConfigError, match="holds 1 images; at least 3"):
        ImageFolderDataset(cfg_for(tmp_path), "train")
    with pytest.raises(ConfigError, match="unknown split"):
        ImageFolderDataset(cfg_for(tmp_path), "dev")


def test_a_short_run_trains_on_an_image_folder(tmp_path):
    from mtl_core.runs.manager import RunManager

    make_folder(tmp_path / "data")
    cfg = ExperimentConfig(name="folder", tasks=ImageFolderDataset.supplies, device="cpu", eval_every=3,
                           checkpoint_every=0, data=cfg_for(tmp_path / "data"),
                           optim=OptimConfig(batch_size=4, steps=3, warmup_steps=0))
    m = RunManager(tmp_path / "runs", max_concurrent=1)
    try:
        rid = m.start(cfg)
        assert m.wait(rid, 120) == "finished", m.store.get_run(rid).get("error")
        losses = [r[3] for r in m.store.metrics(rid, "train", key_prefix="loss/classification")]
        assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
        assert any(r[2] == "classification/accuracy" for r in m.store.metrics(rid, "test"))
    finally:
        m.shutdown()
