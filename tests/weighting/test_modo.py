"""MoDo by hand on 2-D gradients of two tasks from three batches, and through ``combine`` on three
batches of a tiny model: the shared parameters move along the third batch's gradients weighted by the
new lambda, the heads by the mean of their three gradients."""
import io

import pytest
import torch
from torch import nn

from mtl_core.errors import ConfigError
from mtl_core.weighting.base import WEIGHTINGS, StepContext
from mtl_core.weighting.modo import MoDo

# rows: tasks a, b
G1 = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
G2 = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
G3 = torch.tensor([[1.0, 1.0], [-1.0, 2.0]])
LOSSES = [torch.ones(2)] * 3


def test_one_step_by_hand():
    # G1 G2^T = [[<(1,0),(3,0)>, <(1,0),(1,1)>], [<(0,2),(3,0)>, <(0,2),(1,1)>]] = [[3, 1], [0, 2]]
    # lambda_0 = (1/2, 1/2): G1 G2^T lambda = (2, 1); + rho lambda (rho 0.1) = (2.05, 1.05)
    # lambda - gamma (...) with gamma 0.1 = (0.295, 0.395); onto the simplex: + (1 - 0.69) / 2 each
    # = (0.45, 0.55); update = 0.45 (1, 1) + 0.55 (-1, 2) = (-0.1, 1.55)
    method = MoDo(["a", "b"], params={"gamma": 0.1, "rho": 0.1})
    g, w = method.combine_multi([G1, G2, G3], LOSSES, 0)
    torch.testing.assert_close(w, torch.tensor([0.45, 0.55]))
    torch.testing.assert_close(g, torch.tensor([-0.1, 1.55]))
    torch.testing.assert_close(method.lam, torch.tensor([0.45, 0.55], dtype=torch.float64))


def test_a_large_step_reaches_a_corner_of_the_simplex():
    # gamma 1: lambda - (2.05, 1.05) = (-1.55, -0.55); the projection subtracts -1.55 from both and
    # clips: (0, 1), all on task b; the update is then task b's third-batch gradient (-1, 2)
    g, w = MoDo(["a", "b"], params={"gamma": 1.0, "rho": 0.1}).combine_multi([G1, G2, G3], LOSSES, 0)
    torch.testing.assert_close(w, torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(g, G3[1])


def test_the_weights_come_from_two_batches_and_the_update_from_the_third():
    a = MoDo(["a", "b"], params={"gamma": 0.1})
    b = MoDo(["a", "b"], params={"gamma": 0.1})
    _, w_double = a.combine_multi([G1, G2, G3], LOSSES, 0)
    _, w_single = b.combine_multi([G1, G1, G3], LOSSES, 0)  # G1 G1^T = [[1, 0], [0, 4]]: another lambda
    # (0.5, 0.5) - 0.1 ((0.5, 2) + 0.05) = (0.445, 0.295) -> + 0.13 = (0.575, 0.425)
    torch.testing.assert_close(w_single, torch.tensor([0.575, 0.425]))
    assert not torch.allclose(w_double, w_single)


def test_one_batch_plays_every_role():
    g, w = MoDo(["a", "b"]).combine_grads(G1, torch.ones(2), 0)
    g3, w3 = MoDo(["a", "b"]).combine_multi([G1, G1, G1], LOSSES, 0)
    torch.testing.assert_close((g, w), (g3, w3))


def test_state_resumes_lambda():
    first = MoDo(["a", "b"], params={"gamma": 0.1})
    first.combine_multi([G1, G2, G3], LOSSES, 0)
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    resumed = MoDo(["a", "b"], params={"gamma": 0.1})
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    torch.testing.assert_close(first.combine_multi([G2, G3, G1], LOSSES, 1),
                               resumed.combine_multi([G2, G3, G1], LOSSES, 1))


def test_registered_with_paper_and_refuses_what_it_cannot_do():
    cls = WEIGHTINGS.get("modo")
    assert cls is MoDo and cls.batches_per_step == 3 and "NeurIPS 2023" in cls.citation
    with pytest.raises(ConfigError, match="shared representation"):
        MoDo(["a", "b"], rep_grad=True)
    with pytest.raises(ConfigError, match="weighting.params.gamma"):
        MoDo(["a", "b"], params={"gamma": -1.0})


def test_combine_on_three_batches_of_a_model():
    torch.manual_seed(0)
    shared, heads = nn.Linear(3, 4), nn.ModuleDict({t: nn.Linear(4, 1) for t in "ab"})
    xs = [torch.randn(8, 3, generator=torch.Generator().manual_seed(i)) for i in range(3)]  # (B, 3) per batch

    def losses(x):
        h = torch.tanh(shared(x))  # (B, 4)
        return {"a": (heads["a"](h) - 1).pow(2).mean(), "b": (heads["b"](h) + x[:, :1]).pow(2).mean()}

    params = list(shared.parameters())
    expected_rows, expected_head = [], torch.zeros_like(heads["a"].weight)
    for x in xs:  # each batch's per-task gradients, by autograd alone
        ls = losses(x)
        expected_rows.append(torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(ls[t], params, retain_graph=True)])
                                          for t in "ab"]))  # (T, D)
        expected_head += torch.autograd.grad(ls["a"], heads["a"].weight)[0] / 3
    reference = MoDo(["a", "b"], params={"gamma": 0.1})
    g_ref, w_ref = reference.combine_multi(expected_rows, LOSSES, 0)

    method = MoDo(["a", "b"], params={"gamma": 0.1})
    # fp16's scale: the gradients left are 1024 times the true ones
    weights = method.combine((losses(x) for x in xs), params, StepContext(0, loss_scale=1024.0))
    assert weights == pytest.approx(dict(zip("ab", w_ref.tolist())))
    got = torch.cat([p.grad.reshape(-1) for p in params]) / 1024.0
    torch.testing.assert_close(got, g_ref)
    torch.testing.assert_close(heads["a"].weight.grad / 1024.0, expected_head)  # the heads: the mean of 3
    with pytest.raises(ValueError, match="combines 3 batch"):
        MoDo(["a", "b"]).combine([losses(xs[0])], params, StepContext(0))
