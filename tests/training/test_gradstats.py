import math

import torch

from mtl_core.training.gradstats import cosine_matrix, gradient_stats, task_gradients


def test_opposite_tasks_have_cosine_minus_one_and_the_right_norms():
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    losses = {"a": (w * torch.tensor([3.0, 4.0])).sum(), "b": -(w * torch.tensor([3.0, 4.0])).sum() * 2,
              "c": (w * torch.tensor([-4.0, 3.0])).sum()}
    stats = gradient_stats(task_gradients(losses, [w]))
    assert math.isclose(stats["gradnorm/a"], 5.0) and math.isclose(stats["gradnorm/b"], 10.0)
    assert math.isclose(stats["gradcos/a|b"], -1.0, abs_tol=1e-6)
    assert math.isclose(stats["gradcos/a|c"], 0.0, abs_tol=1e-6)
    m = cosine_matrix(stats, ["a", "b", "c"])
    assert m[1][0] == m[0][1] and m[2][2] == 1.0


def test_graph_survives_for_the_real_backward():
    w = torch.nn.Parameter(torch.ones(3))
    loss = (w ** 2).sum()
    task_gradients({"a": loss}, [w])
    loss.backward()
    assert torch.equal(w.grad, 2 * torch.ones(3))
