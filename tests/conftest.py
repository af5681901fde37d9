"""Shared fixtures: a fixed seed, few threads (CI has 2 cores), a temporary runs directory."""
from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(autouse=True)
def _seed():
    import torch

    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module of many small ops: on a shared, busy machine a second
    thread only waits (``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def runs_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "runs"
    monkeypatch.setenv("MTL_RUNS_DIR", str(d))
    return d


def tiny_config(**overrides):
    """A run that trains in a second or two on CPU."""
    from mtl_core.config import DataConfig, ExperimentConfig, OptimConfig

    cfg = ExperimentConfig(
        name="tiny",
        data=DataConfig(image_size=32, train_size=64, val_size=32, test_size=32),
        optim=OptimConfig(batch_size=16, steps=6, warmup_steps=0),
        eval_every=3, checkpoint_every=3, device="cpu",
    )
    return dataclasses.replace(cfg, **overrides)


@pytest.fixture
def tiny():
    return tiny_config


def demo_config(method: str = "ew", arch: str = "hard_sharing", rep_grad: bool = False):
    """Three tasks at 32x32 for 30 steps: enough for every method's losses to go down."""
    from mtl_core.config import DataConfig, ExperimentConfig, ModelConfig, OptimConfig, WeightingConfig

    return ExperimentConfig(
        tasks=("classification", "segmentation", "depth"),
        data=DataConfig(image_size=32, train_size=256, val_size=32, test_size=32),
        model=ModelConfig(architecture=arch, width=8),
        weighting=WeightingConfig(method=method, rep_grad=rep_grad),
        optim=OptimConfig(batch_size=16, steps=30, warmup_steps=0, lr=5e-3),
        eval_every=1000, checkpoint_every=0, gradstats_every=10, device="cpu", seed=1,
    )


@pytest.fixture
def demo():
    return demo_config


os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server of the tests' own for the session (see tests/servers.py)."""
    from tests.servers import PostgresServer

    server = PostgresServer()
    yield server
    server.close()


@pytest.fixture
def postgres_url(postgres_server, monkeypatch) -> str:
    """A fresh, empty PostgreSQL store for one test, selected with MTL_RUNS_DB (as a user would)."""
    schema = postgres_server.new_schema()
    url = postgres_server.url(schema)
    monkeypatch.setenv("MTL_RUNS_DB", url)
    yield url
    postgres_server.drop_schema(schema)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_backend(request, monkeypatch) -> str:
    """Run a test once on each run store backend: ``pytestmark = pytest.mark.usefixtures("store_backend")``."""
    monkeypatch.delenv("MTL_RUNS_DB", raising=False)
    if request.param == "postgresql":
        request.getfixturevalue("postgres_url")
    return request.param
