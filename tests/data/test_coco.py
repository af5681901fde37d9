"""The COCO adapter on a hand-made COCO json: boxes scaled to image_size, polygon and RLE masks
decoded where they were drawn, crowds ignored, missing labels masked, splits fixed; and a short run."""
from __future__ import annotations

import json
import math
import random

import pytest
import torch
from PIL import Image

from mtl_core.config import DataConfig, ExperimentConfig, OptimConfig
from mtl_core.data import build_dataset
from mtl_core.data.coco import CocoDataset, decode_rle, rle_counts_from_string
from mtl_core.errors import ConfigError

W, H = 64, 128  # stored image size: at image_size 32 stretched, x scales by 1/2 and y by 1/4
CAT, DOG = 3, 7  # COCO category ids (not contiguous): classes 0 and 1


# ------------------------------------------------------------------ an encoder, written from the COCO API
def rle_encode(mask: torch.Tensor) -> list[int]:
    """Uncompressed COCO RLE: runs of 0 and 1 (starting with 0) in column-major order."""
    counts, current, run = [], 0, 0
    for v in mask.t().reshape(-1).tolist():
        if v != current:
            counts.append(run)
            current, run = v, 0
        run += 1
    counts.append(run)
    return counts


def rle_to_string(counts: list[int]) -> str:
    """``rleToString`` of the COCO API's maskApi.c, in Python."""
    out = []
    for i, x in enumerate(counts):
        if i > 2:
            x -= counts[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def region(x0: int, y0: int, x1: int, y1: int) -> torch.Tensor:
    m = torch.zeros(H, W, dtype=torch.bool)
    m[y0:y1, x0:x1] = True
    return m


def polygon(x0, y0, x1, y1) -> list[list[float]]:
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def ann(aid, image_id, cat, bbox, segmentation=None, iscrowd=0, area=None):
    a = {"id": aid, "image_id": image_id, "category_id": cat, "bbox": bbox, "iscrowd": iscrowd,
         "area": area if area is not None else bbox[2] * bbox[3]}
    if segmentation is not None:
        a["segmentation"] = segmentation
    return a


def make_coco(folder, images_under="images", n_images=10):
    """Image 1: a cat polygon and a bigger dog (uncompressed RLE); 2: a dog as a compressed RLE
    string, then a cat polygon painted over part of it; 3: no annotations; 4: a crowd; 5: an object
    without a mask; the rest: one cat each."""
    folder.mkdir(parents=True, exist_ok=True)
    img_dir = folder / images_under if images_under else folder
    img_dir.mkdir(exist_ok=True)
    images, anns = [], []
    for i in range(1, n_images + 1):
        name = f"img_{i:03d}.png"
        Image.new("RGB", (W, H), (40 * (i % 6), 90, 140)).save(img_dir / name)
        images.append({"id": i, "file_name": name, "width": W, "height": H})
    dog_rle = {"size": [H, W], "counts": rle_encode(region(32, 64, 64, 96))}
    anns += [ann(1, 1, CAT, [8, 16, 16, 32], polygon(8, 16, 24, 48)),
             ann(2, 1, DOG, [32, 64, 32, 32], dog_rle)]
    anns += [ann(3, 2, DOG, [0, 0, 64, 64], {"size": [H, W], "counts": rle_to_string(rle_encode(region(0, 0, 64, 64)))}),
             ann(4, 2, CAT, [8, 16, 16, 16], polygon(8, 16, 24, 32))]
    crowd = {"size": [H, W], "counts": rle_encode(region(0, 96, 64, 128))}
    anns += [ann(5, 4, CAT, [0, 96, 64, 32], crowd, iscrowd=1), ann(6, 4, DOG, [8, 8, 8, 8], polygon(8, 8, 16, 16))]
    anns += [ann(7, 5, CAT, [16, 16, 16, 16])]  # a box without a mask
    anns += [ann(10 + i, i, CAT, [4, 4, 20, 20], polygon(4, 4, 24, 24)) for i in range(6, n_images + 1)]
    data = {"images": images, "annotations": anns,
            "categories": [{"id": DOG, "name": "dog"}, {"id": CAT, "name": "cat"}]}
    path = folder / "annotations.json"
    path.write_text(json.dumps(data))
    return path


def by_image_id(cfg: DataConfig) -> dict[int, tuple]:
    """Every image's sample, whichever split holds it."""
    out = {}
    for split in ("train", "val", "test"):
        ds = build_dataset(cfg, split)
        for i in range(len(ds)):
            out[ds.images[ds.indices[i]]["id"]] = ds[i]
    return out


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    make_coco(root)
    return by_image_id(DataConfig(dataset="coco", root=str(root), image_size=32, resize="stretch"))


# ------------------------------------------------------------------ RLE strings
@pytest.mark.parametrize("text, counts", [
    ("532", [5, 3, 2]),  # small counts: one character each, chr(48 + count)
    ("X1", [40]),  # 40 = 8 + 1 * 32: low group 8 with the continue bit (0x20), then 1
    ("1:1K", [1, 10, 1, 5]),  # the 4th count is stored as 5 - 10 = -5: 27 with the sign bit
])
def test_compressed_rle_strings_decode_to_the_known_counts(text, counts):
    assert rle_counts_from_string(text) == counts
    assert rle_counts_from_string(text.encode()) == counts


def test_compressed_rle_round_trips_through_the_coco_encoder():
    rng = random.Random(0)
    for _ in range(50):
        counts = [rng.choice([0, 1, 15, 16, 31, 32, 1000, 123456, rng.randrange(5000)]) for _ in range(rng.randrange(1, 12))]
        assert rle_counts_from_string(rle_to_string(counts)) == counts


def test_rle_is_column_major_and_starts_with_background():
    # 2 x 3; runs: 1 zero, 2 ones, 3 zeros, going down each column in turn
    mask = decode_rle([1, 2, 3], 2, 3)
    assert mask.tolist() == [[False, True, False], [True, False, False]]
    with pytest.raises(ValueError, match="sum"):
        decode_rle([1, 2], 2, 3)


# ------------------------------------------------------------------ decoded targets
def test_boxes_are_scaled_to_image_size_and_masks_land_where_drawn(samples):
    image, t = samples[1]
    assert image.shape == (3, 32, 32) and 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    det = t["detection"]
    assert det["labels"].tolist() == [0, 1]  # classes in category id order: cat (3), dog (7)
    torch.testing.assert_close(det["boxes"], torch.tensor([[4.0, 4.0, 12.0, 12.0], [16.0, 16.0, 32.0, 24.0]]))
    seg = t["segmentation"]
    assert seg.shape == (32, 32) and seg.dtype == torch.long
    expected = torch.zeros(32, 32, dtype=torch.long)
    expected[4:12, 4:12] = 1  # the cat polygon, x 8..24 and y 16..48 at (1/2, 1/4) scale: class 0 + 1
    expected[16:24, 16:32] = 2  # the dog's RLE, x 32..64 and y 64..96
    assert torch.equal(seg, expected)
    assert int(t["classification"]) == 1  # the dog is the largest object
    assert t["multilabel"].tolist() == [1.0, 1.0]
    assert int(t["count"]) == 2
    assert all(t["valid"].values())


def test_compressed_rle_decodes_and_later_annotations_paint_over_earlier(samples):
    _, t = samples[2]
    expected = torch.zeros(32, 32, dtype=torch.long)
    expected[0:16, :] = 2  # the dog: rows 0..64 of 128
    expected[4:8, 4:12] = 1  # the cat, listed after the dog, on top
    assert torch.equal(t["segmentation"], expected)


def test_an_image_without_objects_masks_only_classification(samples):
    _, t = samples[3]
    assert t["valid"] == {"classification": False, "multilabel": True, "detection": True, "count": True,
                          "segmentation": True}
    assert len(t["detection"]["labels"]) == 0 and int(t["count"]) == 0
    assert int(t["segmentation"].max()) == 0  # all background: a true negative, not a missing label
    assert t["multilabel"].sum() == 0


def test_crowd_regions_are_ignored_and_are_not_objects(samples):
    _, t = samples[4]
    assert (t["segmentation"][24:32] == 255).all()  # the crowd: rows 96..128
    assert (t["segmentation"][:24] != 255).all()
    assert t["detection"]["labels"].tolist() == [1] and int(t["count"]) == 1  # only the dog
    assert int(t["classification"]) == 1


def test_an_object_without_a_mask_masks_segmentation_only(samples):
    _, t = samples[5]
    assert t["valid"]["segmentation"] is False and t["valid"]["detection"] is True
    assert (t["segmentation"] == 255).all()  # placeholder of the right shape
    assert t["detection"]["labels"].tolist() == [0]


def test_splits_are_disjoint_cover_every_image_and_do_not_depend_on_the_run_seed(tmp_path):
    make_coco(tmp_path)
    cfg = DataConfig(dataset="coco", root=str(tmp_path), image_size=32)
    ids = {s: [d.images[k]["id"] for k in d.indices] for s in ("train", "val", "test") for d in [build_dataset(cfg, s, 0)]}
    assert sorted(ids["train"] + ids["val"] + ids["test"]) == list(range(1, 11))
    assert (len(ids["train"]), len(ids["val"]), len(ids["test"])) == (8, 1, 1)
    again = {s: [d.images[k]["id"] for k in d.indices] for s in ("train", "val", "test") for d in [build_dataset(cfg, s, 5)]}
    assert again == ids
    small = build_dataset(DataConfig(dataset="coco", root=str(tmp_path), image_size=32, train_size=3), "train")
    assert [small.images[k]["id"] for k in small.indices] == ids["train"][:3]


def test_root_may_be_the_json_with_images_beside_it(tmp_path):
    path = make_coco(tmp_path / "flat", images_under="")
    ds = CocoDataset(DataConfig(dataset="coco", root=str(path), image_size=32), "train")
    image, t = ds[0]
    assert image.shape == (3, 32, 32) and "segmentation" in t
    assert ds.info.class_names == ("cat", "dog") and ds.info.tasks == CocoDataset.supplies


def test_bad_roots_name_what_was_expected(tmp_path):
    with pytest.raises(ConfigError, match="data.root.*needs data.root"):
        CocoDataset(DataConfig(dataset="coco", root=""), "train")
    with pytest.raises(ConfigError, match="does not exist"):
        CocoDataset(DataConfig(dataset="coco", root=str(tmp_path / "nowhere")), "train")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "instances_val2017.json").write_text("{}")
    with pytest.raises(ConfigError, match="annotations.json does not exist.*instances_val2017.json"):
        CocoDataset(DataConfig(dataset="coco", root=str(tmp_path / "empty")), "train")
    with pytest.raises(ConfigError, match="not COCO format.*categories"):
        CocoDataset(DataConfig(dataset="coco", root=str(tmp_path / "empty" / "instances_val2017.json")), "train")
    (tmp_path / "empty" / "list.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="not COCO format.*images, annotations, categories"):
        CocoDataset(DataConfig(dataset="coco", root=str(tmp_path / "empty" / "list.json")), "train")
    path = make_coco(tmp_path / "noimg")
    for p in (tmp_path / "noimg" / "images").iterdir():
        p.unlink()
    with pytest.raises(ConfigError, match="img_001.png.*neither"):
        CocoDataset(DataConfig(dataset="coco", root=str(path)), "train")


def test_a_short_run_trains_on_coco(tmp_path):
    from mtl_core.runs.manager import RunManager
    from mtl_core.tasks import TASKS

    make_coco(tmp_path / "data", n_images=12)
    tasks = tuple(t for t in CocoDataset.supplies if t in TASKS)
    assert {"classification", "detection", "segmentation"} <= set(tasks)
    cfg = ExperimentConfig(name="coco", tasks=tasks, device="cpu", eval_every=3, checkpoint_every=0,
                           data=DataConfig(dataset="coco", root=str(tmp_path / "data"), image_size=32),
                           optim=OptimConfig(batch_size=4, steps=3, warmup_steps=0))
    m = RunManager(tmp_path / "runs", max_concurrent=1)
    try:
        rid = m.start(cfg)
        assert m.wait(rid, 120) == "finished", m.store.get_run(rid).get("error")
        losses = {r[2]: r[3] for r in m.store.metrics(rid, "train") if r[2].startswith("loss/")}
        assert {f"loss/{t}" for t in tasks} <= set(losses) and all(math.isfinite(v) for v in losses.values())
    finally:
        m.shutdown()
