"""The toy problems of the MTL papers: two or three task losses over two parameters ``(x, y)``.

Every problem, the papers' and a person's own, is written as formulas in ``x`` and ``y``
(:mod:`mtl_core.playground.expressions`), so one text gives both the torch losses a method's
``combine`` back-propagates through and the numpy values and gradients the batched stepping uses.

Each problem gives its losses for a batch of points, the box it is drawn in, its starting points,
the optimiser and step size its paper used, and, where it is known in closed form, its Pareto set
(the points no other point beats on every task) and the optimum of the average loss. A problem a
person types (:func:`typed_problem`) has neither in closed form: they are found on a grid
(:mod:`mtl_core.playground.analysis`).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from mtl_core.errors import ConfigError
from mtl_core.playground.expressions import Formula, parse_expression
from mtl_core.registry import Registry

Point = tuple[float, float]


@dataclass(frozen=True)
class Problem:
    """Task losses as formulas; :meth:`losses` on torch points, :meth:`values_and_grads` on numpy."""

    name: str
    title: str
    tasks: tuple[str, ...]
    formulas: tuple[Formula, ...]
    box: tuple[float, float, float, float]  # x min, x max, y min, y max
    starts: dict[str, tuple[Point, ...]]  # named sets of starting points, the first the default
    optimizer: str = "adam"  # "adam" or "sgd"
    lr: float = 0.05
    steps: int = 1000
    citation: str = ""
    about: str = ""
    pareto_set: Callable[[], np.ndarray] | None = None  # () -> (K, 2) points along the set, or None (grid)
    average_optimum: Point | None = None
    # the paper's own optimiser, step size and steps where the quick defaults above differ from them
    paper: tuple[str, float, int] | None = None

    @property
    def expressions(self) -> tuple[str, ...]:
        return tuple(f.text for f in self.formulas)

    def losses(self, points: Tensor) -> Tensor:
        """``points (N, 2)`` -> ``(N, T)``, differentiable."""
        return torch.stack([f(points[:, 0], points[:, 1]) for f in self.formulas], dim=1)

    def values_and_grads(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``points (N, 2)`` -> losses ``(N, T)`` and gradients ``(N, T, 2)`` (numpy, forward mode)."""
        memo: dict = {}  # the formulas' common sub-expressions, computed once
        parts = [f.with_grad(points[:, 0], points[:, 1], memo) for f in self.formulas]
        values = np.stack([p[0] for p in parts], axis=1)
        grads = np.stack([np.stack([p[1], p[2]], axis=1) for p in parts], axis=1)
        return values, grads

    @property
    def default_starts(self) -> tuple[Point, ...]:
        return next(iter(self.starts.values()))

    def evaluate(self, points: np.ndarray | Sequence[Point]) -> np.ndarray:
        """Losses ``(N, T)`` at ``points (N, 2)`` as numpy (no gradient)."""
        return self.values_and_grads(np.asarray(points, dtype=np.float64).reshape(-1, 2))[0]


PROBLEMS: Registry[Callable[[], Problem]] = Registry("playground problem")

# -- CAGrad's toy (Liu et al., NeurIPS 2021, Fig. 1; github.com/Cranial-XIX/CAGrad, toy.py) -------------

LOWER = 5e-6  # the public code's floor under |.| before the log
CAGRAD_PARETO_Y = -8.3552  # the public code's Pareto set: y = -8.3552, x in [-7, 7]
# the public code's ``Toy.batch_forward``: above y = 0 two log valleys (one task's gradient dwarfs
# the other's), below two quadratics whose minima (+-7, -8) bound the Pareto set. Its ``clamp`` is
# ``max``; at y = 0 exactly, where the clamp's gradient is 0, ours takes tanh's (the start (0, 0)
# of Nash-MTL's figure would otherwise sit on a point where both losses are flat).
CAGRAD_FORMULAS = tuple(
    f"(log(max(abs({log_arg}), {LOWER})) + 6) * max(tanh(0.5*y), 0) "
    f"+ (((-x{sign}7)**2 + 0.1*(-y-8)**2)/10 - 20) * max(tanh(-0.5*y), 0)"
    for log_arg, sign in (("0.5*(-x-7) - tanh(-y)", "+"), ("0.5*(-x+3) + tanh(-y) + 2", "-")))


def formulas(*texts: str) -> tuple[Formula, ...]:
    return tuple(parse_expression(t) for t in texts)


