"""Every weighting method and every architecture trains a short demo run to the end with finite
losses that go down (registry-parametrised: a new method or architecture is tested by adding it)."""
import dataclasses
import math

import pytest

from mtl_core.config import ModelConfig, WeightingConfig
from mtl_core.models import ARCHITECTURES
from mtl_core.store.store import RunStore
from mtl_core.training.loop import Trainer
from mtl_core.weighting import WEIGHTINGS


def _train(tmp_path, cfg):
    store = RunStore(tmp_path)
    rid = store.create_run(cfg.to_dict(), cfg.name, "test", cfg.optim.steps)
    status = Trainer(cfg, store, rid).run()
    run = store.get_run(rid)
    assert status == "finished", run["error"]
    losses = {}
    for step, _, key, value, _ in store.metrics(rid, "train", "loss/"):
        if key != "loss/total":
            assert value is not None and math.isfinite(value), (key, step)
            losses.setdefault(step, 0.0)
            losses[step] += value
    steps = sorted(losses)
    first = sum(losses[s] for s in steps[:6]) / 6
    last = sum(losses[s] for s in steps[-6:]) / 6
    assert last < first, f"task losses did not go down: {first:.3f} -> {last:.3f}"
    weights = [r for r in store.metrics(rid, "train", "weight/")]
    assert weights and all(v is not None and math.isfinite(v) for *_, v, _ in weights)
    return store, rid


@pytest.mark.parametrize("method", WEIGHTINGS.available())
def test_every_weighting_method_trains(tmp_path, demo, method):
    _train(tmp_path, demo(method))


@pytest.mark.parametrize("method", [m for m in WEIGHTINGS.available() if WEIGHTINGS.get(m).kind == "gradient"
                                    and WEIGHTINGS.get(m).supports_rep])
def test_gradient_methods_train_on_the_shared_representation(tmp_path, demo, method):
    _train(tmp_path, demo(method, rep_grad=True))


@pytest.mark.parametrize("arch", ARCHITECTURES.available())
def test_every_architecture_trains(tmp_path, demo, arch):
    store, rid = _train(tmp_path, demo("ew", arch))
    keys = {r[2] for r in store.metrics(rid, "train", "gradcos/")}
    if arch == "single_task":
        assert not keys  # nothing is shared, so there is no conflict to measure
    else:
        assert "gradcos/classification|segmentation" in keys


def test_a_method_refuses_the_mode_it_cannot_do(demo):
    from mtl_core.errors import ConfigError
    from mtl_core.training.validation import validate

    cfg = dataclasses.replace(demo("uw"), weighting=WeightingConfig(method="mgda", rep_grad=True),
                              model=ModelConfig(architecture="mtan", width=8))
    errors = {e.field: e.message for e in validate(cfg)}
    assert "weighting.rep_grad" in errors and "mtan" in errors["weighting.rep_grad"]
    with pytest.raises(ConfigError, match="rep_grad"):
        WEIGHTINGS.get("db_mtl")(["a", "b"], rep_grad=True)
