"""Every method with a batched form (the playground steps all its starting points through it)
gives, row by row, what its one-problem hook gives: on random Jacobians and at the Pareto-stationary,
rank-deficient, nearly collinear and opposite ones of the Pareto contract, at three scales. A
method that draws random numbers draws them as that many calls in a row would."""
from __future__ import annotations

import copy

import pytest
import torch

import mtl_core.weighting  # noqa: F401  (registers every method)
from mtl_core.weighting.base import WEIGHTINGS
from tests.weighting.test_pareto_contract import JACOBIANS, SCALES

BATCHED = [n for n in WEIGHTINGS.available() if WEIGHTINGS.get(n).batched]


def test_the_playground_s_four_default_methods_are_batched():
    assert {"ew", "mgda", "pcgrad", "cagrad"} <= set(BATCHED)


def cases(t: int):
    gen = torch.Generator().manual_seed(t)
    yield torch.randn(30, t, 2, generator=gen, dtype=torch.float64)
    yield torch.randn(30, t, 7, generator=gen, dtype=torch.float64)
    for j in JACOBIANS.values():
        if j.shape[0] == t:
            yield torch.stack([j * s for s in SCALES])


def in_stream(copies, i):
    """``copies[i]``, its generator (if any) set where the previous copy's left off (called just before)."""
    if i and hasattr(copies[i], "generator"):
        copies[i].generator.set_state(copies[i - 1].generator.get_state())
    return copies[i]


@pytest.mark.parametrize("name", BATCHED)
@pytest.mark.parametrize("t", [2, 3])
def test_each_row_of_the_batch_is_the_one_problem_answer(name, t):
    for grads in cases(t):
        method = WEIGHTINGS.get(name)([f"task{i}" for i in range(t)])  # fresh: a batched state is per batch
        losses = torch.rand(grads.shape[0], t, generator=torch.Generator().manual_seed(1), dtype=torch.float64) + 0.5
        # each row from the same state, as its own problem (a copy per row); random numbers from one
        # stream, drawn in row order (the generator's state passed from each copy to the next)
        copies = [copy.deepcopy(method) for _ in range(grads.shape[0])]
        method.per_problem(grads.shape[0])  # learnable parameters: a row per problem, as the copies start
        if method.kind == "gradient":
            d, w = method.combine_grads_batch(grads, losses, 3)
            rows = [in_stream(copies, i).combine_grads(grads[i], losses[i], 3) for i in range(len(copies))]
            want_d, want_w = torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows]).double()
            scale = grads.norm(dim=2).amax(1, keepdim=True)  # (S, 1)
            # the batched solvers are exact; the one-problem ones stop at their tolerance (SLSQP, Frank-Wolfe)
            assert ((d - want_d).norm(dim=1, keepdim=True) <= 1e-5 * scale + 1e-12).all(), (name, d, want_d)
            close = (w - want_w).abs() <= 1e-4 * want_w.abs().clamp_min(1.0)
            assert (close | (grads.norm(dim=2) == 0)).all(), (name, w, want_w)
        else:
            totals, w = method.fuse_batch(losses, 3, *reads(method, grads))
            rows = [in_stream(copies, i).fuse(*with_grads(losses[i], grads[i])) for i in range(len(copies))]
            torch.testing.assert_close(totals, torch.stack([r[0] for r in rows]))
            torch.testing.assert_close(w, torch.stack([r[1] for r in rows]))


def reads(method, grads):
    """What a batched ``fuse_batch`` is given besides the losses: the task gradients, if it reads them."""
    return (grads,) if method.fuse_reads_params else ()


def with_grads(losses, grads):
    """``fuse``'s arguments for losses ``(T,)`` whose gradients on a shared parameter are ``grads (T, D)``
    (a parameter at 0, the losses linear in it): for a method that reads them (GradNorm)."""
    shared = torch.zeros(grads.shape[1], dtype=grads.dtype, requires_grad=True)
    return losses + grads @ shared, 3, [shared]


# short windows and warm-ups, so that a few steps cross them; Nash-MTL reusing its weights every other step
IN_A_ROW_PARAMS = {"dwa": {"window": 2.0}, "stch": {"warmup": 3.0}, "nash_mtl": {"update_weights_every": 2.0}}
STEPS_IN_A_ROW = 8


def _one_problem_state(method) -> dict:
    """The state training saves, but a generator's position (the batched form draws from it, as
    ``S`` calls in a row would) and the learnable parameters (the trainer's optimiser steps them;
    :meth:`per_problem` gives them a row per problem)."""
    extra = {k: v for k, v in method.get_extra_state().items() if k != "generator"}
    learnable = {n for n, p in method.named_parameters() if p.requires_grad}
    return {"tensors": {k: v for k, v in method.state_dict().items() if k != "_extra_state" and k not in learnable},
            "extra": extra}


