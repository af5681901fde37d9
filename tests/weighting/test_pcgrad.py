import torch

from mtl_core.weighting.pcgrad import PCGrad


def test_non_conflicting_gradients_are_left_alone():
    grads = torch.tensor([[1.0, 0.5], [0.2, 1.0]])  # positive inner product
    g, w = PCGrad(["a", "b"]).combine_grads(grads, torch.ones(2), 0)
    torch.testing.assert_close(g, grads.sum(0))
    torch.testing.assert_close(w, torch.tensor([1.0, 1.0]))


def test_conflicting_components_are_removed():
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])  # g1 . g2 = -1
    grads = torch.stack([g1, g2])
    method = PCGrad(["a", "b"])
    projected = method.project(grads)
    assert abs(float(projected[0] @ g2)) < 1e-6  # each lies on the normal plane of the other
    assert abs(float(projected[1] @ g1)) < 1e-6
    torch.testing.assert_close(projected, torch.tensor([[0.5, 0.5], [0.0, 1.0]]))
    g, w = method.combine_grads(grads, torch.ones(2), 0)
    torch.testing.assert_close(g, torch.tensor([0.5, 1.5]))
    torch.testing.assert_close(w @ grads, g)


def test_same_seed_same_random_order():
    torch.manual_seed(0)
    stream = [torch.randn(4, 6) for _ in range(3)]  # four tasks: the order matters
    a, b = PCGrad(list("abcd"), params={"seed": 3.0}), PCGrad(list("abcd"), params={"seed": 3.0})
    for step, grads in enumerate(stream):
        torch.testing.assert_close(a.combine_grads(grads, torch.ones(4), step)[0],
                                   b.combine_grads(grads, torch.ones(4), step)[0])
