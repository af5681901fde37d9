"""A run owns its randomness: two identical runs trained side by side in one process give the
bit-identical metrics of one run trained alone (initialisation, data order, augmentation and a
random weighting method each draw only from what the run owns)."""
from __future__ import annotations

import dataclasses
import threading

import pytest
import torch

from mtl_core.config import AugmentConfig, WeightingConfig
from mtl_core.runs.manager import RunManager
from tests.conftest import tiny_config

AUGMENT = AugmentConfig(hflip=0.5, crop=0.5, rotation=10.0, color_jitter=0.3, noise=0.05, erasing=0.25)


def _config(method: str):
    base = tiny_config(augment=AUGMENT, weighting=WeightingConfig(method=method), gradstats_every=2)
    return dataclasses.replace(base, optim=dataclasses.replace(base.optim, steps=8))


def _metrics(store, run_id: str) -> list[tuple]:
    """Every recorded value but the wall-clock ones (throughput)."""
    return [(step, split, key, value) for step, split, key, value, _ in store.metrics(run_id)
            if key != "images_per_s"]


@pytest.mark.parametrize("method", ["static", "rlw"])
def test_two_identical_runs_started_together_match_one_run_alone(tmp_path, method):
    cfg = _config(method)
    alone = RunManager(tmp_path / "alone", max_concurrent=1)
    solo = alone.start(cfg)
    assert alone.wait(solo, 180) == "finished", alone.store.get_run(solo)["error"]
    together = RunManager(tmp_path / "together", max_concurrent=2)
    pair = [together.start(cfg), together.start(cfg)]
    assert [together.wait(r, 180) for r in pair] == ["finished", "finished"]
    expected = _metrics(alone.store, solo)
    assert len(expected) > 50 and any(k.startswith("weight/") for _, _, k, _ in expected)
    for rid in pair:
        assert _metrics(together.store, rid) == expected
    alone.shutdown()
    together.shutdown()


def test_a_run_leaves_the_global_generator_and_thread_count_as_it_found_them(tmp_path):
    """Nothing in a run reseeds torch's global generator or changes the process's thread count,
    so code beside it (a page, another library) sees its own random stream go on undisturbed."""
    torch.manual_seed(123)
    expected = torch.rand(5)
    torch.manual_seed(123)
    threads = torch.get_num_threads()
    m = RunManager(tmp_path, max_concurrent=1)
    rid = m.start(_config("rlw"))
    assert m.wait(rid, 180) == "finished"
    assert torch.equal(torch.rand(5), expected)
    assert torch.get_num_threads() == threads
    seen: list[int] = []
    t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    t.start()
    t.join()
    assert seen == [threads]  # a thread started afterwards gets the same default
    m.shutdown()
