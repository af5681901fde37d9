"""Task losses a person types, as expressions in ``x`` and ``y``, read without ``eval``.

The text is parsed by Python's own parser (``ast.parse``, which runs nothing) and the tree is
walked node by node; only numbers, ``x``, ``y``, ``pi``, ``e``, ``+ - * / **``, unary minus and
a short list of functions are accepted. Anything else (a name, an attribute, a subscript, a
string, a lambda) is refused with a message that says what was found and what may be used.
The result, a :class:`Formula`, evaluates the expression two ways from the same tree: with torch
operations (autograd gives the gradient; what a method's ``combine`` back-propagates through) and
in numpy with its gradient carried along (forward-mode differentiation: each node's value and its
derivatives in x and y), which is what lets the playground step hundreds of points a millisecond.
At a tie, ``max`` and ``min`` take their first argument's derivative, in both.
"""
from __future__ import annotations

import ast
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from mtl_core.errors import ConfigError

FUNCTIONS: dict[str, Callable[..., Tensor]] = {
    "sin": torch.sin, "cos": torch.cos, "tan": torch.tan, "tanh": torch.tanh, "exp": torch.exp,
    "log": torch.log, "sqrt": torch.sqrt, "abs": torch.abs, "sigmoid": torch.sigmoid,
    "softplus": torch.nn.functional.softplus, "atan": torch.atan,
    "max": lambda a, b: torch.where(a >= b, a, b), "min": lambda a, b: torch.where(a <= b, a, b),
}
CONSTANTS = {"pi": math.pi, "e": math.e}
VARIABLES = ("x", "y")
MAX_LENGTH = 300
_BINARY = {ast.Add: torch.add, ast.Sub: torch.sub, ast.Mult: torch.mul, ast.Div: torch.div, ast.Pow: torch.pow}

Expression = Callable[[Tensor, Tensor], Tensor]
Dual = tuple  # (value, d/dx, d/dy): numpy arrays, or floats for a node that does not depend on x or y


def _allowed() -> str:
    return (f"use x, y, numbers, {', '.join(CONSTANTS)}, + - * / ** and the functions "
            f"{', '.join(sorted(FUNCTIONS))}")


class Formula:
    """A checked expression: ``formula(x, y)`` on tensors (differentiable), :meth:`with_grad` on numpy."""

    def __init__(self, text: str, node: ast.AST) -> None:
        self.text, self.node = text, node
        self._dual = _compile_dual(node)

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        out = _build(self.node, x, y)
        if not isinstance(out, Tensor):
            out = torch.as_tensor(out, dtype=x.dtype)
        return out + torch.zeros_like(x) if out.shape != x.shape else out  # a constant: the shape of x

    def with_grad(self, x: np.ndarray, y: np.ndarray, memo: dict | None = None) -> tuple[np.ndarray, np.ndarray,
                                                                                        np.ndarray]:
        """Value, d/dx and d/dy at points ``x``, ``y`` (arrays of one shape), in float64. Formulas
        evaluated at the same points may share a ``memo``: their common sub-expressions are
        computed once."""
        zero = np.zeros_like(x)
        with np.errstate(all="ignore"):
            return tuple(np.asarray(v, dtype=np.float64) + zero for v in self._dual(x, y, {} if memo is None else memo))


def parse_expression(text: str, field: str = "expression") -> Formula:
    """``text`` (e.g. ``"(x - 1)**2 + 0.5*y**2"``) -> a :class:`Formula` of ``x``, ``y``."""
    text = (text or "").strip().replace("^", "**")
    if not text:
        raise ConfigError(field, f"is empty; type a loss in x and y such as (x - 1)**2 + y**2; {_allowed()}")
    if len(text) > MAX_LENGTH:
        raise ConfigError(field, f"is {len(text)} characters long; keep it under {MAX_LENGTH}")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as err:
        raise ConfigError(field, f"{text!r} is not a formula (column {err.offset}: {err.msg}); {_allowed()}") from None
    _check(tree.body, field, text)
    return Formula(text, tree.body)


