"""The binary and regression kinds on hand-made cases: their losses and metrics against the
definitions (scikit-learn's for R² and F1), and what their displays say."""
from __future__ import annotations

import math

import pytest
import torch

from mtl_core.config import TaskSpec
from mtl_core.data.base import DatasetInfo
from mtl_core.errors import ConfigError
from mtl_core.tasks import build_task
from mtl_core.tasks.regression import r2_score

INFO = DatasetInfo(name="t", class_names=(), image_size=32, tasks=("smiling", "age"))


def binary(**spec) -> object:
    return build_task("smiling", INFO, TaskSpec(kind="binary", **spec))


def regression(**spec) -> object:
    return build_task("age", INFO, TaskSpec(kind="regression", **spec))


def test_binary_loss_is_the_sigmoid_cross_entropy_of_its_one_logit():
    task = binary()
    logits, target = torch.tensor([[2.0], [-1.0]]), torch.tensor([1, 1])
    want = -(math.log(1 / (1 + math.exp(-2))) + math.log(1 / (1 + math.exp(1)))) / 2
    assert task.loss(logits, target).item() == pytest.approx(want, rel=1e-6)


def test_binary_metrics_on_a_rare_attribute():
    # 1 positive in 5; saying "no" to all is 80% accurate but learns nothing: balanced accuracy 0.5
    task = binary()
    truth = torch.tensor([1, 0, 0, 0, 0])
    all_no = task.metrics(torch.full((5, 1), -3.0), truth)
    assert all_no == {"accuracy": pytest.approx(0.8), "balanced_accuracy": pytest.approx(0.5), "f1": 0.0}
    # predictions yes, yes, no, no, no: tp 1, fp 1, fn 0 -> F1 = 2 / 3; TPR 1, TNR 3/4
    some = task.metrics(torch.tensor([[2.0], [1.0], [-1.0], [-2.0], [-3.0]]), truth)
    assert some == {"accuracy": pytest.approx(0.8), "balanced_accuracy": pytest.approx(0.875), "f1": pytest.approx(2 / 3)}
    assert task.metrics(torch.zeros(0, 1), torch.zeros(0)) == {"accuracy": 0.0, "balanced_accuracy": 0.0, "f1": 0.0}


def test_binary_prediction_and_its_words_name_the_attribute():
    task = binary(classes=("serious", "smiling"))
    (p,) = task.decode(torch.tensor([[math.log(9.0)]]))  # p(yes) = 0.9
    assert p["label"] == 1 and p["score"] == pytest.approx(0.9) and p["probs"] == pytest.approx([0.1, 0.9])
    assert task.display.summarize(p) == "smiling (90%)" and task.display.caption(p) == "Smiling: smiling"
    assert binary().display.summarize(p) == "yes (90%)"


def test_regression_loss_is_l1_on_standardised_values_and_smooth_l1_when_asked():
    task = regression(options={"mean": 30.0, "std": 10.0})
    out, target = torch.tensor([[0.5], [-1.0]]), torch.tensor([40.0, 30.0])  # predicts 35 and 20
    # standardised: (0.5 - 1.0), (-1.0 - 0.0) -> L1 = (0.5 + 1.0) / 2
    assert task.loss(out, target).item() == pytest.approx(0.75)
    smooth = regression(loss="smooth_l1", options={"mean": 30.0, "std": 10.0})
    assert smooth.loss(out, target).item() == pytest.approx((0.5 * 0.5 ** 2 + (1.0 - 0.5)) / 2)
    with pytest.raises(ConfigError, match="task_specs.age.loss.*l1, smooth_l1"):
        regression(loss="l2")


def test_regression_metrics_in_the_labels_units_with_r2_as_scikit_learn_defines_it():
    task = regression(options={"mean": 30.0, "std": 10.0})
    truth = torch.tensor([20.0, 30.0, 40.0, 50.0])
    out = (torch.tensor([22.0, 30.0, 37.0, 55.0]) - 30.0) / 10.0  # predictions 22, 30, 37, 55
    m = task.metrics(out[:, None], truth)
    assert m["mae"] == pytest.approx((2 + 0 + 3 + 5) / 4)
    assert m["rmse"] == pytest.approx(math.sqrt((4 + 0 + 9 + 25) / 4))
    # sklearn.metrics.r2_score([20, 30, 40, 50], [22, 30, 37, 55]) = 1 - 38 / 500
    assert m["r2"] == pytest.approx(1 - 38 / 500)
    assert r2_score(torch.tensor([5.0, 5.0]), torch.tensor([5.0, 5.0])) == 1.0  # constant truth, exact
    assert r2_score(torch.tensor([4.0, 6.0]), torch.tensor([5.0, 5.0])) == 0.0  # constant truth, off
    assert task.metrics(torch.zeros(0, 1), torch.zeros(0)) == {"mae": 0.0, "rmse": 0.0, "r2": 0.0}


def test_regression_prediction_is_a_number_and_its_error_fails_beyond_the_tolerance():
    task = regression(title="Age", options={"mean": 30.0, "std": 10.0})
    (p,) = task.decode(torch.tensor([[0.42]]))
    assert p == {"value": pytest.approx(34.2)}
    assert task.display.summarize(p) == "34.2"
    assert task.display.chips(p)[0][0] == "Age 34.2"
    errors = task.display.sample_errors([p, p, p], [{"value": 30.0}, {"value": 50.0}, None])
    assert errors["failed"][:2] == [0.0, 1.0] and math.isnan(errors["failed"][2])  # tolerance: one std, 10
    assert errors["abs_error"][:2] == pytest.approx([4.2, 15.8])


def test_two_tasks_of_one_kind_say_whose_answer_is_drawn():
    info = DatasetInfo(name="t", class_names=(), image_size=36, tasks=("left", "right"))
    digits = tuple(str(d) for d in range(10))
    left, right = (build_task(n, info, TaskSpec(kind="classification", classes=digits)) for n in ("left", "right"))
    answer = {"label": 2, "score": 0.7, "probs": [0.0] * 10}
    assert left.display.chips(answer)[0][0] == "Left: 2 0.70" and right.display.chips(answer)[0][0] == "Right: 2 0.70"
    assert left.display.error_chips(answer, {"label": 2})[0][0] == "Left: 2 ✓ 70%"  # right, with whose it is
    assert left.display.error_chips(answer, {"label": 5})[0][0] == "Left: 2 ✗ 70% (truth: 5)"
    smiling = build_task("smiling", info, TaskSpec(kind="binary"))
    yes = {"label": 1, "score": 0.9, "probs": [0.1, 0.9]}
    assert smiling.display.chips(yes)[0][0] == "Smiling: yes 0.90" and smiling.display.summarize(yes) == "yes (90%)"
    assert smiling.display.error_chips(yes, {"label": 0})[0][0] == "Smiling: yes ✗ 90% (truth: no)"
    scenes = build_task("classification", DatasetInfo(name="s", class_names=("star",) * 3, image_size=32,
                                                       tasks=("classification",)))
    assert scenes.display.chips({"label": 0, "score": 0.93})[0][0] == "star 0.93"  # a built-in task: its answer alone
