"""ExcessMTL (He et al., ICML 2024): weights raised by each task's excess-risk estimate
g^T diag(sqrt(sum g^2))^-1 g relative to its first one; hand computation over two steps."""
import math

import torch

from mtl_core.weighting.base import StepContext
from mtl_core.weighting.excess_mtl import ExcessMTL

# step 0: g_a = (3, 0), g_b = (0, 4); step 1: g_a = (4, 0), g_b = (0, 3) (sums of squares 25: sqrt 5)
STEP0 = torch.tensor([[3.0, 0.0], [0.0, 4.0]])
STEP1 = torch.tensor([[4.0, 0.0], [0.0, 3.0]])


def test_two_steps_by_hand():
    method = ExcessMTL(["a", "b"], params={"robust_step_size": 1.0})
    # step 0 records e0: e_a = 3^2 / sqrt 9 = 3, e_b = 4^2 / sqrt 16 = 4; weights stay 1: the plain sum
    g, w = method.combine_grads(STEP0, torch.ones(2), 0)
    torch.testing.assert_close(w, torch.ones(2))
    torch.testing.assert_close(g, torch.tensor([3.0, 4.0]))
    # step 1: e_a = 16 / sqrt 25 = 3.2 (ratio 16/15), e_b = 9 / 5 = 1.8 (ratio 0.45): task a, whose
    # gradient grew against its history, is further from convergence and gains weight.
    # alpha = 2 (e^(16/15), e^0.45) / (e^(16/15) + e^0.45) = (1.299, 0.701)
    g, w = method.combine_grads(STEP1, torch.ones(2), 1)
    ea, eb = math.exp(16 / 15), math.exp(0.45)
    alpha = torch.tensor([2 * ea / (ea + eb), 2 * eb / (ea + eb)])
    torch.testing.assert_close(w, alpha, atol=1e-5, rtol=0)
    torch.testing.assert_close(g, torch.tensor([4 * alpha[0], 3 * alpha[1]]), atol=1e-5, rtol=0)


def test_a_multiplier_stays_in_the_update():
    # b's loss times 10: its gradients and its sqrt(sum g^2) are 10x, so its excess is 10x and its
    # ratio unchanged: alpha is the one above, b's reported weight is 10 alpha_b and the update
    # 4 alpha_a (1, 0) + 10 alpha_b (0, 3)
    theta = torch.nn.Parameter(torch.zeros(2))
    runs = {}
    for name, weights in (("plain", None), ("ten", {"a": 1.0, "b": 10.0})):
        method = ExcessMTL(["a", "b"], params={"robust_step_size": 1.0}, weights=weights)
        for step, grads in enumerate((STEP0, STEP1)):
            theta.grad = None
            reported = method.combine({"a": theta @ grads[0], "b": theta @ grads[1]}, [theta], StepContext(step))
        runs[name] = reported, theta.grad.clone()
    (plain, _), (ten, grad) = runs["plain"], runs["ten"]
    assert abs(ten["a"] - plain["a"]) < 1e-5 and abs(ten["b"] - 10 * plain["b"]) < 1e-5
    assert abs(plain["a"] - 1.299) < 1e-3
    torch.testing.assert_close(grad, torch.tensor([4 * plain["a"], 30 * plain["b"]]))


def test_a_task_without_labels_at_the_start_takes_its_first_estimate_later():
    # step 0 without b's labels: b reported 0, no first estimate (dividing by 0 would give inf).
    # Step 1: b's first estimate is e_b = 16 / 4 = 4 (ratio 1); a's ratio 3.2 / 3 = 16/15 as above
    method = ExcessMTL(["a", "b"], params={"robust_step_size": 1.0})
    _, w = method.combine_grads(torch.tensor([[3.0, 0.0], [0.0, 0.0]]), torch.ones(2), 0)
    assert w.tolist() == [1.0, 0.0]
    _, w = method.combine_grads(torch.tensor([[4.0, 0.0], [0.0, 4.0]]), torch.ones(2), 1)
    ea, eb = math.exp(16 / 15), math.exp(1.0)
    torch.testing.assert_close(w, torch.tensor([2 * ea / (ea + eb), 2 * eb / (ea + eb)]), atol=1e-5, rtol=0)