@PROBLEMS.register("cagrad_toy")
def cagrad_toy() -> Problem:
    return Problem(
        name="cagrad_toy", title="CAGrad's two-task toy", tasks=("L1", "L2"), formulas=formulas(*CAGRAD_FORMULAS),
        box=(-11.0, 11.0, -11.0, 11.0),
        # the CAGrad paper's figure and code start from three points; Nash-MTL's and FAMO's toy
        # (github.com/AvivNavon/nash-mtl, experiments/toy) from five, two of them CAGrad's
        starts={"Nash-MTL and FAMO's five": ((-8.5, 7.5), (0.0, 0.0), (9.0, 9.0), (-7.5, -0.5), (9.0, -1.0)),
                "CAGrad paper's three": ((-8.5, 7.5), (-8.5, -5.0), (9.0, 9.0))},
        # a quick look: 1,000 Adam steps of 0.1; the paper's small steps (0.001, 100,000 of them) are
        # what trap EW in a valley, as its Fig. 1 shows
        optimizer="adam", lr=0.1, steps=1000, paper=("adam", 0.001, 100_000),
        citation="Liu et al., 'Conflict-Averse Gradient Descent for Multi-task Learning', NeurIPS 2021, Fig. 1 "
                 "(public code: Adam, lr 0.001, 100,000 steps).",
        about="Above y = 0 each task has a narrow log valley and one task's gradient dwarfs the other's; below, "
              "two bowls whose minima (-7, -8.36) and (7, -8.36) end the Pareto set. The average loss is "
              "lowest in the middle of that segment.",
        pareto_set=lambda: np.stack([np.linspace(-7.0, 7.0, 57), np.full(57, CAGRAD_PARETO_Y)], axis=1),
        average_optimum=(0.0, CAGRAD_PARETO_Y))


# -- Jacobian descent's toys (Quinton and Rey 2024; github.com/TorchJD, trajectories) ----------------------

JD_STARTS = ((3.0, -2.0), (0.0, -3.0), (-4.0, 4.0), (-3.0, 4.0), (-5.0, -1.0))
JD_CITATION = "Quinton and Rey, 'Jacobian Descent for Multi-Objective Optimization', 2024 (arXiv 2406.16232)"


@PROBLEMS.register("elementwise_quadratic")
def elementwise_quadratic() -> Problem:
    return Problem(
        name="elementwise_quadratic", title="Element-wise quadratic (x², y²)", tasks=("x²", "y²"),
        formulas=formulas("x**2", "y**2"), box=(-5.5, 5.5, -5.5, 5.5), starts={"Jacobian descent's five": JD_STARTS},
        optimizer="sgd", lr=0.075, steps=50, citation=JD_CITATION + ", EWQ-2 (SGD, lr 0.075, 50 steps).",
        about="Each task owns one parameter: the gradients never conflict and (0, 0) is best for both. A method "
              "that keeps each task's influence proportional to its gradient walks straight there; one that "
              "equalises the tasks bends the path.",
        pareto_set=lambda: np.zeros((1, 2)), average_optimum=(0.0, 0.0))


CQF_B = (0.1 * np.array([[1.0, -1.0], [-1.0, 4.0]]), np.array([[1.0, -2.0], [1.0, -1.0]]))
CQF_U = (np.array([1.0, -1.0]), np.array([-1.0, -3.0]))
CQF_A = tuple(b @ b.T for b in CQF_B)


def quadratic_form(a: np.ndarray, u: np.ndarray) -> str:
    """``(p - u)' A (p - u)`` written out in x and y."""
    dx, dy = f"(x - ({float(u[0])!r}))", f"(y - ({float(u[1])!r}))"
    return f"{float(a[0, 0])!r}*{dx}**2 + {float(2 * a[0, 1])!r}*{dx}*{dy} + {float(a[1, 1])!r}*{dy}**2"


def cqf_point(ratio: float) -> np.ndarray:
    """The Pareto-optimal point of weights ``(ratio, 1)``: the minimiser of ``ratio f1 + f2`` (the
    strong Pareto-stationary mapping of the JD code, with ``w = (ratio, 1) / (1 + ratio)``)."""
    g = ratio * CQF_A[0] + CQF_A[1]
    b = ratio * CQF_A[0] @ CQF_U[0] + CQF_A[1] @ CQF_U[1]
    return np.linalg.solve(g, b)


