"""CelebA's 40 attributes as 40 binary tasks: a tiny fake in torchvision's folder layout with the
text files in their published format (count and header lines, space-aligned columns) read through
torchvision itself, the official partition, the attribute groups, and a short run on two attributes."""
from __future__ import annotations

import math
import os

import pytest
import torch
import torchvision.datasets.celeba
from PIL import Image

from mtl_core.config import DataConfig, ExperimentConfig
from mtl_core.data import build_dataset
from mtl_core.data.celeba import CELEBA_ATTRIBUTES, CELEBA_GROUPS, celeba_tasks, expand_task_groups
from mtl_core.errors import ConfigError, DatasetUnavailableError
from mtl_core.tasks import build_task
from mtl_core.training.validation import validate

pytestmark = pytest.mark.usefixtures("one_thread")

PARTITION = {1: 0, 2: 0, 3: 0, 4: 0, 5: 1, 6: 2}  # image k -> 0 train, 1 valid, 2 test


@pytest.fixture(autouse=True)
def offline(no_network, monkeypatch):
    """No network; torchvision's md5 check of the lists reduced to "the file exists" (no fake can
    match the published md5s; the rest of torchvision's reading runs as it does on the real files)."""
    monkeypatch.setattr(torchvision.datasets.celeba, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))


def has(k: int, j: int) -> bool:
    """Whether face k (1-based) has attribute j (0-based): Smiling (31) on odd faces, Male (20) on k <= 3."""
    if j == 31:
        return k % 2 == 1
    if j == 20:
        return k <= 3
    return (k + j) % 5 == 0


def make_celeba(root, attrs=CELEBA_ATTRIBUTES):
    """celeba/ with 6 aligned 178 x 218 JPEGs of one colour each and the five lists as published:
    list_attr's first line the count, the second the names (ending in a space), then rows of
    "000001.jpg -1  1 ..." aligned by spaces; the partition and identity lists without header; the
    box and landmark lists with count and header lines."""
    base = root / "celeba"
    (base / "img_align_celeba").mkdir(parents=True)
    names = [f"{k:06d}.jpg" for k in range(1, 7)]
    for k, name in enumerate(names, 1):
        Image.new("RGB", (178, 218), (40 * k, 90, 160)).save(base / "img_align_celeba" / name, quality=95)
    rows = "".join(f"{nm} " + " ".join(f"{1 if has(k, j) else -1:2d}" for j in range(len(attrs))) + "\n"
                   for k, nm in enumerate(names, 1))
    (base / "list_attr_celeba.txt").write_text(f"{len(names)}\n{' '.join(attrs)} \n{rows}")
    (base / "list_eval_partition.txt").write_text("".join(f"{nm} {PARTITION[k]}\n" for k, nm in enumerate(names, 1)))
    (base / "identity_CelebA.txt").write_text("".join(f"{nm} {2880 + k}\n" for k, nm in enumerate(names, 1)))
    (base / "list_bbox_celeba.txt").write_text(
        f"{len(names)}\nimage_id x_1 y_1 width height\n" + "".join(f"{nm}    95  71 226 313\n" for nm in names))
    (base / "list_landmarks_align_celeba.txt").write_text(
        f"{len(names)}\nlefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x "
        "rightmouth_y\n" + "".join(f"{nm}    69  109  106  113   77  142   73  152  108  154\n" for nm in names))
    return root


def config(root, tasks, **data) -> ExperimentConfig:
    return ExperimentConfig(tasks=tuple(tasks), data=DataConfig(dataset="celeba", root=str(root),
                                                                image_size=data.pop("image_size", 64), **data))


def face(ds, i: int) -> int:
    return int(ds.tv.filename[ds.indices[i]][:6])


# ------------------------------------------------------------------ tasks and samples
def test_each_attribute_is_a_binary_task_of_its_own(tmp_path):
    make_celeba(tmp_path)
    ds = build_dataset(config(tmp_path, ["Smiling", "Male"]), "train")
    info = ds.info
    assert info.tasks == ("multilabel", *CELEBA_ATTRIBUTES) and info.class_names == CELEBA_ATTRIBUTES
    assert {t: s.kind for t, s in info.specs.items()} == {a: "binary" for a in CELEBA_ATTRIBUTES}
    smiling = build_task("Smiling", info)
    assert smiling.kind == "binary" and smiling.target_name() == "Smiling" and smiling.class_names == ("no", "yes")
    for i in range(len(ds)):
        image, t = ds[i]
        k = face(ds, i)
        assert image.shape == (3, 64, 64)
        assert set(t) == {"Smiling", "Male", "valid"}  # only the config's tasks
        assert t["Smiling"].dtype == torch.long and int(t["Smiling"]) == int(has(k, 31))  # the file's -1 is 0
        assert int(t["Male"]) == int(has(k, 20)) and t["valid"] == {"Smiling": True, "Male": True}


def test_without_a_task_list_every_attribute_and_the_multilabel_target_are_there(tmp_path):
    make_celeba(tmp_path)
    ds = build_dataset(DataConfig(dataset="celeba", root=str(tmp_path), image_size=64), "test")
    _, t = ds[0]
    assert set(t) == {*CELEBA_ATTRIBUTES, "multilabel", "valid"}
    assert t["multilabel"].tolist() == [float(t[a]) for a in CELEBA_ATTRIBUTES]


