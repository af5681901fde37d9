"""Per-task feature importance on a hand-made model whose channels each feed a known set of tasks."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mtl_core.deploy.importance import OUTPUT, Importance, feature_importance
from mtl_core.errors import ConfigError
from mtl_core.models.backbones import run_stages


class Backbone(nn.Module):
    """Two 1x1 stages. Stage 1 (2 channels): the image's mean, twice. Stage 2 (4 channels): channel 0
    reads stage-1 channel 0 only; channels 1-3 read stage-1 channel 1 only."""

    channels, stride = 4, 1

    def __init__(self) -> None:
        super().__init__()
        self.s1 = nn.Conv2d(3, 2, 1, bias=False)
        self.s2 = nn.Conv2d(2, 4, 1, bias=False)
        with torch.no_grad():
            self.s1.weight.fill_(1 / 3)
            self.s2.weight.zero_()
            self.s2.weight[0, 0] = 1.0
            self.s2.weight[1:, 1] = 1.0

    def stages(self, x):
        x = yield self.s1(x)  # (B, 2, H, W)
        x = yield self.s2(x)  # (B, 4, H, W)
        return x

    def forward(self, x):
        return run_stages(self.stages(x))


class Model(nn.Module):
    """Head a reads feature channels 0 and 2, head b channels 1 and 2; nobody reads channel 3."""

    name = "hand_made"

    def __init__(self) -> None:
        super().__init__()
        self.backbone = Backbone()
        self.heads = nn.ModuleDict({t: nn.Conv2d(4, 1, 1, bias=False) for t in "ab"})
        with torch.no_grad():
            self.heads["a"].weight.copy_(torch.tensor([1.0, 0, 1, 0]).view(1, 4, 1, 1))
            self.heads["b"].weight.copy_(torch.tensor([0, 1.0, 1, 0]).view(1, 4, 1, 1))

    def forward(self, x):
        f = self.backbone(x)
        return {t: h(f) for t, h in self.heads.items()}


class Task:
    """Mean squared error against ``targets[name]``, with the label mask of ``targets["valid"]``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def target_of(self, targets):
        return targets[self.name], targets.get("valid", {}).get(self.name)

    def loss(self, output, target):
        return ((output - target) ** 2).mean()


TASKS = {"a": Task("a"), "b": Task("b")}


def batches(n: int = 2, size: int = 4):
    g = torch.Generator().manual_seed(3)
    for _ in range(n):
        x = torch.rand(size, 3, 5, 5, generator=g)
        yield x, {"a": torch.zeros(size, 1, 5, 5), "b": -torch.ones(size, 1, 5, 5)}


def test_a_channel_read_by_one_head_matters_to_that_task_only():
    imp = feature_importance(Model(), TASKS, batches())
    f = imp.layers[OUTPUT]  # (2, 4)
    assert f.shape == (2, 4) and imp.tasks == ["a", "b"] and imp.batches == 2
    assert f[0, 0] > 0.2 and f[1, 0] == 0  # channel 0: a only
    assert f[1, 1] > 0.2 and f[0, 1] == 0  # channel 1: b only
    assert f[0, 2] > 0.2 and f[1, 2] > 0.2  # channel 2: both
    assert f[0, 3] == 0 and f[1, 3] == 0  # channel 3: nobody
    np.testing.assert_allclose(f.sum(axis=1), [1, 1])  # normalised per task


def test_hand_computed_values_on_a_constant_image():
    # every feature channel is v = 0.5; a's output is 2v = 1 against 0: dL_a/dA_c = 2 * 1 * w_c / N,
    # so s_a(c) = sum over N pixels of v * 2 w_c / N = w_c: a's row is (1, 0, 1, 0) / 2
    x = torch.full((2, 3, 3, 3), 0.5)
    imp = feature_importance(Model(), TASKS, [(x, {"a": torch.zeros(2, 1, 3, 3), "b": torch.zeros(2, 1, 3, 3)})])
    np.testing.assert_allclose(imp.layers[OUTPUT], [[0.5, 0, 0.5, 0], [0, 0.5, 0.5, 0]], atol=1e-12)


def test_summary_counts_the_channels_each_group_holds():
    imp = feature_importance(Model(), TASKS, batches())
    assert imp.groups(OUTPUT) == {"all": [2], "only a": [0], "only b": [1], "some": [], "none": [3]}
    assert imp.summary(OUTPUT) == ["1 of 4 channels serve both tasks", "1 serve a only", "1 serve b only",
                                   "1 serve no task"]
    # sorted for the heat map: a's block, b's block, then unused
    assert imp.order(OUTPUT)[-1] == 3 and imp.order(OUTPUT).index(0) < imp.order(OUTPUT).index(1)
    rows = imp.to_rows()
    assert len(rows) == 2 + 4 and {"layer", "channel", "a", "b"} == set(rows[0])


def test_stages_are_covered_stage_one_channel_zero_feeds_a_only():
    imp = feature_importance(Model(), TASKS, batches())
    assert list(imp.layers) == ["stage1", OUTPUT]  # stage 2 is the output, listed once
    s1 = imp.layers["stage1"]  # (2, 2)
    assert s1[0, 0] > 0 and s1[1, 0] == 0 and s1[0, 1] > 0 and s1[1, 1] > 0
    assert imp.groups("stage1")["only a"] == [0] and imp.groups("stage1")["all"] == [1]
    assert list(feature_importance(Model(), TASKS, batches(), stages=False).layers) == [OUTPUT]


def test_threshold_decides_what_counts_as_used():
    imp = Importance(["a", "b"], {OUTPUT: np.array([[0.7, 0.28, 0.02], [0.5, 0.5, 0.0]])}, threshold=0.1)
    assert imp.groups(OUTPUT)["all"] == [0, 1] and imp.groups(OUTPUT)["none"] == [2]
    # 0.02 is 6% of a's mean (1/3): not used at 0.1, used at 0.05
    imp.threshold = 0.05
    assert imp.groups(OUTPUT)["only a"] == [2]


def test_a_task_without_labels_in_the_batches_uses_nothing():
    x = torch.rand(2, 3, 3, 3, generator=torch.Generator().manual_seed(0))
    targets = {"a": torch.zeros(2, 1, 3, 3), "b": torch.zeros(2, 1, 3, 3), "valid": {"b": torch.tensor([False, False])}}
    imp = feature_importance(Model(), TASKS, [(x, targets)])
    assert imp.layers[OUTPUT][1].tolist() == [0, 0, 0, 0] and imp.layers[OUTPUT][0, 0] > 0


def test_the_model_is_left_as_it_was():
    model = Model().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    feature_importance(model, TASKS, batches())
    assert model.training and "stages" not in vars(model.backbone)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_an_architecture_without_one_shared_backbone_is_refused_by_name():
    from mtl_core.config import ModelConfig
    from mtl_core.models import build_model
    from mtl_core.tasks import build_task
    from mtl_core.training.builders import build_all
    from tests.conftest import tiny_config

    info = build_all(tiny_config(tasks=("classification",)), splits=("val",))["info"]
    tasks = {"classification": build_task("classification", info)}
    model = build_model(tasks, ModelConfig(architecture="cross_stitch", width=4))
    with pytest.raises(ConfigError, match="cross_stitch architecture has no single shared backbone") as e:
        feature_importance(model, tasks, batches())
    assert e.value.field == "model.architecture"


def test_an_unknown_layer_names_the_ones_there_are():
    with pytest.raises(ConfigError, match="stage9.*choose from stage1, features"):
        feature_importance(Model(), TASKS, batches(), layers=["stage9"])
