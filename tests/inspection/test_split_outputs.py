"""A checkpoint's per-sample outputs on a split, kept beside it: packed predictions that come back
as they went in, a cache that opens without running the model, and one that is rebuilt, never
trusted, when the checkpoint changed or the file is broken."""
from __future__ import annotations

import io
import math
import os
import shutil

import pytest
import torch

from mtl_core.inspection import outputs as outputs_module
from mtl_core.inspection.outputs import cache_path, split_outputs
from mtl_core.inspection.packing import pack, unpack, unpack_all
from mtl_core.inspection.table import error_table
from tests.conftest import tiny_config

RUN_TASKS = ("classification", "count", "multilabel", "detection", "segmentation", "depth")


# ---- packing ------------------------------------------------------------------------------
def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    return type(a) is type(b) and a == b


def test_pack_round_trip_of_ragged_boxes_lists_numbers_and_missing_samples():
    items = [
        {"boxes": torch.tensor([[0.5, 1.0, 9.25, 7.0], [3, 3, 4, 4]]), "labels": torch.tensor([2, 300]),
         "scores": torch.tensor([0.9, 0.25]), "present": [0, 2], "probs": [0.75, 0.125, 0.5], "label": 1, "score": 0.875},
        None,  # a sample with no prediction (or no truth) for this task
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long), "scores": torch.zeros(0),
         "present": [], "probs": [0.0, 1.0, 0.25], "label": 0, "score": 1.0},
        {"boxes": torch.tensor([[1.0, 2.0, 3.0, 4.0]]), "labels": torch.tensor([0]), "scores": torch.tensor([0.5]),
         "present": [1], "probs": [0.5, 0.5, 0.5], "label": 2, "score": 0.5},
    ]
    packed = pack(items)
    buf = io.BytesIO()
    torch.save(packed, buf)  # it must be plain enough for the safe loader
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    for p in (packed, loaded):
        back = unpack_all(p)
        assert back[1] is None and unpack(p, 1) is None
        for i in (0, 2, 3):
            assert set(back[i]) == set(items[i])
            for k, v in items[i].items():
                assert same(v, back[i][k]), (i, k, v, back[i][k])


def test_masks_are_stored_small_and_come_back_as_long():
    masks = [{"mask": torch.randint(0, 5, (16, 16))}, {"mask": torch.full((16, 16), 255)}, None]
    packed = pack(masks)
    assert packed["keys"]["mask"]["data"].dtype == torch.uint8  # a split of masks is an eighth of the size
    back = unpack_all(packed)
    assert back[0]["mask"].dtype == torch.long and torch.equal(back[0]["mask"], masks[0]["mask"])
    assert torch.equal(back[1]["mask"], masks[1]["mask"]) and back[2] is None


def test_depth_maps_are_half_precision_inside_full_outside():
    depth = torch.rand(2, 16, 16) * 10
    packed = pack([{"depth": d} for d in depth])
    assert packed["keys"]["depth"]["data"].dtype == torch.float16
    back = unpack(packed, 1)["depth"]
    assert back.dtype == torch.float32 and torch.allclose(back, depth[1], rtol=1e-3)


# ---- a checkpoint's split ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> str:
    """The final checkpoint of a 6-step run with every task on 32 px scenes (32 val samples)."""
    from mtl_core.runs.manager import RunManager

    manager = RunManager(tmp_path_factory.mktemp("inspect_runs"))
    try:
        run_id = manager.start(tiny_config(name="tiny-inspect", tasks=RUN_TASKS))
        status = manager.wait(run_id, timeout=300)
        assert status == "finished", manager.store.get_run(run_id)["error"]
        ck = manager.store.latest_checkpoint(run_id, "final") or manager.store.latest_checkpoint(run_id)
        return ck["path"]
    finally:
        manager.shutdown()


@pytest.fixture
def checkpoint(trained, tmp_path) -> str:
    """A copy of the checkpoint of its own (same modification time), with no outputs beside it yet."""
    path = tmp_path / "final.pt"
    shutil.copy2(trained, path)
    return str(path)


@pytest.fixture
def builds(monkeypatch) -> list:
    """Counts the times the model's outputs are built."""
    calls: list = []
    real = outputs_module.compute

    def counting(*args, **kwargs):
        calls.append(args[1] if len(args) > 1 else kwargs.get("split"))
        return real(*args, **kwargs)

    monkeypatch.setattr(outputs_module, "compute", counting)
    return calls