def test_the_official_partition_and_the_size_caps(tmp_path):
    make_celeba(tmp_path)
    splits = {s: build_dataset(config(tmp_path, ["Smiling"]), s) for s in ("train", "val", "test")}
    assert {s: sorted(face(ds, i) for i in range(len(ds))) for s, ds in splits.items()} == \
        {"train": [1, 2, 3, 4], "val": [5], "test": [6]}
    capped = build_dataset(config(tmp_path, ["Smiling"], train_size=2), "train")
    assert len(capped) == 2 and capped.available == 4


def test_faces_are_stretched_to_the_size_as_the_literature_does_unless_told(tmp_path):
    make_celeba(tmp_path)
    stretched, _ = build_dataset(config(tmp_path, ["Male"]), "test")[0]
    colour = torch.tensor([240, 90, 160]) / 255  # face 6's colour, everywhere: no letterbox band
    assert (stretched - colour.view(3, 1, 1)).abs().max() < 0.03
    boxed, _ = build_dataset(config(tmp_path, ["Male"], resize="letterbox"), "test")[0]
    assert (boxed[:, :, :4] == 0.5).all()  # 178 x 218 is narrower than square: grey bands left and right


def test_an_attribute_the_header_lacks_is_named_with_the_header(tmp_path):
    make_celeba(tmp_path, attrs=CELEBA_ATTRIBUTES[:39])  # no Young
    with pytest.raises(ConfigError, match="tasks: 'Young' is not an attribute of .*list_attr_celeba.txt; its header "
                                          "names: 5_o_Clock_Shadow, Arched_Eyebrows"):
        build_dataset(config(tmp_path, ["Smiling", "Young"]), "train")


def test_an_absent_celeba_says_where_it_was_expected_and_how_to_get_it(tmp_path):
    with pytest.raises(DatasetUnavailableError, match=f"expected {tmp_path / 'celeba'}.*CelebA\\('{tmp_path}'"):
        build_dataset(config(tmp_path, ["Smiling"]), "train")


def test_validation_knows_the_attributes_without_opening_the_files(tmp_path):
    assert validate(config(tmp_path / "nowhere", ["Smiling", "Male"])) == []
    (err,) = [e for e in validate(config(tmp_path / "nowhere", ["Smilling"])) if e.field == "tasks"]
    assert "unknown task 'Smilling'" in err.message and "did you mean Smiling?" in err.message


# ------------------------------------------------------------------ groups
def test_the_groups_cover_the_forty_attributes_once():
    regions = [g for name, g in CELEBA_GROUPS.items() if name != "all"]
    assert len(regions) == 9 and sorted(a for g in regions for a in g) == sorted(CELEBA_ATTRIBUTES)
    assert CELEBA_GROUPS["all"] == CELEBA_ATTRIBUTES
    assert celeba_tasks("mouth") == ("Big_Lips", "Smiling", "Wearing_Lipstick", "Mouth_Slightly_Open")
    assert expand_task_groups(["celeba:cheeks", "Smiling", "celeba:mouth"]) == \
        ("High_Cheekbones", "Rosy_Cheeks", "Smiling", "Big_Lips", "Wearing_Lipstick", "Mouth_Slightly_Open")
    with pytest.raises(ConfigError, match="unknown CelebA attribute group 'hair'; choose one of: gender, nose"):
        celeba_tasks("hair")


def test_the_cli_expands_a_group_in_tasks():
    from mtl_core.cli import _parser, config_from_args

    a = _parser().parse_args(["train", "--dataset", "celeba", "--data-root", "/x", "--tasks", "celeba:nose,Male"])
    assert config_from_args(a).tasks == ("Big_Nose", "Pointy_Nose", "Male")


# ------------------------------------------------------------------ a short run
def test_a_short_run_learns_smiling_and_male(tmp_path):
    from mtl_core.store.store import RunStore
    from mtl_core.training.loop import Trainer
    from mtl_core.training.validation import check

    make_celeba(tmp_path / "data")
    cfg = check(ExperimentConfig.from_dict({
        "tasks": ["Smiling", "Male"], "device": "cpu",
        "data": {"dataset": "celeba", "root": str(tmp_path / "data"), "image_size": 32},
        "model": {"width": 4}, "optim": {"steps": 3, "batch_size": 2, "warmup_steps": 0},
        "eval_every": 3, "first_eval": 0, "checkpoint_every": 0}))
    assert {t: s.kind for t, s in cfg.task_specs.items()} == {"Smiling": "binary", "Male": "binary"}  # recorded resolved
    store = RunStore(tmp_path / "runs")
    run_id = store.create_run(cfg.to_dict(), "celeba", "test", 3)
    Trainer(cfg, store, run_id).run()
    assert store.get_run(run_id)["status"] == "finished", store.get_run(run_id).get("error")
    val = {key: value for _, _, key, value, _ in store.metrics(run_id, "val")}
    assert {"Smiling/accuracy", "Male/accuracy", "Male/balanced_accuracy"} <= set(val)
    assert all(math.isfinite(v) for v in val.values())
