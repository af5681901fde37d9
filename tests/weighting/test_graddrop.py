import torch

from mtl_core.weighting.graddrop import GradDrop


def test_gradients_of_one_sign_are_all_kept():
    grads = torch.tensor([[1.0, -2.0, 0.5, 0.0], [3.0, -0.1, 0.2, -1.0]])  # agree on every sign
    g, w = GradDrop(["a", "b"]).combine_grads(grads, torch.ones(2), 0)
    torch.testing.assert_close(g, grads.sum(0))
    torch.testing.assert_close(w, torch.tensor([1.0, 1.0]), atol=1e-5, rtol=1e-5)


def test_one_sign_wins_each_coordinate_in_proportion_to_its_purity():
    # per coordinate +3 against -1: purity 0.75, so +3 is kept about 3 times in 4, and never both
    grads = torch.tensor([[3.0], [-1.0]]).repeat(1, 4000)
    g, _ = GradDrop(["a", "b"], params={"seed": 1.0}).combine_grads(grads, torch.ones(2), 0)
    assert set(g.unique().tolist()) <= {3.0, -1.0}
    assert 0.72 < float((g == 3.0).float().mean()) < 0.78


def test_full_leak_keeps_everything():
    grads = torch.tensor([[3.0, -1.0], [-1.0, 2.0]])
    g, _ = GradDrop(["a", "b"], params={"leak": 1.0}).combine_grads(grads, torch.ones(2), 0)
    torch.testing.assert_close(g, grads.sum(0))