def no_build(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("the model's outputs were built again; the file beside the checkpoint should serve")

    monkeypatch.setattr(outputs_module, "compute", refuse)


def equal_tables(a: dict, b: dict) -> bool:
    if list(a) != list(b):
        return False
    for k in a:
        for x, y in zip(a[k], b[k], strict=True):
            if not (x == y or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))):
                return False
    return True


def test_first_open_builds_and_saves_beside_the_checkpoint(checkpoint, builds):
    out = split_outputs(checkpoint, "val")
    assert builds == ["val"]
    assert cache_path(checkpoint, "val").is_file() and cache_path(checkpoint, "val").name == "final.pt.inspect-val.pt"
    assert len(out) == 32 and out.indices == list(range(32))
    assert out.images.dtype == torch.uint8 and tuple(out.images.shape) == (32, 3, 32, 32)
    table = error_table(out)
    assert len(table["sample"]) == 32
    for t, task in out.tasks.items():
        for c in task.display.error_columns:
            assert len(table[f"{t}/{c.name}"]) == 32
    assert out.truth(0).keys() == set(RUN_TASKS) and out.prediction(0).keys() == set(RUN_TASKS)


def test_second_open_reads_the_file_without_the_model(checkpoint, monkeypatch):
    first = split_outputs(checkpoint, "val")
    no_build(monkeypatch)
    again = split_outputs(checkpoint, "val")
    assert again.indices == first.indices and again.step == first.step and torch.equal(again.images, first.images)
    assert equal_tables(error_table(again), error_table(first))
    for t in ("detection", "segmentation"):  # the drawings read the same predictions back
        for k, v in first.prediction(3)[t].items():
            assert torch.equal(again.prediction(3)[t][k], v), (t, k)


def test_a_changed_checkpoint_is_built_again(checkpoint, builds):
    split_outputs(checkpoint, "val")
    st = os.stat(checkpoint)
    os.utime(checkpoint, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))  # a new save at the same path
    split_outputs(checkpoint, "val")
    assert builds == ["val", "val"]
    split_outputs(checkpoint, "val")
    assert builds == ["val", "val"]  # and the rebuilt file serves from then on


def test_a_broken_file_is_rebuilt_not_trusted(checkpoint, builds, monkeypatch):
    first = split_outputs(checkpoint, "val")
    path = cache_path(checkpoint, "val")
    path.write_bytes(path.read_bytes()[:1000])  # torn, as by a full disk
    again = split_outputs(checkpoint, "val")
    assert builds == ["val", "val"] and equal_tables(error_table(again), error_table(first))
    path.write_bytes(b"not a torch file")
    split_outputs(checkpoint, "val")
    assert len(builds) == 3
    no_build(monkeypatch)
    assert len(split_outputs(checkpoint, "val")) == 32  # what was rebuilt was saved


def test_other_samples_or_split_are_not_served_from_the_file(checkpoint, builds):
    split_outputs(checkpoint, "val")
    assert len(split_outputs(checkpoint, "val", limit=8)) == 8
    assert len(split_outputs(checkpoint, "test")) == 32
    assert builds == ["val", "val", "test"]
    assert cache_path(checkpoint, "test").is_file()
    # a look at the first 8 has its own file: the whole split's is still served
    assert cache_path(checkpoint, "val", 8).is_file() and cache_path(checkpoint, "val").is_file()
    assert len(split_outputs(checkpoint, "val")) == 32 and builds == ["val", "val", "test"]
    from mtl_core.errors import MTLError

    with pytest.raises(MTLError, match="val or test"):
        split_outputs(checkpoint, "train")


def test_cached_errors_are_those_of_the_unpacked_predictions(checkpoint, monkeypatch):
    split_outputs(checkpoint, "val")
    no_build(monkeypatch)
    out = split_outputs(checkpoint, "val")
    cached = out.errors(0.3)
    for t, task in out.tasks.items():
        recomputed = task.display.sample_errors(out.all_predictions(t), out.all_truths(t), 0.3)
        for c in task.display.error_columns:
            got, want = cached[f"{t}/{c.name}"], recomputed[c.name]
            assert len(got) == len(want) == 32
            for x, y in zip(got, want, strict=True):
                if isinstance(x, str) or isinstance(y, str):
                    assert x == y, (t, c.name)
                elif math.isnan(x) or math.isnan(y):
                    assert math.isnan(x) and math.isnan(y), (t, c.name)
                elif t == "depth" and c.name != "failed":  # depth maps are kept in float16
                    assert x == pytest.approx(y, rel=2e-3, abs=2e-3), (t, c.name)
                else:
                    assert x == y, (t, c.name, x, y)
