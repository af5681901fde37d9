import os

import pytest
import torch

from mtl_core.config import DataConfig, ExperimentConfig
from mtl_core.errors import CheckpointError
from mtl_core.training.checkpoint import atomic_write_bytes, check_compatible, load_checkpoint, save_checkpoint


def test_round_trip(tmp_path):
    cfg = ExperimentConfig(name="c")
    path = save_checkpoint(tmp_path / "a.pt", cfg, 12, {"w": torch.ones(2)})
    payload = load_checkpoint(path)
    assert payload["config"] == cfg and payload["step"] == 12
    assert torch.equal(payload["model"]["w"], torch.ones(2))


def test_corrupted_file_is_refused_with_a_message(tmp_path):
    path = save_checkpoint(tmp_path / "a.pt", ExperimentConfig(), 1, {"w": torch.ones(2)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(path)


def test_pickled_objects_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "mtl-studio-1", "config": "{}", "model": Evil()}, path)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_checkpoint_from_a_different_config_is_refused():
    a = ExperimentConfig()
    b = ExperimentConfig(data=DataConfig(image_size=128))
    with pytest.raises(CheckpointError, match="data.image_size"):
        check_compatible(a, b)


def test_atomic_write_leaves_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"old")

    def broken_replace(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]  # no temporary file left behind


def test_a_square_as_one_number_or_two_is_the_same_size_and_sides_must_match():
    check_compatible(ExperimentConfig(data=DataConfig(image_size=64)), ExperimentConfig(data=DataConfig(image_size=(64, 64))))
    with pytest.raises(CheckpointError, match=r"data.image_size is 48x80 \(height x width\) there, 80x48"):
        check_compatible(ExperimentConfig(data=DataConfig(image_size=(48, 80))),
                         ExperimentConfig(data=DataConfig(image_size=(80, 48))))
