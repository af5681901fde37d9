"""NYUv2 and Cityscapes in the .npy layout of MTAN's preprocessed archives (what LibMTL, CAGrad,
Nash-MTL and FAMO read): tiny fakes with random arrays in the published channel layout and dtypes,
read back exactly, split as documented, refused clearly when absent, and trained for a few steps."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mtl_core.config import DataConfig, ExperimentConfig, TaskSpec
from mtl_core.data import DATASETS, build_dataset
from mtl_core.data.mtan_npy import CITYSCAPES_19, NYUV2_CLASSES, SPLIT_PROTOCOL
from mtl_core.errors import ConfigError, DatasetUnavailableError
from mtl_core.tasks import build_task

pytestmark = pytest.mark.usefixtures("one_thread", "no_network")

HW = (32, 48)  # the fakes' (height, width): small, with the published channel layout



def make_npy(root, labels=("label",), normals=True, n_train=4, n_val=3, hw=HW, classes=13, seed=0):
    """``root/{train,val}/{image,<labels>,depth[,normal]}/<i>.npy`` as MTAN ships them: image float64
    (H, W, 3) in [0, 1); labels float (H, W) in -1..classes-1; depth float32 (H, W, 1) with a band of
    zeros (no label); normals float32 (H, W, 3) unit vectors, zeros where depth is missing. Each
    image's red channel at (0, 0) is its index / 100, so a sample says which file it came from."""
    rng = np.random.default_rng(seed)
    h, w = hw
    for split, n in (("train", n_train), ("val", n_val)):
        for folder in ("image", *labels, "depth", *(("normal",) if normals else ())):
            (root / split / folder).mkdir(parents=True)
        for i in range(n):
            image = rng.random((h, w, 3))
            image[0, 0, 0] = i / 100
            np.save(root / split / "image" / f"{i}.npy", image)
            for folder in labels:
                k = 19 if folder == "label_19" else classes
                label = rng.integers(-1, k, (h, w)).astype(np.float32)
                label[0, :3] = [-1, k - 1, 0]
                np.save(root / split / folder / f"{i}.npy", label)
            depth = (rng.random((h, w, 1)) * 9 + 0.5).astype(np.float32)
            depth[-4:] = 0.0  # the bottom rows: no depth measured
            np.save(root / split / "depth" / f"{i}.npy", depth)
            if normals:
                n3 = rng.normal(size=(h, w, 3))
                n3 /= np.linalg.norm(n3, axis=-1, keepdims=True)
                n3[-4:] = 0.0
                np.save(root / split / "normal" / f"{i}.npy", n3.astype(np.float32))
    return root


def data(name, root, **kw) -> DataConfig:
    return DataConfig(dataset=name, root=str(root), image_size=kw.pop("image_size", HW), **kw)


def index_of(image: torch.Tensor) -> int:
    return round(float(image[0, 0, 0]) * 100)


# ------------------------------------------------------------------ reading
def test_nyuv2_samples_are_the_files_in_our_format(tmp_path):
    make_npy(tmp_path)
    ds = build_dataset(data("nyuv2", tmp_path), "test")
    assert ds.info.class_names == NYUV2_CLASSES and ds.info.tasks == ("segmentation", "depth", "normals")
    assert ds.info.specs["segmentation"].options == {"ignore_index": 255, "background": 0}
    assert ds.info.specs["normals"] == TaskSpec(kind="normals")
    for i in range(len(ds)):
        image, t = ds[i]
        j = index_of(image)
        folder = tmp_path / "val"
        assert image.dtype == torch.float32 and image.shape == (3, *HW)
        torch.testing.assert_close(image, torch.from_numpy(np.moveaxis(np.load(folder / "image" / f"{j}.npy"), -1, 0)).float())
        seg = t["segmentation"]
        assert seg.dtype == torch.long and seg.shape == HW and seg[0, :3].tolist() == [255, 12, 0]  # -1 -> 255
        raw = np.load(folder / "label" / f"{j}.npy")
        assert torch.equal(seg, torch.from_numpy(np.where(raw < 0, 255, raw).astype(np.int64)))
        depth = t["depth"]
        assert depth.dtype == torch.float32 and depth.shape == (1, *HW)
        assert torch.equal(depth, torch.from_numpy(np.moveaxis(np.load(folder / "depth" / f"{j}.npy"), -1, 0)))
        assert (depth[:, -4:] == 0).all() and (depth[:, :-4] > 0).all()
        normals = t["normals"]
        assert normals.dtype == torch.float32 and normals.shape == (3, *HW) and (normals[:, -4:] == 0).all()
        torch.testing.assert_close(normals[:, :-4].norm(dim=0), torch.ones(HW[0] - 4, HW[1]))
        assert t["valid"] == {"segmentation": True, "depth": True, "normals": True}


