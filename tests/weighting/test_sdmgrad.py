"""SDMGrad by hand on 2-D gradients of two tasks from three batches: two inner steps with
momentum on the double-sampled Gram, then the update along the first batch, pulled towards its
mean gradient."""
import io

import pytest
import torch

from mtl_core.errors import ConfigError
from mtl_core.weighting.base import WEIGHTINGS
from mtl_core.weighting.sdmgrad import SDMGrad

# rows: tasks a, b. zeta moves the model; xi1 and xi2 choose the weights
ZETA = torch.tensor([[1.0, 1.0], [-1.0, 2.0]])
XI1 = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
XI2 = torch.tensor([[2.0, 1.0], [1.0, 0.0]])
LOSSES = [torch.ones(2)] * 3
HAND = {"lambda": 0.5, "niter": 2.0, "lr": 0.1, "momentum": 0.5}


def test_two_inner_steps_and_the_update_by_hand():
    # M = XI1 XI2^T = [[<(2,0),(2,1)>, <(2,0),(1,0)>], [<(0,1),(2,1)>, <(0,1),(1,0)>]] = [[4, 2], [1, 0]]
    # s = mean(sqrt 4, sqrt 0) = 1, so M stays; M 1/T = (3, 0.5), times lambda 0.5 = (1.5, 0.25)
    # step 1: M w = (3, 0.5) -> v = (4.5, 0.75); w - 0.1 v = (0.05, 0.425) -> simplex (+0.2625): (0.3125, 0.6875)
    # step 2: M w = (2.625, 0.3125) -> grad (4.125, 0.5625); v = 0.5 (4.5, 0.75) + grad = (6.375, 0.9375)
    #         w - 0.1 v = (-0.325, 0.59375) -> simplex (+0.365625): (0.040625, 0.959375)
    # weights (w + lambda / 2) / (1 + lambda) = (0.290625, 1.209375) / 1.5 = (0.19375, 0.80625)
    # update 0.19375 (1, 1) + 0.80625 (-1, 2) = (-0.6125, 1.80625)
    method = SDMGrad(["a", "b"], params=HAND)
    g, w = method.combine_multi([ZETA, XI1, XI2], LOSSES, 0)
    torch.testing.assert_close(method.w, torch.tensor([0.040625, 0.959375], dtype=torch.float64))
    torch.testing.assert_close(w, torch.tensor([0.19375, 0.80625]))
    torch.testing.assert_close(g, torch.tensor([-0.6125, 1.80625]))
    # the same as the paper writes it: (G_zeta^T w + lambda g0_zeta) / (1 + lambda)
    gw, g0 = torch.tensor([0.040625, 0.959375]) @ ZETA, ZETA.mean(0)
    torch.testing.assert_close(g, (gw + 0.5 * g0) / 1.5)


def test_the_gram_is_rescaled_so_the_step_size_suits_any_gradient_size():
    # the Gram is divided by s^2: gradients 1e-3 times as large give the same weights (LibMTL's
    # s^2 + 1e-8 would have divided by 1e-8 + 1e-6, not 1e-6)
    small = SDMGrad(["a", "b"], params=HAND).combine_multi([ZETA * 1e-3, XI1 * 1e-3, XI2 * 1e-3], LOSSES, 0)[1]
    torch.testing.assert_close(small, torch.tensor([0.19375, 0.80625]))


def test_lambda_zero_is_the_min_norm_direction_for_steady_gradients():
    # no noise, one batch in every role: w descends 1/2 ||G^T w||^2; for (2, 0) and (0, 1) the
    # min-norm weights are (1/5, 4/5) (a step small enough to converge: lr 0.1)
    method = SDMGrad(["a", "b"], params={"lambda": 0.0, "niter": 50.0, "lr": 0.1, "momentum": 0.5})
    g, w = method.combine_grads(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.ones(2), 0)
    torch.testing.assert_close(w, torch.tensor([0.2, 0.8]), atol=1e-4, rtol=0)
    torch.testing.assert_close(g, torch.tensor([0.4, 0.8]), atol=1e-4, rtol=0)


def test_state_resumes_the_weights():
    first = SDMGrad(["a", "b"], params=HAND)
    first.combine_multi([ZETA, XI1, XI2], LOSSES, 0)
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    resumed = SDMGrad(["a", "b"], params=HAND)
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    torch.testing.assert_close(first.combine_multi([XI2, ZETA, XI1], LOSSES, 1),
                               resumed.combine_multi([XI2, ZETA, XI1], LOSSES, 1))


def test_registered_with_paper_and_refuses_bad_parameters():
    cls = WEIGHTINGS.get("sdmgrad")
    assert cls is SDMGrad and cls.batches_per_step == 3 and "NeurIPS 2023" in cls.citation
    assert cls.defaults == {"lambda": 0.3, "niter": 20.0, "lr": 5.0, "momentum": 0.5}
    for field, value in (("lambda", -0.1), ("niter", 2.5), ("lr", 0.0), ("momentum", 1.0)):
        with pytest.raises(ConfigError, match=f"weighting.params.{field}"):
            SDMGrad(["a", "b"], params={field: value})
    with pytest.raises(ConfigError, match="shared representation"):
        SDMGrad(["a", "b"], rep_grad=True)