def _check(node: ast.AST, field: str, text: str) -> None:
    """Refuse any node outside the small arithmetic language, naming it."""
    for n in ast.walk(node):
        if isinstance(n, (ast.Expression, ast.Load, ast.operator, ast.unaryop)):
            if isinstance(n, ast.operator) and type(n) not in _BINARY:
                raise ConfigError(field, f"{text!r} uses an operator that is not allowed; {_allowed()}")
            if isinstance(n, ast.unaryop) and not isinstance(n, (ast.USub, ast.UAdd)):
                raise ConfigError(field, f"{text!r} uses an operator that is not allowed; {_allowed()}")
            continue
        if isinstance(n, ast.Constant):
            if not isinstance(n.value, (int, float)) or isinstance(n.value, bool):
                raise ConfigError(field, f"{text!r} holds {n.value!r}, which is not a number; {_allowed()}")
        elif isinstance(n, ast.Name):
            if n.id not in VARIABLES and n.id not in CONSTANTS and n.id not in FUNCTIONS:
                raise ConfigError(field, f"{text!r} uses {n.id!r}, which is not known; {_allowed()}")
        elif isinstance(n, ast.Call):
            if not isinstance(n.func, ast.Name) or n.func.id not in FUNCTIONS or n.keywords:
                what = n.func.id if isinstance(n.func, ast.Name) else ast.unparse(n.func)
                raise ConfigError(field, f"{text!r} calls {what!r}, which is not allowed; {_allowed()}")
            want = 2 if n.func.id in ("max", "min") else 1
            if len(n.args) != want:
                raise ConfigError(field, f"{text!r}: {n.func.id} takes {want} argument(s), it was given {len(n.args)}")
        elif not isinstance(n, (ast.BinOp, ast.UnaryOp)):
            raise ConfigError(field, f"{text!r} holds {type(n).__name__.lower()} {ast.unparse(n)!r}, which is not "
                              f"allowed; {_allowed()}")


def _build(node: ast.AST, x: Tensor, y: Tensor):
    if isinstance(node, ast.Constant):
        return float(node.value)
    if isinstance(node, ast.Name):
        return {"x": x, "y": y}.get(node.id, CONSTANTS.get(node.id))
    if isinstance(node, ast.UnaryOp):
        value = _build(node.operand, x, y)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp):
        left, right = _build(node.left, x, y), _build(node.right, x, y)
        if not isinstance(left, Tensor) and not isinstance(right, Tensor):
            return _BINARY[type(node.op)](torch.tensor(left, dtype=x.dtype), right).item()
        return _BINARY[type(node.op)](torch.as_tensor(left, dtype=x.dtype), torch.as_tensor(right, dtype=x.dtype))
    args = [torch.as_tensor(_build(a, x, y), dtype=x.dtype) for a in node.args]  # ast.Call (checked)
    return FUNCTIONS[node.func.id](*args)