def test_unlabelled_depth_pixels_count_for_nothing(tmp_path):
    make_npy(tmp_path)
    ds = build_dataset(data("nyuv2", tmp_path), "train")
    task = build_task("depth", ds.info)
    _, t = ds[0]
    target = t["depth"][None]  # (1, 1, H, W)
    good = target.clone()
    good[..., -4:, :] = 3.0  # differs only where depth is 0
    assert task.metrics(good, target) == task.metrics(target.clone(), target)
    assert task.metrics(target.clone(), target)["abs_err"] == 0.0
    assert float(task.loss(good, target)) == pytest.approx(0.0, abs=1e-6)


def test_the_segmentation_task_has_one_output_per_class_and_no_background(tmp_path):
    make_npy(tmp_path)
    info = build_dataset(data("nyuv2", tmp_path), "val").info
    seg = build_task("segmentation", info)
    assert seg.num_outputs == 13 and seg.class_names == NYUV2_CLASSES and seg.display.label_name(0) == "bed"
    assert build_task("depth", info).depth_max == 10.0  # metres


def test_only_the_configs_tasks_are_read(tmp_path):
    make_npy(tmp_path, normals=False)  # no normal/ folder: fine while normals is not asked for
    cfg = ExperimentConfig(tasks=("segmentation", "depth"), data=data("nyuv2", tmp_path))
    image, t = build_dataset(cfg, "train")[0]
    assert set(t) == {"segmentation", "depth", "valid"}
    with pytest.raises(DatasetUnavailableError, match=r"expected .*train[/\\]normal \(the normals labels"):
        build_dataset(ExperimentConfig(tasks=("normals",), data=data("nyuv2", tmp_path)), "train")


# ------------------------------------------------------------------ splits
def test_test_is_their_val_folder_and_val_a_fixed_held_out_part_of_train(tmp_path):
    make_npy(tmp_path, n_train=20, n_val=5)
    split = {s: build_dataset(data("nyuv2", tmp_path), s) for s in ("train", "val", "test")}
    files = {s: sorted(index_of(ds[i][0]) for i in range(len(ds))) for s, ds in split.items()}
    assert files["test"] == list(range(5))  # every image of the published val folder
    assert len(files["val"]) == 2 and len(files["train"]) == 18  # 10% of 20 held out
    assert sorted(files["train"] + files["val"]) == list(range(20)) and not set(files["train"]) & set(files["val"])
    again = build_dataset(data("nyuv2", tmp_path), "val", seed=7)  # the run's seed does not move it
    assert again.indices == split["val"].indices
    assert "test = the published val folder" in SPLIT_PROTOCOL and DATASETS.get("nyuv2").split_note == SPLIT_PROTOCOL
    capped = build_dataset(data("nyuv2", tmp_path, test_size=3, train_size=4), "test")
    assert len(capped) == 3 and capped.available == 5
    assert len(build_dataset(data("nyuv2", tmp_path, train_size=4), "train")) == 4


# ------------------------------------------------------------------ another size
def test_another_image_size_resizes_images_bilinearly_and_labels_by_nearest(tmp_path):
    make_npy(tmp_path)
    full = build_dataset(data("nyuv2", tmp_path), "test")
    half = build_dataset(data("nyuv2", tmp_path, image_size=(16, 24)), "test")
    for i in range(len(full)):
        (image, t), (small, s) = full[i], half[i]
        assert small.shape == (3, 16, 24) and s["segmentation"].shape == (16, 24) and s["depth"].shape == (1, 16, 24)
        assert s["normals"].shape == (3, 16, 24) and 0.0 <= float(small.min()) and float(small.max()) <= 1.0
        # nearest at pixel centres: output (y, x) takes input (2y + 1, 2x + 1)
        assert torch.equal(s["segmentation"], t["segmentation"][1::2, 1::2])
        assert torch.equal(s["depth"], t["depth"][:, 1::2, 1::2]) and torch.equal(s["normals"], t["normals"][:, 1::2, 1::2])
        bilinear = torch.nn.functional.interpolate(image[None], size=(16, 24), mode="bilinear", antialias=True)[0]
        torch.testing.assert_close(small, bilinear.clamp(0, 1), atol=1e-5, rtol=0)
    again = half[0]  # the second read comes from the cache and is the same
    assert torch.equal(again[0], half[0][0]) and torch.equal(again[1]["segmentation"], half[0][1]["segmentation"])


# ------------------------------------------------------------------ cityscapes
def test_cityscapes_reads_label_7_unless_the_segmentation_spec_names_label_19(tmp_path):
    make_npy(tmp_path, labels=("label_7", "label_19"), normals=False, classes=7)
    plain = build_dataset(ExperimentConfig(tasks=("segmentation", "depth"), data=data("cityscapes", tmp_path)), "val")
    assert plain.info.tasks == ("segmentation", "depth") and len(plain.info.class_names) == 7
    _, t = plain[0]
    assert t["segmentation"][0, :3].tolist() == [255, 6, 0] and set(t["segmentation"].unique().tolist()) <= {*range(7), 255}
    nineteen = ExperimentConfig(tasks=("segmentation",), data=data("cityscapes", tmp_path),
                                task_specs={"segmentation": TaskSpec(column="label_19")})
    ds = build_dataset(nineteen, "val")
    assert ds.info.class_names == CITYSCAPES_19 and ds.info.specs["segmentation"].column == "label_19"
    _, t = ds[0]
    assert set(t) == {"label_19", "valid"} and t["label_19"][0, :3].tolist() == [255, 18, 0]
    task = build_task("segmentation", ds.info, nineteen.task_specs["segmentation"])
    assert task.target_name() == "label_19" and task.num_outputs == 19
    with pytest.raises(ConfigError, match="task_specs.segmentation.column: 'label_20' is not a label folder of "
                                          "cityscapes; choose one of: label_7, label_19"):
        build_dataset(ExperimentConfig(tasks=("segmentation",), data=data("cityscapes", tmp_path),
                                       task_specs={"segmentation": TaskSpec(column="label_20")}), "val")