@pytest.mark.parametrize("name", BATCHED)
@pytest.mark.parametrize("t", [2, 3])
def test_successive_batched_steps_are_each_row_s_own_run(name, t):
    # a method with state across steps (moving averages, the last weights, windows of losses) keeps
    # it per row: the batched instance stepped k times gives, row by row, what S copies give, each
    # stepped k times on its own row; random numbers come from one stream, drawn in row order
    tasks = [f"task{i}" for i in range(t)]
    method = WEIGHTINGS.get(name)(tasks, params=IN_A_ROW_PARAMS.get(name))
    fresh = _one_problem_state(method)
    s = 5
    rows = [copy.deepcopy(method) for _ in range(s)]
    method.per_problem(s)
    stream = method.generator.get_state() if hasattr(method, "generator") else None
    gen = torch.Generator().manual_seed(100 + t)
    for step in range(STEPS_IN_A_ROW):
        grads = torch.randn(s, t, 3, generator=gen, dtype=torch.float64) * 10.0 ** torch.randint(-2, 3, (s, 1, 1),
                                                                                                  generator=gen)
        losses = torch.rand(s, t, generator=gen, dtype=torch.float64) + 0.2
        want_d, want_w, want_total = [], [], []
        for i, one in enumerate(rows):
            if stream is not None:
                one.generator.set_state(stream)
            if method.kind == "gradient":
                d, w = one.combine_grads(grads[i], losses[i], step)
            else:
                leaf = losses[i].clone().requires_grad_(True)
                linear, _, shared = with_grads(leaf, grads[i])
                total, w = one.fuse(linear, step, shared)
                (d,) = torch.autograd.grad(total, leaf)  # the update's coefficients on the task gradients
                want_total.append(total.detach())
            if stream is not None:
                stream = one.generator.get_state()
            want_d.append(d.detach())
            want_w.append(w.detach().double())
        want_d, want_w = torch.stack(want_d), torch.stack(want_w)
        if method.kind == "gradient":
            d, w = method.combine_grads_batch(grads, losses, step)
            scale = grads.norm(dim=2).amax(1, keepdim=True)  # (S, 1)
            assert ((d - want_d).norm(dim=1, keepdim=True) <= 1e-5 * scale + 1e-12).all(), (name, step, d, want_d)
            close = (w.double() - want_w).abs() <= 1e-4 * want_w.abs().clamp_min(1.0)
            assert close.all(), (name, step, w, want_w)
        else:
            leaf = losses.clone().requires_grad_(True)
            totals, w = method.fuse_batch(leaf, step, *reads(method, grads))
            (d,) = torch.autograd.grad(totals.sum(), leaf)
            torch.testing.assert_close(totals.detach(), torch.stack(want_total), msg=f"{name} step {step}")
            torch.testing.assert_close(w.detach().double(), want_w, msg=f"{name} step {step}")
            torch.testing.assert_close(d, want_d, msg=f"{name} step {step}")
    # the batched state is kept apart: the one-problem state (what training saves) is untouched
    after = _one_problem_state(method)
    assert after.keys() == fresh.keys() and list(after["extra"]) == list(fresh["extra"])
    for part in ("tensors", "extra"):
        for k, v in fresh[part].items():
            got = after[part][k]
            same = torch.equal(got, v) if isinstance(v, torch.Tensor) else (
                got == v if not isinstance(v, dict) else repr(got) == repr(v))
            assert same, (name, k)


@pytest.mark.parametrize("name", [n for n in WEIGHTINGS.available() if WEIGHTINGS.get(n).fixed_weights])
def test_a_method_with_fixed_weights_totals_its_weights_times_the_losses_whatever_they_are(name):
    method = WEIGHTINGS.get(name)(["a", "b", "c"], weights={"a": 2.0} if WEIGHTINGS.get(name).uses_weights else None)
    gen = torch.Generator().manual_seed(0)
    first, second = (torch.rand(4, 3, generator=gen, dtype=torch.float64) * 10 for _ in range(2))
    (t1, w1), (t2, w2) = method.fuse_batch(first, 0), method.fuse_batch(second, 1)
    torch.testing.assert_close(w1, w2)  # the playground steps them as w . g, without the chain rule
    torch.testing.assert_close(t1, (w1 * first).sum(1))
    torch.testing.assert_close(t2, (w2 * second).sum(1))
