"""Writes assets/labels/photos.csv and its images: the example label table Setup offers.

120 small photos (crops, flips and colour changes of scikit-image's and scikit-learn's sample
photos, 128 x 96 JPEG) and three tasks of three kinds: ``subject`` (which photo it is cut from,
classification), ``outdoor`` (binary) and ``brightness`` (its mean brightness in percent,
regression). Run it again to remake them: ``python assets/labels/make_photos.py`` (needs
scikit-image and scikit-learn, which only this script and the benches use).
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance
from skimage import data
from sklearn.datasets import load_sample_images

HERE = Path(__file__).resolve().parent
SIZE = (128, 96)  # width x height: a landscape photo, not a square
PER_SUBJECT = 20
OUTDOOR = {"astronaut": 0, "coffee": 0, "cat": 0, "rocket": 1, "temple": 1, "flower": 1}


def sources() -> dict[str, np.ndarray]:
    china, flower = load_sample_images().images
    return {"astronaut": data.astronaut(), "coffee": data.coffee(), "cat": data.chelsea(), "rocket": data.rocket(),
            "temple": china, "flower": flower}


def main() -> None:
    rng = np.random.default_rng(0)
    (HERE / "photos").mkdir(exist_ok=True)
    rows = []
    for name, array in sources().items():
        photo = Image.fromarray(array).convert("RGB")
        w, h = photo.size
        for k in range(PER_SUBJECT):
            cw = int(w * rng.uniform(0.55, 0.9))
            ch = min(h, int(cw * SIZE[1] / SIZE[0]))
            x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            im = photo.crop((x, y, x + cw, y + ch)).resize(SIZE, Image.Resampling.LANCZOS)
            if rng.random() < 0.5:
                im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            im = ImageEnhance.Brightness(im).enhance(rng.uniform(0.6, 1.4))
            im = ImageEnhance.Color(im).enhance(rng.uniform(0.7, 1.3))
            path = f"photos/{name}_{k:02d}.jpg"
            im.save(HERE / path, quality=80)
            grey = np.asarray(im.convert("L"), dtype=np.float64)
            split = "train" if k < 14 else "val" if k < 17 else "test"
            rows.append({"image": path, "split": split, "subject": name, "outdoor": OUTDOOR[name],
                         "brightness": f"{grey.mean() / 2.55:.1f}"})
    with (HERE / "photos.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
