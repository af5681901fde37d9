"""Two CPU processes (gloo) on a fixed global batch end with the same parameters as one process
on that same global batch, for loss-based and gradient-based weighting methods alike, and for
methods that use several batches a step."""
import dataclasses
import os
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from mtl_core.config import DataConfig, ExperimentConfig, ModelConfig, OptimConfig, WeightingConfig
from mtl_core.data.augment import AugmentConfig
from mtl_core.store.store import RunStore
from mtl_core.training.checkpoint import load_checkpoint
from mtl_core.training.loop import Trainer
from tests.servers import free_port

METHODS = ("ew", "uw", "pcgrad", "mgda", "cagrad")
SEVERAL_BATCHES = ("modo", "sdmgrad")  # three batches a step: each one sharded, its gradients averaged


@pytest.fixture(autouse=True)
def _plain_main(monkeypatch):
    """Spawned processes re-run the parent's ``__main__`` script; after Streamlit's AppTest has run
    a page in this process that is the page. Workers here need no main script at all."""
    import sys
    import types

    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))


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


def _worker(rank: int, world: int, port: int, root: str, methods: tuple[str, ...]) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    for method in methods:
        _train(method, Path(root))
    torch.distributed.destroy_process_group()


def _initial_params() -> dict[str, torch.Tensor]:
    from mtl_core.training.builders import build_all

    return build_all(_config("ew"), ("val",))["model"].state_dict()


def _params(root: Path, run_id: str) -> dict[str, torch.Tensor]:
    store = RunStore(root)
    return load_checkpoint(store.latest_checkpoint(run_id)["path"])["model"]


@pytest.mark.slow
@pytest.mark.parametrize("methods", [METHODS, SEVERAL_BATCHES], ids=["one_batch", "modo_sdmgrad"])
def test_two_gloo_processes_match_one_process(tmp_path, methods):
    single, multi = tmp_path / "single", tmp_path / "multi"
    for root in (single, multi):
        store = RunStore(root)
        for m in methods:
            store.create_run(_config(m).to_dict(), m, run_id=m)
    for m in methods:
        _train(m, single)
    mp.spawn(_worker, args=(2, free_port(), str(multi), methods), nprocs=2, join=True)
    init = _initial_params()
    report = {}
    for m in methods:
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


def _decisions_worker(rank: int, world: int, port: int, root: str, case: str) -> None:
    """One rank of a run that must end the same way on every rank: by its time limit, or by a
    NaN loss on rank 1 alone. Each rank writes how it ended to ``rank<k>.txt``."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    cfg = dataclasses.replace(_config("ew"), optim=dataclasses.replace(_config("ew").optim, steps=100_000))
    if case == "time":
        cfg = dataclasses.replace(cfg, time_limit=1.5)
    elif rank == 1:  # this rank alone sees a NaN segmentation loss from its 4th step on
        from mtl_core.tasks import TASKS

        cls = TASKS.get("segmentation")
        calls = {"n": 0}
        original = cls.loss

        def loss(self, output, target):
            calls["n"] += 1
            value = original(self, output, target)
            return value * float("nan") if calls["n"] >= 4 else value

        cls.loss = loss
    trainer = Trainer(cfg, RunStore(root), "run")
    status = trainer.run()
    Path(root, f"rank{rank}.txt").write_text(f"{status} {trainer.step}")
    torch.distributed.destroy_process_group()


def _run_two_ranks(root: Path, case: str) -> list[list[str]]:
    store = RunStore(root)
    store.create_run(_config("ew").to_dict(), case, run_id="run")
    ctx = mp.start_processes(_decisions_worker, args=(2, free_port(), str(root), case), nprocs=2, join=False,
                             start_method="spawn")
    deadline = time.time() + 120
    while not ctx.join(timeout=1):  # a hang fails here, not in pytest's own timeout
        assert time.time() < deadline, "the ranks hung"
    return [Path(root, f"rank{r}.txt").read_text().split() for r in range(2)]


@pytest.mark.slow
def test_a_time_limit_ends_every_rank_at_the_same_step(tmp_path):
    (s0, step0), (s1, step1) = _run_two_ranks(tmp_path, "time")
    assert s0 == s1 == "finished" and step0 == step1 and int(step0) > 0
    run = RunStore(tmp_path).get_run("run")
    assert run["status"] == "finished" and run["step"] == int(step0)
    assert [e["kind"] for e in RunStore(tmp_path).events("run")].count("time_limit") == 1


@pytest.mark.slow
def test_a_nan_on_one_rank_fails_the_run_on_every_rank_naming_the_task(tmp_path):
    (s0, step0), (s1, step1) = _run_two_ranks(tmp_path, "nan")
    assert s0 == s1 == "failed" and step0 == step1 == "3"
    run = RunStore(tmp_path).get_run("run")
    assert run["status"] == "failed" and "the segmentation loss became nan at step 3" in run["error"]


@pytest.mark.slow
def test_torchrun_with_baselines_creates_each_run_once(tmp_path):
    """``torchrun ... train --baselines``: one multi-task run and one baseline per task, whatever
    the number of processes, all trained by both ranks and finished."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port", str(free_port()),
           "-m", "mtl_core", "train", "--runs-dir", str(tmp_path), "--tasks", "classification,segmentation",
           "--steps", "2", "--batch-size", "8", "--image-size", "32", "--train-size", "32", "--norm", "group",
           "--device", "cpu", "--eval-every", "100", "--baselines", "--quiet"]
    p = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=240,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    runs = RunStore(tmp_path).list_runs()
    assert sorted((r["source"], tuple(r["config"]["tasks"])) for r in runs) == [
        ("baseline", ("classification",)), ("baseline", ("segmentation",)),
        ("torchrun", ("classification", "segmentation"))]
    assert all(r["status"] == "finished" and r["step"] == 2 for r in runs)
