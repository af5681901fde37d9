"""Losses a person types: parsed without eval, refused with a message that names what was wrong,
and the numpy forward-mode gradient equal to torch's autograd on the same formula."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mtl_core.errors import ConfigError
from mtl_core.playground.expressions import parse_expression
from mtl_core.playground.problems import CAGRAD_FORMULAS

FORMULAS = ["(x - 1)**2 + 0.5*y**2", "sin(x)*cos(y) + exp(-x**2)", "log(1 + x**2) * tanh(y) - sqrt(abs(x) + 1)",
            "max(x, y) + min(x**2, 2) / (1 + y**2)", "sigmoid(x - y) + softplus(y) + atan(x*y)", "x**y",
            "2^x + pi*e", *CAGRAD_FORMULAS]


@pytest.mark.parametrize("text", FORMULAS)
def test_the_numpy_gradient_is_torch_autograd_s(text):
    f = parse_expression(text)
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0.3, 3, 50), rng.uniform(-3, 3, 50)  # x > 0: x**y is defined
    v, dx, dy = f.with_grad(x, y)
    tx, ty = torch.tensor(x, requires_grad=True), torch.tensor(y, requires_grad=True)
    out = f(tx, ty)
    gx, gy = (g if g is not None else torch.zeros_like(tx) for g in
              torch.autograd.grad(out.sum(), [tx, ty], allow_unused=True))
    np.testing.assert_allclose(v, out.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, gx.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(dy, gy.numpy(), rtol=1e-9, atol=1e-12)


def test_a_constant_has_the_shape_of_x_and_zero_gradient():
    v, dx, dy = parse_expression("3").with_grad(np.zeros(4), np.zeros(4))
    assert v.shape == (4,) and (v == 3).all() and not dx.any() and not dy.any()
    assert parse_expression("2*pi")(torch.zeros(3), torch.zeros(3)).shape == (3,)


@pytest.mark.parametrize("text, names", [
    ("__import__('os').system('ls')", "__import__"),
    ("x.real", "attribute"),
    ("open('/etc/passwd')", "'open'"),
    ("z + 1", "'z'"),
    ("'x' * 3", "'x'"),
    ("[x, y]", "list"),
    ("lambda: 1", "lambda"),
    ("x if y else 1", "ifexp"),
    ("x < y", "compare"),
    ("x % 2", "operator"),
    ("sin(x, y)", "takes 1"),
    ("", "empty"),
    ("x +", "not a formula"),
])
def test_anything_outside_the_small_language_is_refused_naming_it(text, names):
    with pytest.raises(ConfigError) as err:
        parse_expression(text, "playground.expressions[0]")
    message = str(err.value)
    assert err.value.field == "playground.expressions[0]" and names.lower() in message.lower()
    assert "use x, y" in message or "takes" in message or "empty" in message


def test_a_long_formula_is_refused():
    with pytest.raises(ConfigError, match="characters long"):
        parse_expression("x+" * 200 + "y")