def test_cityscapes_as_libmtl_names_it_reads_label_as_the_7_classes(tmp_path):
    make_npy(tmp_path / "cityscapes", labels=("label",), normals=False, classes=7)
    ds = build_dataset(data("cityscapes", tmp_path), "test")  # root/cityscapes found too
    _, t = ds[0]
    assert len(ds) == 3 and len(ds.info.class_names) == 7 and t["segmentation"][0, :3].tolist() == [255, 6, 0]


# ------------------------------------------------------------------ absent or wrong
@pytest.mark.parametrize("name, link", [("nyuv2", "86nssgwm6hm3vkb"), ("cityscapes", "gaw6vh6qusoyms6")])
def test_an_absent_dataset_names_the_path_the_layout_and_where_to_get_it(tmp_path, name, link):
    with pytest.raises(ConfigError, match=f"data.root: the {name} dataset needs data.root: set it to the folder "
                                          f"holding train/ and val/.*dropbox.com/sh/{link}"):
        build_dataset(data(name, ""), "train")
    with pytest.raises(DatasetUnavailableError) as err:
        build_dataset(data(name, tmp_path / "nowhere"), "train")
    message = str(err.value)
    assert f"expected {tmp_path / 'nowhere' / 'train' / 'image'}" in message and f"dropbox.com/sh/{link}" in message
    assert "Nothing is downloaded here" in message and "lorenmt/mtan" in message


def test_a_partial_copy_or_images_outside_0_1_are_refused_with_the_file(tmp_path):
    make_npy(tmp_path)
    (tmp_path / "val" / "depth" / "2.npy").unlink()
    with pytest.raises(ConfigError, match=r"val[/\\]depth holds 2 .npy files but .*val[/\\]image holds 3: the copy is incomplete"):
        build_dataset(data("nyuv2", tmp_path), "test")
    other = make_npy(tmp_path / "bytes")
    np.save(other / "train" / "image" / "0.npy", np.full((*HW, 3), 200.0))
    with pytest.raises(ConfigError, match=r"0.npy has values up to 200; expected RGB in \[0, 1\]"):
        build_dataset(data("nyuv2", other), "train")


# ------------------------------------------------------------------ a short run
def test_a_short_run_on_the_nyuv2_folder_learns_segmentation_and_depth(tmp_path):
    import math

    from mtl_core.store.store import RunStore
    from mtl_core.training.loop import Trainer
    from mtl_core.training.validation import check

    make_npy(tmp_path / "nyuv2")
    cfg = check(ExperimentConfig.from_dict({
        "tasks": ["segmentation", "depth"], "device": "cpu",
        "data": {"dataset": "nyuv2", "root": str(tmp_path / "nyuv2"), "image_size": list(HW)},
        "model": {"width": 4}, "optim": {"steps": 3, "batch_size": 2, "warmup_steps": 0},
        "eval_every": 3, "first_eval": 0, "checkpoint_every": 0}))
    store = RunStore(tmp_path / "runs")
    run_id = store.create_run(cfg.to_dict(), "nyuv2", "test", 3)
    Trainer(cfg, store, run_id).run()
    assert store.get_run(run_id)["status"] == "finished", store.get_run(run_id).get("error")
    val = {key: value for _, _, key, value, _ in store.metrics(run_id, "val")}
    assert {"segmentation/miou", "segmentation/pixel_acc", "depth/abs_err", "depth/abs_rel"} <= set(val)
    assert all(math.isfinite(v) for v in val.values())


def test_the_data_pages_summary_and_pictures_list_every_supplied_task(tmp_path):
    from mtl_core.views.preview import dataset_summary, sample_overlays

    make_npy(tmp_path)
    cfg = ExperimentConfig(tasks=("segmentation", "depth"), data=data("nyuv2", tmp_path))
    summary = dataset_summary(cfg)
    tasks = {t["name"]: t for t in summary["tasks"]}
    assert summary["sizes"] == {"train": 3, "val": 1, "test": 3} and set(tasks) == {"segmentation", "depth", "normals"}
    assert tasks["segmentation"]["classes"] == 13 and tasks["segmentation"]["available"]
    (picture,) = sample_overlays(cfg, "test", [0])
    assert picture.ndim == 3 and picture.shape[-1] == 3 and picture.dtype == np.uint8
