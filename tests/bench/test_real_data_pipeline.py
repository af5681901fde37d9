"""bench/real_data_pipeline.py on a few photos: the folder it writes is an image_folder dataset
(one class per source photo, 640 x 480 JPEGs, the same bytes for the same seed), and its two
measurements run on it."""
from __future__ import annotations

from PIL import Image

from bench.real_data_pipeline import PHOTO_WH, epoch_rate, make_photos, source_photos, training_rate
from mtl_core.config import DataConfig, ExperimentConfig, OptimConfig
from mtl_core.data import build_dataset
from mtl_core.data.cache import ImageCache, set_default_cache


def test_the_photo_folder_is_an_image_folder_of_640_by_480_jpegs(tmp_path):
    names = sorted(source_photos())
    assert len(names) >= 10 and {"astronaut", "coffee", "chelsea", "rocket", "china", "flower"} <= set(names)
    root = make_photos(tmp_path / "a", count=len(names) + 3)
    assert sorted(p.name for p in root.iterdir()) == names  # one subfolder per source photo
    files = sorted(root.rglob("*"))
    jpegs = [p for p in files if p.is_file()]
    assert len(jpegs) == len(names) + 3 and all(p.suffix == ".jpg" for p in jpegs)
    assert all(len(list((root / n).iterdir())) in (1, 2) for n in names)  # spread evenly
    for p in jpegs[:4]:
        with Image.open(p) as im:
            assert im.format == "JPEG" and im.size == PHOTO_WH and im.mode == "RGB"
    again = make_photos(tmp_path / "b", count=len(names) + 3)
    assert all((again / p.relative_to(root)).read_bytes() == p.read_bytes() for p in jpegs)  # seeded

    cfg = ExperimentConfig(tasks=("classification",), device="cpu", optim=OptimConfig(batch_size=4),
                           data=DataConfig(dataset="image_folder", root=str(root), image_size=(24, 32)))
    set_default_cache(ImageCache(folder=tmp_path / "cache"))
    try:
        ds = build_dataset(cfg.data, "train")
        assert ds.info.class_names == tuple(names) and ds[0][0].shape == (3, 24, 32)
        assert epoch_rate(ds, 1, 4) > 0 and epoch_rate(ds, 2, 4) > 0
        assert training_rate(cfg, ds, steps=1, rounds=1, warmup=1) > 0
    finally:
        set_default_cache(None)
