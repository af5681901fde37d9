"""A task whose gradient is zero (a batch without its labels, whose loss is ``0 * output``):
every gradient method reports finite, bounded weights, weight 0 for that task (it contributed
nothing), weights that still reproduce the update, and the update its definition gives: the
update without that task where the definition implies it.

Parametrised over the registry: a new gradient method fails
``test_every_gradient_method_says_what_a_zero_gradient_does`` until it is put in one of the two
groups below."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import mtl_core.weighting  # noqa: F401  (registers every method)
from mtl_core.models.base import SharedRep
from mtl_core.weighting.base import WEIGHTINGS, StepContext

GRADIENT_METHODS = sorted(n for n in WEIGHTINGS.available() if WEIGHTINGS.get(n).kind == "gradient")

# the update is exactly the one the method makes with that task left out: Aligned-MTL drops the
# zero eigenvalue, DB-MTL's max-norm balance and GradDrop's sign purity ignore a zero row, PCGrad
# and GradVac never project onto it or move it, and for Nash-MTL, FairGrad and IMTL-G leaving it
# out is the limit of their equations (alpha_t -> inf; no direction g_t / ||g_t||); IMTL is IMTL-G on
# the shared parameters; ConFIG's pseudo-inverse U^+ ignores a zero row of the unit gradients
WITHOUT_THE_TASK = {"aligned_mtl", "db_mtl", "fairgrad", "graddrop", "gradvac", "imtl_g", "nash_mtl", "pcgrad",
                    "imtl", "config"}


def cagrad_update(grads: torch.Tensor, without: torch.Tensor, t: int) -> torch.Tensor | None:
    # g0 is the mean over all T tasks and the min over tasks includes the zero one (<0, d> = 0),
    # so the dual's minimum is at the zero gradient (g_w = 0) and d = g0, rescaled by 1 + c^2
    return grads.mean(0) / (1 + 0.5 ** 2)


# defined with the task in: the update they give, from the gradients and the update without it
WITH_THE_TASK = {
    "cagrad": cagrad_update,
    # the zero gradient is in the convex hull, so the min-norm point is 0: Pareto-stationary, no step
    "mgda": lambda grads, without, t: torch.zeros_like(without),
    # the mean over T of the projections onto the dual cone; the zero row's projection is 0 and it
    # adds no constraint (<0, d> >= 0), so the update is (T - 1) / T of the one over T - 1 tasks
    "upgrad": lambda grads, without, t: without * (t - 1) / t,
    # likewise the mean over T, (T - 1) / T of the mean over T - 1, projected once onto the same cone
    "dualproj": lambda grads, without, t: without * (t - 1) / t,
    # the first step only records each task's first excess estimate: every weight is 1, the update
    # the plain sum, which the zero gradient leaves as it is (later its weight is not raised)
    "excess_mtl": lambda grads, without, t: without,
    # lambda lives on the simplex over all T tasks and its step depends on them: no closed form;
    # bounded weights and weight 0 for a tracked gradient that is still zero are all it promises
    "moco": lambda grads, without, t: None,
    # lambda (MoDo) and w (SDMGrad, which also averages over all T tasks) take projected steps on
    # the simplex over all T tasks: no closed form either
    "modo": lambda grads, without, t: None,
    "sdmgrad": lambda grads, without, t: None,
}
# the reported weights multiply these moving averages, not this step's gradients
TRACKED = {"db_mtl": "buffer", "moco": "y"}
# GradDrop's result leaves the span of the gradients: its weights are least-squares coefficients
LEAST_SQUARES = {"graddrop"}
# gradients of norm about 1 in general position: weights on the simplex are <= 1, and the others
# (Nash-MTL and FairGrad ~ 1 / ||g||, DB-MTL's norm ratios, PCGrad's and CAGrad's projection
# coefficients ~ ||g_i|| / ||g_j||) are O(1); the bug reported 1e3 to 1e11
BOUND = 10.0
ZERO = 1  # index of the task with no gradient


def unit_rows(t: int = 3, d: int = 20, seed: int = 1) -> torch.Tensor:
    g = torch.randn(t, d, generator=torch.Generator().manual_seed(seed))  # (T, D)
    return g / g.norm(dim=1, keepdim=True)


def test_every_gradient_method_says_what_a_zero_gradient_does():
    assert GRADIENT_METHODS and "db_mtl" in GRADIENT_METHODS
    assert WITHOUT_THE_TASK.isdisjoint(WITH_THE_TASK)
    assert set(GRADIENT_METHODS) == WITHOUT_THE_TASK | set(WITH_THE_TASK)


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_zero_gradient_task_gets_weight_zero_and_the_others_stay_bounded(name):
    grads = unit_rows()
    grads[ZERO] = 0.0
    losses = torch.tensor([1.0, 0.0, 2.0])  # no labels, no loss
    method = WEIGHTINGS.get(name)(["a", "gone", "c"])
    g, w = method.combine_grads(grads, losses, 0)
    assert torch.isfinite(g).all() and torch.isfinite(w).all(), w
    assert w.abs().max() <= BOUND, w
    assert w[ZERO] == 0.0, w
    if name not in LEAST_SQUARES:  # the weights plotted still reproduce the update
        rows = getattr(method, TRACKED[name]) if name in TRACKED else grads  # (T, D)
        torch.testing.assert_close(w @ rows, g, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_update_with_a_zero_gradient_task_is_what_the_method_defines(name):
    grads = unit_rows()
    grads[ZERO] = 0.0
    losses = torch.tensor([1.0, 0.0, 2.0])
    g, w = WEIGHTINGS.get(name)(["a", "gone", "c"]).combine_grads(grads, losses, 0)
    live = [0, 2]
    g_without, w_without = WEIGHTINGS.get(name)(["a", "c"]).combine_grads(grads[live], losses[live], 0)
    if name in WITHOUT_THE_TASK:
        torch.testing.assert_close(g, g_without, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(w[live], w_without, atol=1e-6, rtol=1e-5)
        return
    expected = WITH_THE_TASK[name](grads, g_without, 3)
    if expected is not None:
        # CAGrad's SLSQP leaves ~1e-15 on the other tasks, which lam (~1e11) turns into ~1e-3
        torch.testing.assert_close(g, expected, atol=1e-5, rtol=5e-3 if name == "cagrad" else 1e-4)


TASKS = ["a", "gone", "c"]


def three_head_model() -> tuple[nn.Module, nn.ModuleDict]:
    torch.manual_seed(0)
    shared = nn.Sequential(nn.Linear(4, 8), nn.Tanh())
    heads = nn.ModuleDict({t: nn.Linear(8, 1) for t in TASKS})
    return shared, heads


def step_losses(shared, heads, tasks: list[str], rep_grad: bool):
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(3))  # (B, 4)
    target = x.sum(1, keepdim=True)  # (B, 1)
    feats = shared(x)  # (B, 8)
    rep = SharedRep(feats, tasks) if rep_grad else None
    outs = {t: heads[t](rep.per_task[t] if rep_grad else feats) for t in tasks}  # (B, 1) each
    losses = {"a": ((outs["a"] - target) ** 2).mean(), "c": ((outs["c"] + 2 * target) ** 2).mean()}
    if "gone" in tasks:  # a batch without this task's labels: the training loop's masked loss
        losses["gone"] = 0.0 * outs["gone"].sum()
    return losses, rep


def shared_grad_after_combine(name: str, tasks: list[str], rep_grad: bool):
    shared, heads = three_head_model()
    losses, rep = step_losses(shared, heads, tasks, rep_grad)
    weights = WEIGHTINGS.get(name)(tasks, rep_grad=rep_grad).combine(losses, list(shared.parameters()), StepContext(0, rep=rep))
    for t in tasks:
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in heads[t].parameters())
    return torch.cat([p.grad.reshape(-1) for p in shared.parameters()]), weights  # (D,)


@pytest.mark.parametrize("rep_grad", [False, True], ids=["params", "rep"])
@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_combine_with_a_label_less_task_reports_weight_zero_for_it(name, rep_grad):
    if rep_grad and not WEIGHTINGS.get(name).supports_rep:
        pytest.skip(f"{name} works on the shared parameters only")
    grad, weights = shared_grad_after_combine(name, TASKS, rep_grad)
    assert set(weights) == set(TASKS)
    assert all(abs(w) <= BOUND for w in weights.values()), weights  # finite too
    assert weights["gone"] == 0.0, weights
    assert torch.isfinite(grad).all()
    if name in WITHOUT_THE_TASK:  # the same step as a model that never had the task
        grad_without, weights_without = shared_grad_after_combine(name, ["a", "c"], rep_grad)
        torch.testing.assert_close(grad, grad_without, atol=1e-6, rtol=1e-5)
        assert weights_without == pytest.approx({t: weights[t] for t in ("a", "c")}, rel=1e-5)


@pytest.mark.parametrize("normalize", [2.0, 3.0], ids=["loss", "loss+"])
def test_mgda_loss_normalisers_give_no_huge_weight_to_a_task_without_loss(normalize):
    # the normaliser n_t = L_t is 0 for a label-less task; its weight was w_t / 1e-12
    grads = unit_rows()
    grads[ZERO] = 0.0
    method = WEIGHTINGS.get("mgda")(["a", "gone", "c"], params={"normalize": normalize})
    g, w = method.combine_grads(grads, torch.tensor([1.0, 0.0, 2.0]), 0)
    assert w.abs().max() <= BOUND and w[ZERO] == 0.0, w
    torch.testing.assert_close(w @ grads, g)


def test_nash_mtl_reused_weights_stay_bounded_when_the_task_returns():
    # weights are recomputed every other step; a zero gradient at a recompute used to get
    # alpha 1e3 (the ridge), reused at the next step, when the task has a gradient again
    method = WEIGHTINGS.get("nash_mtl")(["a", "gone", "c"], params={"update_weights_every": 2.0, "max_norm": 0.0})
    grads = unit_rows()
    missing = grads.clone()
    missing[ZERO] = 0.0
    method.combine_grads(missing, torch.ones(3), 0)
    g, w = method.combine_grads(grads, torch.ones(3), 1)  # reuses step 0's alpha
    assert w.abs().max() <= BOUND and w[ZERO] == 0.0, w
    assert g.norm() <= BOUND
