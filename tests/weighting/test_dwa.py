"""DWA (Liu et al. 2019): weights follow the loss-ratio rule on window means and sum to K."""
import math

import pytest
import torch

from mtl_core.weighting.dwa import DynamicWeightAverage


def run(method, seq):
    return [method.fuse(torch.tensor(losses), i, [])[1].tolist() for i, losses in enumerate(seq)]


def test_weights_follow_the_loss_ratio_rule():
    method = DynamicWeightAverage(["fast", "slow"], params={"window": 2.0})
    # window 1 means [4, 2]; window 2 means [2, 2]: the fast task halved, the slow one stalled
    seq = [[5.0, 2.0], [3.0, 2.0], [2.0, 1.5], [2.0, 2.5], [1.0, 1.0], [1.0, 1.0]]
    w = run(method, seq)
    assert w[:4] == [[1.0, 1.0]] * 4  # ones until two windows are done
    # by hand: r = [2/4, 2/2] = [0.5, 1]; w = 2 exp(r/2) / sum exp(r/2)
    e = [math.exp(0.25), math.exp(0.5)]
    expected = [2 * e[0] / sum(e), 2 * e[1] / sum(e)]  # [0.8757, 1.1243]
    assert w[4] == pytest.approx(expected, rel=1e-6)
    assert w[5] == w[4]  # fixed within a window
    assert sum(w[4]) == pytest.approx(2.0)


def test_three_tasks_weights_sum_to_k_and_temperature_sharpens():
    seq = [[1.0, 1.0, 1.0], [0.5, 1.0, 2.0], [0.5, 1.0, 2.0]]
    soft = run(DynamicWeightAverage(list("abc"), params={"window": 1.0}), seq)[2]
    sharp = run(DynamicWeightAverage(list("abc"), params={"window": 1.0, "temperature": 0.1}), seq)[2]
    assert sum(soft) == pytest.approx(3.0) and sum(sharp) == pytest.approx(3.0)
    assert soft[0] < soft[1] < soft[2]  # the task whose loss grew gets most
    assert sharp[2] > 2.9 > soft[2]
