"""The seg-folder adapter on a tiny images/ + masks/ folder: label values mapped to classes (found
or named in classes.txt), masks resized by nearest neighbour, a missing mask masked; and a short run."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from mtl_core.config import DataConfig, ExperimentConfig, OptimConfig
from mtl_core.data import build_dataset
from mtl_core.data.seg_folder import SegFolderDataset
from mtl_core.errors import ConfigError

N = 8  # images; the last one has no mask


def label_png(values: np.ndarray, path, palette: bool) -> None:
    """Class indices saved as a palette PNG (colours unrelated to the indices) or a grayscale one."""
    h, w = values.shape
    im = Image.frombytes("P" if palette else "L", (w, h), values.astype(np.uint8).tobytes())
    if palette:
        im.putpalette([v for i in range(256) for v in ((37 * i) % 256, (91 * i) % 256, (53 * i) % 256)])
    im.save(path)


def make_seg_folder(root, classes_txt: str | None = None, low: int = 3, high: int = 7):
    """64 x 64 images; each mask: value ``low`` in rows 16..32 x cols 8..40, ``high`` in rows
    40..56 x cols 32..64, 255 in rows 0..4 (ignore), 0 elsewhere. Palette and grayscale alternate."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    values = np.zeros((64, 64), dtype=np.uint8)
    values[16:32, 8:40] = low
    values[40:56, 32:64] = high
    values[0:4] = 255
    for i in range(N):
        Image.new("RGB", (64, 64), (30 * i, 100, 200)).save(root / "images" / f"s{i}.{'jpg' if i % 2 else 'png'}")
        if i < N - 1:
            label_png(values, root / "masks" / f"s{i}.png", palette=i % 2 == 0)
    if classes_txt is not None:
        (root / "classes.txt").write_text(classes_txt)
    return root


def cfg_for(root) -> DataConfig:
    return DataConfig(dataset="seg_folder", root=str(root), image_size=32)


def all_samples(root) -> dict[str, tuple]:
    out = {}
    for split in ("train", "val", "test"):
        ds = build_dataset(cfg_for(root), split)
        for i in range(len(ds)):
            out[ds.items[ds.indices[i]][0].stem] = ds[i]
    return out


def expected_target(low: int, high: int) -> torch.Tensor:
    # at half size: rows 8..16 x cols 4..20, rows 20..28 x cols 16..32, rows 0..2 ignored
    t = torch.zeros(32, 32, dtype=torch.long)
    t[8:16, 4:20] = low
    t[20:28, 16:32] = high
    t[0:2] = 255
    return t


def test_values_found_become_the_classes_and_masks_resize_by_nearest(tmp_path):
    make_seg_folder(tmp_path)
    samples = all_samples(tmp_path)
    assert sorted(samples) == [f"s{i}" for i in range(N)]  # every image in exactly one split
    ds = SegFolderDataset(cfg_for(tmp_path), "train")
    assert ds.info.class_names == ("class 3", "class 7") and ds.info.tasks == ("segmentation",)
    for i in range(N - 1):
        image, t = samples[f"s{i}"]
        assert image.shape == (3, 32, 32)
        assert torch.equal(t["segmentation"], expected_target(1, 2)), f"s{i}"  # 3 -> class 0 (+1), 7 -> class 1 (+1)
        assert t["valid"] == {"segmentation": True}


def test_an_image_without_a_mask_is_kept_and_masked(tmp_path):
    make_seg_folder(tmp_path)
    image, t = all_samples(tmp_path)[f"s{N - 1}"]
    assert image.shape == (3, 32, 32)
    assert t["valid"] == {"segmentation": False}
    assert t["segmentation"].shape == (32, 32) and (t["segmentation"] == 255).all()


@pytest.mark.parametrize("listing", ["background\ncat\ndog\n", "cat\ndog\n", "_background_\ncat\n\ndog"])
def test_classes_txt_names_the_values_with_or_without_a_background_line(tmp_path, listing):
    make_seg_folder(tmp_path, listing, low=1, high=2)
    ds = SegFolderDataset(cfg_for(tmp_path), "train")
    assert ds.info.class_names == ("cat", "dog")
    _, t = all_samples(tmp_path)["s0"]
    assert torch.equal(t["segmentation"], expected_target(1, 2))


def test_a_value_that_classes_txt_does_not_name_is_an_error_that_says_so(tmp_path):
    make_seg_folder(tmp_path, "background\ncat\n", low=1, high=2)
    with pytest.raises(ConfigError, match="has value 2, but classes.txt names only 1 classes"):
        all_samples(tmp_path)


def test_wrong_layouts_say_what_is_expected(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(ConfigError, match="masks not found.*images/ and masks/"):
        SegFolderDataset(cfg_for(tmp_path), "train")
    (tmp_path / "masks").mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8)).save(tmp_path / "images" / f"a{i}.png")
        Image.new("L", (8, 8)).save(tmp_path / "masks" / f"b{i}.png")
    with pytest.raises(ConfigError, match="no mask .* matches an image"):
        SegFolderDataset(cfg_for(tmp_path), "train")
    for i in range(3):
        Image.new("RGB", (8, 8), (255, 0, 0)).save(tmp_path / "masks" / f"a{i}.png")
    with pytest.raises(ConfigError, match="RGB image; save class indices"):
        SegFolderDataset(cfg_for(tmp_path), "train")


def test_a_short_run_trains_on_a_seg_folder(tmp_path):
    from mtl_core.runs.manager import RunManager

    make_seg_folder(tmp_path / "data")
    cfg = ExperimentConfig(name="seg", tasks=SegFolderDataset.supplies, device="cpu", eval_every=3,
                           checkpoint_every=0, data=cfg_for(tmp_path / "data"),
                           optim=OptimConfig(batch_size=4, steps=3, warmup_steps=0))
    m = RunManager(tmp_path / "runs", max_concurrent=1)
    try:
        rid = m.start(cfg)
        assert m.wait(rid, 120) == "finished", m.store.get_run(rid).get("error")
        losses = [r[3] for r in m.store.metrics(rid, "train", key_prefix="loss/segmentation")]
        assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    finally:
        m.shutdown()
