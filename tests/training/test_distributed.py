"""Two CPU processes (gloo) on a fixed global batch end with the same parameters as one process
on that same global batch, for loss-based and gradient-based weighting methods alike."""
import dataclasses
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from mtl_core.config import DataConfig, ExperimentConfig, ModelConfig, OptimConfig, WeightingConfig
from mtl_core.data.augment import AugmentConfig
from mtl_core.runs.store import RunStore
from mtl_core.training.checkpoint import load_checkpoint
from mtl_core.training.loop import Trainer

METHODS = ("ew", "uw", "pcgrad", "mgda", "cagrad")


def _config(method: str) -> ExperimentConfig:
    # GroupNorm and no augmentation: nothing may depend on how the global batch is split
    return ExperimentConfig(
        tasks=("classification", "segmentation", "depth"),
        data=DataConfig(image_size=32, train_size=64, val_size=8, test_size=8),
        model=ModelConfig(width=8, norm="group"),
        weighting=WeightingConfig(method=method),
        augment=AugmentConfig(hflip=0.0),
        # SGD: an update proportional to the gradient, so a wrong gradient shows (Adam's
        # normalisation would blow float rounding on near-zero gradients up to lr-sized noise)
        optim=OptimConfig(optimizer="sgd", batch_size=16, steps=3, warmup_steps=0, lr=0.05, weight_decay=0.0),
        eval_every=1000, checkpoint_every=0, gradstats_every=0, device="cpu", seed=3,
    )


def _train(method: str, root: Path) -> None:
    store = RunStore(root)
    cfg = _config(method)
    status = Trainer(cfg, store, method).run() if store.get_run(method) else None
    assert status in ("finished", None), store.get_run(method)["error"]


def _worker(rank: int, world: int, port: int, root: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    for method in METHODS:
        _train(method, Path(root))
    torch.distributed.destroy_process_group()


def _initial_params() -> dict[str, torch.Tensor]:
    from mtl_core.training.builders import build_all

    return build_all(_config("ew"), ("val",))["model"].state_dict()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _params(root: Path, run_id: str) -> dict[str, torch.Tensor]:
    store = RunStore(root)
    return load_checkpoint(store.latest_checkpoint(run_id)["path"])["model"]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path):
    single, multi = tmp_path / "single", tmp_path / "multi"
    for root in (single, multi):
        store = RunStore(root)
        for m in METHODS:
            store.create_run(_config(m).to_dict(), m, run_id=m)
    for m in METHODS:
        _train(m, single)
    mp.spawn(_worker, args=(2, _free_port(), str(multi)), nprocs=2, join=True)
    init = _initial_params()
    report = {}
    for m in METHODS:
        a, b = _params(single, m), _params(multi, m)
        assert a.keys() == b.keys()
        float_keys = [k for k in a if a[k].dtype.is_floating_point]
        report[m] = max(float((a[k] - b[k]).abs().max()) for k in float_keys)
        moved = max(float((a[k] - init[k]).abs().max()) for k in float_keys)
        assert moved > 1e-3, f"{m}: training did not move the parameters"  # the comparison is not vacuous
    assert all(v < 2e-5 for v in report.values()), report


def test_batch_must_split_evenly():
    from mtl_core.errors import ConfigError
    from mtl_core.training.distributed import DistInfo, shard

    assert shard(list(range(8)), DistInfo(1, 2, 1)) == [4, 5, 6, 7]
    with pytest.raises(ConfigError, match="divisible"):
        shard(list(range(7)), DistInfo(0, 2, 0))
    assert dataclasses.is_dataclass(DistInfo)
