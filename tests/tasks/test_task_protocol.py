"""The task protocol in two halves, for every registered task: the learning half each task writes
(a head, a loss, metrics, decoding) and the show half its kind's display gives it (drawings, words,
the inspection's errors). ``exercise`` is also run on the plugin task of ``test_new_task.py``."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mtl_core.config import DataConfig, ExperimentConfig
from mtl_core.data import build_dataset
from mtl_core.data.base import DatasetInfo
from mtl_core.errors import ConfigError
from mtl_core.measures.types import FLAG, Confusion, Curve
from mtl_core.tasks import KINDS, TASKS, build_task
from mtl_core.tasks.base import Task, register_task
from mtl_core.tasks.classification import Classification
from mtl_core.tasks.drawing import draw_all
from mtl_core.training.evaluation import iterate_batches
from tests.label_tables import every_kind_table

SAMPLES = 4


@pytest.fixture(scope="module")
def scenes():
    """Four 32 px validation scenes: every built-in task's label is there."""
    return build_dataset(DataConfig(image_size=32, train_size=8, val_size=8, test_size=8), "val", 0)


def exercise(task: Task, dataset) -> None:
    """One task through both halves on ``dataset``'s first samples: a loss with a gradient and the
    metrics from its head, then its predictions and ground truths drawn, worded and scored by its display."""
    images, targets = next(iterate_batches(dataset, SAMPLES))
    target = targets[task.target_name()]
    torch.manual_seed(0)
    head = task.head(8, 2)
    features = torch.randn(SAMPLES, 8, 16, 16)  # stride-2 features of 32 px images
    loss = task.loss(head(features), target)
    loss.backward()
    assert loss.dim() == 0 and math.isfinite(loss.item())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    with torch.no_grad():
        output = head(features)
    assert task.primary in task.metrics(output, target)

    predictions = task.decode(output, (32, 32))
    shown = task.display
    truths = [shown.target_to_prediction(dataset[i][1][task.target_name()]) for i in range(SAMPLES)]
    pictures = (images * 255).round().to(torch.uint8)  # (B, 3, 32, 32)
    truth_drawn = False
    for image, p, t in zip(pictures, predictions, truths, strict=True):
        for answer in (p, t):
            drawn = shown.draw(image, answer)
            assert drawn.dtype == torch.uint8 and drawn.shape == image.shape
            words = shown.summarize(answer)
            assert isinstance(words, str) and words and not words.startswith("(")  # not the keys of a dict
        truth_drawn |= not torch.equal(shown.draw(image, t), image)
        errors = shown.draw_errors(image, p, t)
        assert errors.dtype == torch.uint8 and errors.shape[:2] == image.shape[:2]
    assert truth_drawn, "no ground truth of four scenes is drawn"

    columns = shown.error_columns
    assert columns and columns[0].name == "failed" and columns[0].kind == FLAG
    table = shown.sample_errors(predictions, [*truths[:-1], None])  # the last sample unlabelled
    assert set(table) == {c.name for c in columns}
    assert all(len(v) == SAMPLES for v in table.values())
    assert all(v in (0.0, 1.0) for v in table["failed"][:-1]) and math.isnan(table["failed"][-1])
    assert all(isinstance(m, Confusion) for m in shown.confusions(predictions, truths))
    assert all(isinstance(c, Curve) for c in shown.curves(predictions, truths))


@pytest.mark.parametrize("name", TASKS.available())
def test_every_task_learns_and_is_drawn_worded_and_inspected_by_its_kinds_display(name, scenes):
    exercise(build_task(name, scenes.info), scenes)


def test_a_task_writes_four_methods_and_is_told_which_one_it_forgot():
    assert sorted(Task.__abstractmethods__) == ["decode", "head", "loss", "metrics"]

    class NoDecode(Task):
        kind = "classification"

        def head(self, channels: int, stride: int = 1) -> nn.Module:
            return nn.Identity()

        def loss(self, output, target):
            return output.sum()

        def metrics(self, outputs, targets):
            return {}

    with pytest.raises(TypeError, match="decode"):
        NoDecode(DatasetInfo("toy", ("a", "b"), 32, ()))


def test_a_task_must_say_its_kind_and_an_unknown_kind_is_named():
    class Kindless(Classification):
        kind = ""

    with pytest.raises(ValueError, match="declares no kind"):
        register_task("kindless")(Kindless)
    assert "kindless" not in TASKS

    class Hologram(Classification):
        kind = "hologram"

    with pytest.raises(ConfigError, match="hologram"):
        _ = Hologram(DatasetInfo("toy", ("a", "b"), 32, ())).display


def test_two_tasks_of_one_kind_stack_their_chips_rather_than_hide_one():
    left = Classification(DatasetInfo("toy", ("zero", "one"), 320, ()))
    right = Classification(DatasetInfo("toy", ("seven", "eight"), 320, ()))
    tasks = {"left": left, "right": right}
    image = torch.full((3, 320, 320), 90, dtype=torch.uint8)
    preds = {"left": {"label": 1, "score": 0.9}, "right": {"label": 0, "score": 0.8}}
    both = draw_all(tasks, image, preds)
    alone = draw_all(tasks, image, preds, show={"right": False})
    rows = (alone != image).any(0).any(1).nonzero()[:, 0]  # (n,) the rows left's chip covers
    assert len(rows) and rows.min() < 5  # at the top-left
    top = int(rows.max())
    assert torch.equal(both[:, :top], alone[:, :top])  # right's chip does not cover left's
    assert (both[:, top + 2:] != image[:, top + 2:]).any()  # it is drawn below it


@pytest.fixture(scope="module")
def every_kind(tmp_path_factory):
    """A label table with a column of every kind, as a manifest dataset at 32 x 32."""
    root = every_kind_table(tmp_path_factory.mktemp("kinds"))
    cfg = ExperimentConfig.from_dict({"data": {"dataset": "manifest", "root": str(root), "image_size": 32}, "tasks": []})
    return build_dataset(cfg, "train", 0)


@pytest.mark.parametrize("kind", KINDS.available())
def test_every_kind_makes_a_task_of_any_name_that_learns_and_is_shown(kind, every_kind):
    columns = [c for c, s in every_kind.info.specs.items() if s.kind == kind]
    assert columns, f"tests/label_tables.every_kind_table has no column of kind {kind!r}: add one"
    task = build_task(columns[0], every_kind.info)
    assert type(task) is KINDS.get(kind) and task.name == columns[0] and task.target_name() == columns[0]
    exercise(task, every_kind)
