import torch

from mtl_core.weighting.fairgrad import FairGrad
from mtl_core.weighting.grad_utils import gram
from mtl_core.weighting.nash_mtl import NashMTL


def test_proportional_fairness_agrees_with_nash_mtl():
    torch.manual_seed(0)
    grads = torch.randn(2, 5) * torch.tensor([[1.0], [4.0]])
    _, w_fair = FairGrad(["a", "b"]).combine_grads(grads, torch.ones(2), 0)
    _, w_nash = NashMTL(["a", "b"], params={"max_norm": 0.0}).combine_grads(grads, torch.ones(2), 0)
    torch.testing.assert_close(w_fair / w_fair.sum(), w_nash / w_nash.sum(), atol=1e-4, rtol=1e-4)  # up to scale
    torch.testing.assert_close(w_fair, w_nash, atol=1e-3, rtol=1e-3)  # and here the scale matches too


def test_alpha_two_solves_its_equation():
    torch.manual_seed(1)
    grads = torch.randn(3, 6) * 0.01  # small gradients: the scaled solve still lands
    _, w = FairGrad(list("abc"), params={"alpha": 2.0}).combine_grads(grads, torch.ones(3), 0)
    m = gram(grads).float()
    torch.testing.assert_close(m @ w, w ** -0.5, atol=1e-3, rtol=1e-3)


def test_gradients_orders_of_magnitude_apart_still_solve_the_equation():
    """The official code's least_squares stops at its evaluation limit here (status 0, 200
    evaluations) with the equation 2.5e-4 off; Newton's method on the convex potential solves it."""
    import numpy as np
    from scipy.optimize import least_squares

    from mtl_core.weighting.fairgrad import fairgrad_weights

    g = np.array([[-122.2099, 2.7793], [0.0136, 0.004]])
    m = g @ g.T
    n = np.linalg.norm(m)
    official = least_squares(lambda w: m / n @ w - 1.0 / w, np.full(2, 0.5), bounds=(0.0, np.inf), xtol=1e-12,
                             ftol=1e-12, gtol=1e-12)
    assert official.status == 0 and np.abs(m / n @ official.x - 1 / official.x).max() * official.x.max() > 1e-5
    w = fairgrad_weights(torch.from_numpy(m), 1.0).numpy()
    d = w @ g
    np.testing.assert_allclose(g @ d, 1.0 / w, rtol=1e-9)  # every task's utility g_t . d is 1 / w_t


def test_nearly_opposite_gradients_next_to_the_pareto_set_are_solved_not_left_to_least_squares(monkeypatch):
    """CAGrad's toy at (-2.669, -8.369), next to its Pareto set (cosine -0.999999997): the equations
    have a solution, with weights in the thousands whose terms cancel to 1e-4 of their size. The
    official code's least_squares stops with them 4% off (the update's norm 1.38 for 1.414);
    Newton's method solves them to round-off, so the fallback must not run."""
    import numpy as np
    from scipy.optimize import least_squares

    import mtl_core.weighting.fairgrad as fairgrad

    g = np.array([[-1.9328575731268387, -2.4364886954806805e-03], [8.6584372672387200e-01, 1.0286426961581335e-03]])
    m = g @ g.T
    n = np.linalg.norm(m)
    official = least_squares(lambda w: m / n @ w - 1.0 / w, np.full(2, 0.5), bounds=(0.0, np.inf), xtol=1e-12,
                             ftol=1e-12, gtol=1e-12)
    off = official.x * n ** -0.5
    assert np.abs(g @ (off @ g) * off - 1.0).max() > 0.01  # least_squares: utilities 1 / w_t missed by 4%
    monkeypatch.setattr(fairgrad, "least_squares", None)  # calling it would fail the test
    w = fairgrad.fairgrad_weights(torch.from_numpy(m), 1.0).numpy()
    assert w.min() > 1000.0
    d = w @ g
    np.testing.assert_allclose(g @ d * w, 1.0, rtol=1e-5)  # every task's utility g_t . d is 1 / w_t
    assert abs(np.linalg.norm(d) - 2 ** 0.5) < 1e-4  # |d|^2 = sum_t w_t (g_t . d) = T


def test_the_two_task_closed_form_is_the_newton_solution():
    import numpy as np

    from mtl_core.weighting.fairgrad import newton_weights
    from mtl_core.weighting.grad_utils import two_task_weights

    gen = np.random.default_rng(0)
    g = gen.standard_normal((200, 2, 5)) * 10.0 ** gen.integers(-3, 4, (200, 2, 1))
    g[:20, 1] = -g[:20, 0] * 0.3 + 1e-4 * gen.standard_normal((20, 5)) * np.abs(g[:20, 0]).max(1, keepdims=True)
    m = g @ g.transpose(0, 2, 1)
    closed, solved = two_task_weights(m)
    newton, converged = newton_weights(m, 1.0)
    assert solved.all() and converged.all()
    np.testing.assert_allclose(closed[20:], newton[20:], rtol=1e-10)
    np.testing.assert_allclose(closed[:20], newton[:20], rtol=1e-5)  # nearly opposite: weights up to 1e6

    def off(w):  # how far m w = 1 / w is from holding, in extended precision
        wl = w.astype(np.longdouble)
        return np.abs((m.astype(np.longdouble) @ wl[:, :, None])[:, :, 0] * wl - 1).max(1)

    assert off(closed)[20:].max() < 1e-13 and off(closed)[:20].max() < 1e-7  # Newton: 4e-13 and 1.2e-6
    assert off(closed)[:20].max() < off(newton)[:20].max()
    opposite = np.stack([g[0, 0], -2.0 * g[0, 0]]) @ np.stack([g[0, 0], -2.0 * g[0, 0]]).T
    assert not two_task_weights(opposite[None])[1][0]  # no solution: left to least_squares
