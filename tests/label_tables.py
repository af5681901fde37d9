"""Label tables written the way people write them (CSV or JSON lines, images and masks beside),
for the tests of the manifest dataset and of every task kind."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

H0, W0 = 30, 40  # every photo here: 40 wide, 30 high


def _photo(path: Path, seed: int, size: tuple[int, int] = (H0, W0)) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)


def write_table(root: Path, rows: list[dict], name: str = "labels.csv") -> Path:
    """Rows as a CSV (or JSON lines for a .jsonl name) in ``root``; every ``image`` is made."""
    for i, r in enumerate(rows):
        if r.get("image") and not (root / r["image"]).exists() and not r.get("_no_file"):
            _photo(root / r["image"], i)
    rows = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    path = root / name
    if name.endswith(".jsonl"):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        columns = list(dict.fromkeys(k for r in rows for k in r))
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=columns)
            w.writeheader()
            w.writerows(rows)
    return path


def mask_file(root: Path, name: str, value: int, size: tuple[int, int] = (H0, W0)) -> str:
    m = np.zeros(size, np.uint8)
    m[10:20, 10:30] = value
    (root / "masks").mkdir(exist_ok=True)
    Image.fromarray(m).save(root / "masks" / name)
    return f"masks/{name}"


def normal_map(i: int, size: tuple[int, int] = (H0, W0)) -> np.ndarray:
    """``(h, w, 3)`` unit normals: the left half facing left and towards the camera, the right
    half facing the camera, the top ``i % 3 + 1`` rows without a label (all 0)."""
    n = np.zeros((*size, 3), np.float32)
    n[:, : size[1] // 2] = (-0.6, 0.0, 0.8)
    n[:, size[1] // 2:] = (0.0, 0.0, 1.0)
    n[: i % 3 + 1] = 0.0
    return n


def split_of(i: int) -> str:
    return ("train", "train", "val", "test")[i % 4]


def every_kind_table(root: Path, n: int = 12) -> Path:
    """A table with one column of every kind (count declared in tasks.json, the one kind whose
    whole numbers need it) over ``n`` photos of 40 x 30."""
    rows = []
    (root / "depth").mkdir(parents=True, exist_ok=True)
    (root / "surface").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        np.save(root / "depth" / f"{i}.npy", np.full((H0, W0), 2.0 + i, np.float32))
        np.save(root / "surface" / f"{i}.npy", normal_map(i))
        rows.append({"image": f"img/{i}.png", "split": split_of(i),
                     "animal": ("cat", "dog", "bird")[i % 3], "digit": str(i % 3), "smiling": ("1", "-1")[i % 2],
                     "age": f"{20 + i * 1.5}", "tags": ("cat|dog", "dog", "bird|cat")[i % 3],
                     "mask": mask_file(root, f"{i}.png", 1 + i % 2), "depth": f"depth/{i}.npy",
                     "surface": f"surface/{i}.npy",
                     "boxes": json.dumps([[4, 6, 10, 8, ("car", "person")[i % 2]]]), "people": str(i % 3)})
    (root / "tasks.json").write_text(json.dumps({"people": {"kind": "count"}}))
    return write_table(root, rows)
