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


@pytest.mark.parametrize("name", BATCHED)
@pytest.mark.parametrize("t", [2, 3])
def test_each_row_of_the_batch_is_the_one_problem_answer(name, t):
    method = WEIGHTINGS.get(name)([f"task{i}" for i in range(t)])
    for grads in cases(t):
        losses = torch.rand(grads.shape[0], t, generator=torch.Generator().manual_seed(1), dtype=torch.float64) + 0.5
        one = copy.deepcopy(method)  # the same state (a generator's too) for the row-by-row calls
        if method.kind == "gradient":
            d, w = method.combine_grads_batch(grads, losses, 3)
            rows = [one.combine_grads(g, v, 3) for g, v in zip(grads, losses)]
            want_d, want_w = torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows]).double()
            scale = grads.norm(dim=2).amax(1, keepdim=True)  # (S, 1)
            # the batched solvers are exact; the one-problem ones stop at their tolerance (SLSQP, Frank-Wolfe)
            assert ((d - want_d).norm(dim=1, keepdim=True) <= 1e-5 * scale + 1e-12).all(), (name, d, want_d)
            close = (w - want_w).abs() <= 1e-4 * want_w.abs().clamp_min(1.0)
            assert (close | (grads.norm(dim=2) == 0)).all(), (name, w, want_w)
        else:
            totals, w = method.fuse_batch(losses, 3)
            rows = [one.fuse(v, 3, []) for v in losses]
            torch.testing.assert_close(totals, torch.stack([r[0] for r in rows]))
            torch.testing.assert_close(w, torch.stack([r[1] for r in rows]))
