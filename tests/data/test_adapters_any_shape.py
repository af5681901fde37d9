"""Every real-data adapter at any height x width under each resize policy: a letterboxed COCO box
and mask, and a seg_folder mask, equal to ones computed by hand; a 48 x 80 model input from each
adapter; stretch and crop move the labels with the image; the image cache serves epoch 2."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from mtl_core.config import DataConfig
from mtl_core.data import build_dataset
from mtl_core.data.cache import default_cache
from tests.data.test_coco import by_image_id, make_coco, rle_encode
from tests.data.test_image_folder import make_folder
from tests.data.test_seg_folder import make_seg_folder
from tests.data.test_torchvision_sets import make_celeba, make_cifar, make_pets, make_voc, md5_is_existence  # noqa: F401

PH, PW = 300, 400  # the photo: height x width
BOX = [100, 50, 200, 150]  # xyxy in the photo's pixels
# Letterboxed into 128 x 128: scale min(128 / 300, 128 / 400) = 0.32, content 96 x 128, 16 px bands
# above and below. The box lands at x 100 * 0.32 = 32 .. 64, y 50 * 0.32 + 16 = 32 .. 64.
LETTERBOXED = [32.0, 32.0, 64.0, 64.0]


def letterboxed_mask(value: int) -> torch.Tensor:
    """The region x 100..200, y 50..150 of the photo, letterboxed into 128 x 128 by nearest neighbour
    at pixel centres: output column 32 samples x = (32 + 0.5) / 0.32 = 101.6 (inside), column 31
    98.4 (outside), 63 198.4 (inside), 64 201.6 (outside); rows likewise after the 16-row band."""
    m = torch.zeros(128, 128, dtype=torch.long)
    m[:16], m[112:] = 255, 255  # the bands: ignore
    m[32:64, 32:64] = value
    return m


def coco_photo(root, policy: str, size) -> tuple:
    """One 400 x 300 photo with a cat whose box and (RLE) mask are BOX, and two plain others."""
    (root / "images").mkdir(parents=True)
    region = torch.zeros(PH, PW, dtype=torch.bool)
    region[50:150, 100:200] = True
    images, anns = [], []
    for i in (1, 2, 3):
        Image.new("RGB", (PW, PH), (200, 30, 30)).save(root / "images" / f"{i}.png")
        images.append({"id": i, "file_name": f"{i}.png", "width": PW, "height": PH})
        anns.append({"id": i, "image_id": i, "category_id": 1, "iscrowd": 0, "area": 10000.0,
                     "bbox": [BOX[0], BOX[1], BOX[2] - BOX[0], BOX[3] - BOX[1]],
                     "segmentation": {"size": [PH, PW], "counts": rle_encode(region)}})
    (root / "annotations.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                       "categories": [{"id": 1, "name": "cat"}]}))
    cfg = DataConfig(dataset="coco", root=str(root), image_size=size, resize=policy)
    ds = build_dataset(cfg, "train")
    return ds[0]


def test_a_letterboxed_coco_box_and_mask_equal_the_hand_computed_ones(tmp_path):
    image, t = coco_photo(tmp_path, "", 128)  # "" = the dataset's default: letterbox
    assert image.shape == (3, 128, 128)
    torch.testing.assert_close(t["detection"]["boxes"], torch.tensor([LETTERBOXED]))
    assert torch.equal(t["segmentation"], letterboxed_mask(1))
    assert (image[:, :16] == 0.5).all() and (image[:, 112:] == 0.5).all()  # grey bands
    torch.testing.assert_close(image[:, 16:112].mean((1, 2)), torch.tensor([200, 30, 30]) / 255.0)


def test_stretch_and_crop_move_coco_labels_with_the_image(tmp_path):
    _, t = coco_photo(tmp_path / "s", "stretch", (60, 100))  # x * 0.25, y * 0.2
    torch.testing.assert_close(t["detection"]["boxes"], torch.tensor([[25.0, 10.0, 50.0, 30.0]]))
    seg = t["segmentation"]
    assert seg.shape == (60, 100) and int((seg == 1).sum()) == 25 * 20 and (seg[10:30, 25:50] == 1).all()
    # crop into 100 x 100: scale max(100 / 300, 100 / 400) = 1/3: 100 x 133 (x scale 133 / 400),
    # 17 px cut on the left ((100 - 133) // 2 = -17): x 100 * 0.3325 - 17 = 16.25 .. 49.5, y 16.67 .. 50
    _, t = coco_photo(tmp_path / "c", "crop", 100)
    torch.testing.assert_close(t["detection"]["boxes"], torch.tensor([[16.25, 50 / 3, 49.5, 50.0]]))
    assert t["segmentation"].shape == (100, 100) and not (t["segmentation"] == 255).any()  # a crop has no bands


def test_a_box_a_crop_cuts_away_is_dropped_with_its_label(tmp_path):
    make_coco(tmp_path)  # 64 x 128 images; image 1: a cat at y 16..48, a dog at y 64..96
    _, t = by_image_id(DataConfig(dataset="coco", root=str(tmp_path), image_size=(16, 64), resize="crop"))[1]
    # crop: scale 1 (64 wide), rows 56..72 of the photo kept: only the dog's top edge, the cat is gone
    assert t["detection"]["labels"].tolist() == [1] and int(t["count"]) == 1
    torch.testing.assert_close(t["detection"]["boxes"], torch.tensor([[32.0, 8.0, 64.0, 16.0]]))
    assert int(t["classification"]) == 1 and t["multilabel"].tolist() == [0.0, 1.0]


def test_a_letterboxed_seg_folder_mask_equals_the_hand_computed_one(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    values = np.zeros((PH, PW), dtype=np.uint8)
    values[50:150, 100:200] = 4
    for i in range(3):
        Image.new("RGB", (PW, PH), (20, 200, 20)).save(tmp_path / "images" / f"{i}.jpg")
        Image.fromarray(values, "L").save(tmp_path / "masks" / f"{i}.png")
    ds = build_dataset(DataConfig(dataset="seg_folder", root=str(tmp_path), image_size=128), "train")
    image, t = ds[0]
    assert image.shape == (3, 128, 128) and (image[:, :16] == 0.5).all()
    assert torch.equal(t["segmentation"], letterboxed_mask(1))  # value 4 is the only class: 1


def test_an_exif_turned_photo_is_read_upright_in_an_image_folder(tmp_path):
    (tmp_path / "a").mkdir()
    stored = Image.new("RGB", (80, 40), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 40, 40))  # red on the left half as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise: 40 wide, 80 tall, red on top
    for i in range(3):
        stored.save(tmp_path / "a" / f"{i}.jpg", exif=exif, quality=95)
    from mtl_core.data.image_folder import load_image

    image, f = load_image(tmp_path / "a" / "0.jpg", (40, 40), exif=True)
    assert f.src == (80, 40) and f.scaled == (40, 20) and (f.top, f.left) == (0, 10)
    assert image[0, 5, 20] > 0.9 and image[2, 35, 20] > 0.9 and (image[:, :, :10] == 0.5).all()
    ds = build_dataset(DataConfig(dataset="image_folder", root=str(tmp_path), image_size=(40, 40)), "train")
    assert torch.equal(ds[0][0], image)


def test_an_unknown_policy_or_an_unreadable_image_names_what_to_do(tmp_path):
    from mtl_core.data.image_folder import load_image
    from mtl_core.errors import ConfigError

    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ConfigError, match="bad.jpg cannot be read as an image.*replace or remove"):
        load_image(tmp_path / "bad.jpg", 32)
    with pytest.raises(ConfigError, match="data.resize: unknown resize policy 'squash'"):
        load_image(tmp_path / "bad.jpg", 32, "squash")


MAKERS = {
    "image_folder": (lambda root: make_folder(root), "classification"),
    "coco": (lambda root: make_coco(root), "segmentation"),
    "seg_folder": (lambda root: make_seg_folder(root), "segmentation"),
    "pets": (lambda root: make_pets(root), "segmentation"),
    "voc": (lambda root: make_voc(root), "segmentation"),
    "celeba": (lambda root: make_celeba(root), "multilabel"),
    "cifar10": (lambda root: make_cifar(root), "classification"),
}


@pytest.mark.parametrize("policy", ["letterbox", "stretch", "crop"])
@pytest.mark.parametrize("name", list(MAKERS))
def test_every_adapter_reads_any_height_and_width(tmp_path, md5_is_existence, name, policy):  # noqa: F811
    make, task = MAKERS[name]
    make(tmp_path)
    ds = build_dataset(DataConfig(dataset=name, root=str(tmp_path), image_size=(48, 80), resize=policy), "train")
    assert ds.info.image_size == (48, 80) and ds.info.hw == (48, 80)
    for i in range(min(3, len(ds))):
        image, t = ds[i]
        assert image.shape == (3, 48, 80) and 0.0 <= float(image.min()) and float(image.max()) <= 1.0
        letterboxed = policy == "letterbox"  # every photo here is narrower than 80:48: grey bands left and right
        assert (image[:, :, :4] == 0.5).all() == letterboxed
        if task == "segmentation":
            assert t["segmentation"].shape == (48, 80) and t["segmentation"].dtype == torch.long
            if t["valid"]["segmentation"]:
                assert (t["segmentation"][:, :4] == 255).all() == letterboxed
        boxes = t.get("detection", {}).get("boxes")
        if boxes is not None and len(boxes):
            assert (boxes[:, 0::2] <= 80).all() and (boxes[:, 1::2] <= 48).all() and (boxes >= 0).all()


@pytest.mark.parametrize("name", ["voc", "coco", "seg_folder", "pets"])
def test_the_second_epoch_decodes_nothing(tmp_path, monkeypatch, name):
    import PIL.Image

    MAKERS[name][0](tmp_path)
    ds = build_dataset(DataConfig(dataset=name, root=str(tmp_path), image_size=(48, 80)), "train")
    first = [ds[i] for i in range(len(ds))]
    opened = []
    real = PIL.Image.open
    monkeypatch.setattr(PIL.Image, "open", lambda *a, **k: opened.append(a[0]) or real(*a, **k))
    second = [ds[i] for i in range(len(ds))]
    assert opened == []  # neither the images nor the masks (COCO's: painted from the json once)
    for (a, ta), (b, tb) in zip(first, second):
        assert torch.equal(a, b) and torch.equal(ta["segmentation"], tb["segmentation"])
        assert ta["valid"] == tb["valid"]
    stats = default_cache().stats
    assert stats["made"] == stats["memory"] > 0 and stats["disk"] == 0
    if name == "coco":  # each image and its painted label map
        assert stats["made"] == 2 * len(ds)