def _compile_dual(node: ast.AST) -> Callable[[np.ndarray, np.ndarray, dict], Dual]:
    """Forward mode: a function ``(x, y, memo) -> (value, d/dx, d/dy)`` of ``node``, built once from
    the tree (a closure per node) so that evaluating it walks no tree. Every compound node keeps
    its result in ``memo`` under its text, so a sub-expression met twice (in one formula, or in the
    formulas of one problem sharing a ``memo``) is computed once."""
    if isinstance(node, ast.Constant):
        c = (float(node.value), 0.0, 0.0)
        return lambda x, y, memo: c
    if isinstance(node, ast.Name):
        if node.id == "x":
            return lambda x, y, memo: (x, 1.0, 0.0)
        if node.id == "y":
            return lambda x, y, memo: (y, 0.0, 1.0)
        c = (CONSTANTS[node.id], 0.0, 0.0)
        return lambda x, y, memo: c
    if isinstance(node, ast.UnaryOp):
        inner = _compile_dual(node.operand)
        if isinstance(node.op, ast.UAdd):
            return inner

        def neg(x, y, memo):
            v, dx, dy = inner(x, y, memo)
            return -v, -dx, -dy
        return _memoised(neg, node)
    if isinstance(node, ast.BinOp):
        left, right, op = _compile_dual(node.left), _compile_dual(node.right), type(node.op)
        if op is ast.Pow and isinstance(node.right, ast.Constant):
            p = float(node.right.value)

            def power(x, y, memo):
                a, ax, ay = left(x, y, memo)
                k = p * a ** (p - 1)
                return a ** p, k * ax, k * ay
            return _memoised(power, node)
        return _memoised(lambda x, y, memo: _binary(op, left(x, y, memo), right(x, y, memo)), node)
    name = node.func.id  # ast.Call (checked)
    args = [_compile_dual(a) for a in node.args]
    if name in ("max", "min"):
        def extreme(x, y, memo):
            (a, ax, ay), (b, bx, by) = args[0](x, y, memo), args[1](x, y, memo)
            first = (a >= b) if name == "max" else (a <= b)
            return np.where(first, a, b), np.where(first, ax, bx), np.where(first, ay, by)
        return _memoised(extreme, node)
    fn = _UNARY[name]

    def unary(x, y, memo):
        a, ax, ay = args[0](x, y, memo)
        v, d = fn(a)
        return v, d * ax, d * ay
    return _memoised(unary, node)


def _memoised(fn: Callable[[np.ndarray, np.ndarray, dict], Dual], node: ast.AST):
    key = ast.dump(node)

    def run(x, y, memo):
        hit = memo.get(key)
        if hit is None:
            hit = memo[key] = fn(x, y, memo)
        return hit
    return run


def _constant(d: Dual) -> bool:
    return isinstance(d[0], float) and isinstance(d[1], float) and d[1] == 0.0 and d[2] == 0.0


def _binary(op: type, left: Dual, right: Dual) -> Dual:
    (a, ax, ay), (b, bx, by) = left, right
    if op is ast.Add:
        return a + b, ax + bx, ay + by
    if op is ast.Sub:
        return a - b, ax - bx, ay - by
    if op is ast.Mult:
        if _constant(right):  # a constant factor: no product rule (most nodes of a formula)
            return a * b, ax * b, ay * b
        if _constant(left):
            return a * b, a * bx, a * by
        return a * b, ax * b + a * bx, ay * b + a * by
    if op is ast.Div:
        if _constant(right):
            return a / b, ax / b, ay / b
        return a / b, (ax * b - a * bx) / b ** 2, (ay * b - a * by) / b ** 2
    v, la = np.power(a, b), np.log(a)  # ast.Pow with a variable exponent
    return v, v * (bx * la + b * ax / a), v * (by * la + b * ay / a)


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


_UNARY = {  # value and derivative
    "sin": lambda a: (np.sin(a), np.cos(a)), "cos": lambda a: (np.cos(a), -np.sin(a)),
    "tan": lambda a: (np.tan(a), 1.0 / np.cos(a) ** 2), "tanh": lambda a: (np.tanh(a), 1.0 - np.tanh(a) ** 2),
    "exp": lambda a: (np.exp(a), np.exp(a)), "log": lambda a: (np.log(a), 1.0 / a),
    "sqrt": lambda a: (np.sqrt(a), 0.5 / np.sqrt(a)), "abs": lambda a: (np.abs(a), np.sign(a)),
    "sigmoid": lambda a: (_sigmoid(a), _sigmoid(a) * (1.0 - _sigmoid(a))),
    "softplus": lambda a: (np.logaddexp(0.0, a), _sigmoid(a)), "atan": lambda a: (np.arctan(a), 1.0 / (1.0 + a * a)),
}