@PROBLEMS.register("convex_quadratic_form")
def convex_quadratic_form() -> Problem:
    return Problem(
        name="convex_quadratic_form", title="Convex quadratic form", tasks=("f1", "f2"),
        formulas=formulas(*(quadratic_form(a, u) for a, u in zip(CQF_A, CQF_U))),
        box=(-6.0, 6.0, -6.0, 6.0), starts={"Jacobian descent's six": (*JD_STARTS[:4], (1.0, 5.0), JD_STARTS[4])},
        optimizer="sgd", lr=0.1, steps=200, citation=JD_CITATION + ", CQF_v1 (SGD, lr 0.1, 200 steps).",
        about="Two convex bowls, (x - u_i)' A_i (x - u_i), one flat and one steep, with minima (1, -1) and (-1, -3): "
              "the Pareto set is the curve of minimisers of their weighted sums.",
        # f1 is ~300 times flatter than f2: the set is sampled evenly in log(ratio), ends included
        pareto_set=lambda: np.stack([CQF_U[1], *(cqf_point(r) for r in np.geomspace(1e-3, 1e6, 241)), CQF_U[0]]),
        average_optimum=tuple(cqf_point(1.0)))


THREE_U = np.array([[-4.0, -3.0], [4.0, -3.0], [0.0, 4.0]])
THREE_A = np.array([1.0, 0.25, 2.0])  # curvatures: unequal, so the tasks' gradients differ in scale


@PROBLEMS.register("three_bowls")
def three_bowls() -> Problem:
    opt = THREE_A @ THREE_U / THREE_A.sum()

    def triangle() -> np.ndarray:
        corners = np.vstack([THREE_U, THREE_U[:1]])
        return np.vstack([np.linspace(a, b, 25) for a, b in zip(corners[:-1], corners[1:])])

    return Problem(
        name="three_bowls", title="Three tasks: three bowls of different steepness", tasks=("A", "B", "C"),
        formulas=formulas(*(f"{float(a)!r}/4*((x - ({float(u[0])!r}))**2 + (y - ({float(u[1])!r}))**2)"
                            for a, u in zip(THREE_A, THREE_U))),
        box=(-10.0, 10.0, -10.0, 10.0),
        starts={"five around": ((-8.0, 8.0), (8.0, 8.0), (0.0, -9.0), (-9.0, -2.0), (9.0, 0.0))},
        optimizer="adam", lr=0.05, steps=1000,
        citation="a three-task problem of MTL Studio's: a_i ||x - u_i||² / 4, minima at a triangle's corners",
        about="Three bowls with minima at (-4, -3), (4, -3) and (0, 4), of steepness 1, 0.25 and 2. Every point of the "
              "triangle is Pareto-optimal; the average loss is lowest near the steepest bowl (C).",
        pareto_set=triangle, average_optimum=(float(opt[0]), float(opt[1])))


def typed_problem(expressions: Sequence[str], box: tuple[float, float, float, float] = (-5.0, 5.0, -5.0, 5.0),
                  starts: Sequence[Point] | None = None, lr: float = 0.05, steps: int = 1000,
                  optimizer: str = "adam") -> Problem:
    """A problem of two or three losses a person typed, in ``x`` and ``y`` (see :mod:`.expressions`)."""
    texts = tuple(e.strip() for e in expressions if e and e.strip())
    if len(texts) not in (2, 3):
        raise ConfigError("playground.expressions", f"type two or three task losses; {len(texts)} given")
    funcs = tuple(parse_expression(t, f"playground.expressions[{i}]") for i, t in enumerate(texts))
    x0, x1, y0, y1 = box
    if not (x0 < x1 and y0 < y1):
        raise ConfigError("playground.box", f"{box} is not a box: give x min < x max and y min < y max")
    gx, gy = np.meshgrid(np.linspace(x0, x1, 9), np.linspace(y0, y1, 9))
    for i, (f, t) in enumerate(zip(funcs, texts)):  # a formula not finite anywhere in the box cannot be drawn
        if not np.isfinite(f.with_grad(gx.ravel(), gy.ravel())[0]).any():
            raise ConfigError(f"playground.expressions[{i}]", f"{t!r} is not a finite number anywhere in the box {box}")
    cx, cy, wx, wy = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    default = ((cx - 0.8 * wx, cy + 0.8 * wy), (cx + 0.8 * wx, cy + 0.8 * wy), (cx, cy - 0.8 * wy),
               (cx - 0.8 * wx, cy - 0.3 * wy), (cx + 0.8 * wx, cy))
    return Problem(name="typed", title="Your problem", tasks=tuple(f"L{i + 1}" for i in range(len(texts))),
                   formulas=funcs, box=tuple(float(v) for v in box), starts={"five around": tuple(starts or default)},
                   optimizer=optimizer, lr=lr, steps=steps, citation="typed by you",
                   about="Losses you typed; the Pareto set and the average optimum are found on a grid.")


def get_problem(name: str) -> Problem:
    return PROBLEMS.get(name, "playground.problem")()
