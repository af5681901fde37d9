import torch

from mtl_core.weighting.moco import MoCo


def test_weights_stay_on_the_simplex():
    torch.manual_seed(0)
    method = MoCo(list("abc"))
    for step in range(20):
        grads = torch.randn(3, 6) * torch.tensor([[1.0], [10.0], [0.1]])
        _, w = method.combine_grads(grads, torch.rand(3) + 0.1, step)
        assert (w >= 0).all() and abs(float(w.sum()) - 1.0) < 1e-6


def test_steady_gradients_lead_to_the_min_norm_weights():
    # with y tracking the gradients exactly and a constant step, lambda descends ||Y^T lambda||^2
    # on the simplex: for (2,0) and (0,1) the min-norm weights are (1/5, 4/5)
    method = MoCo(["a", "b"], params={"beta": 1.0, "beta_sigma": 0.0, "gamma": 0.1,
                                       "gamma_sigma": 0.0, "normalize": 0.0})
    grads = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    for step in range(300):
        g, w = method.combine_grads(grads, torch.ones(2), step)
    torch.testing.assert_close(w, torch.tensor([0.2, 0.8]), atol=1e-4, rtol=0)
    torch.testing.assert_close(g, torch.tensor([0.4, 0.8]), atol=1e-4, rtol=0)
