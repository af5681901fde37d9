"""What the playground draws and says about a problem and its paths: the Pareto set and front, the
optimum of the average loss, the average loss on a grid, and where each path ended.

A problem whose Pareto set is known in closed form gives it; for one a person typed it is the
grid's points that no other grid point beats on every task (non-dominated), and the average
optimum is the grid's best point refined by L-BFGS-B. "On the Pareto set" means within a small
distance of it (0.5% of the box's width, or 1.5 grid cells for a set found on the grid); a path's
Pareto stationarity (the norm of the min-norm point of its task gradients, relative to the largest
of them, as MGDA measures it) is reported beside it, since a path can also stop where one task's
gradient vanishes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from mtl_core.playground.problems import Problem
from mtl_core.playground.simulate import Paths, task_gradients
from mtl_core.weighting.min_norm import min_norm_weights_batch

GRID = 121
SET_TOL = 0.005  # of the box's width
SETTLE_TOL = 0.005  # of the box's diagonal


@dataclass(frozen=True)
class Reference:
    """The Pareto set ``(K, 2)`` and front ``(K, T)``, the average-loss optimum, and how they were found."""

    pareto_set: np.ndarray
    pareto_front: np.ndarray
    region: bool  # the set is the inside of the polygon ``pareto_set`` (three bowls: a triangle)
    average_optimum: np.ndarray  # (2,)
    from_grid: bool
    tolerance: float  # a point this close to the set is on it


def grid_points(problem: Problem, n: int = GRID) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grid coordinates ``xs (n,)``, ``ys (n,)`` and the points ``(n * n, 2)``, row-major in y."""
    x0, x1, y0, y1 = problem.box
    xs, ys = np.linspace(x0, x1, n), np.linspace(y0, y1, n)
    gx, gy = np.meshgrid(xs, ys)
    return xs, ys, np.stack([gx.ravel(), gy.ravel()], axis=1)


def contours(problem: Problem, scales: np.ndarray | None = None, n: int = 90) -> tuple[np.ndarray, np.ndarray,
                                                                                        np.ndarray]:
    """``xs``, ``ys`` and the average (scaled) loss on the grid ``(n, n)`` (rows are y)."""
    xs, ys, pts = grid_points(problem, n)
    values = problem.evaluate(pts) * (1.0 if scales is None else scales)
    return xs, ys, values.mean(1).reshape(n, n)


def non_dominated(values: np.ndarray) -> np.ndarray:
    """Indices of the rows of ``values (N, T)`` that no other row beats on every column."""
    finite = np.nonzero(np.isfinite(values).all(1))[0]
    v = values[finite]
    if v.shape[1] == 2:
        order = np.lexsort((v[:, 1], v[:, 0]))
        best = np.minimum.accumulate(v[order, 1])
        keep = np.ones(len(order), dtype=bool)
        keep[1:] = v[order[1:], 1] < best[:-1]
        return finite[order[keep]]
    keep = np.ones(len(v), dtype=bool)
    for start in range(0, len(v), 512):
        chunk = v[start:start + 512]  # (C, T): is some row <= on all and < on one?
        le = (v[None, :, :] <= chunk[:, None, :]).all(2)
        lt = (v[None, :, :] < chunk[:, None, :]).any(2)
        keep[start:start + 512] = ~(le & lt).any(1)
    return finite[keep]


def reference(problem: Problem, scales: np.ndarray | None = None) -> Reference:
    """The Pareto set and the average optimum: in closed form where the problem knows them, else on a grid.

    Loss scales move neither the Pareto set (scaling a task never changes who beats whom) nor,
    for the problems that know it, the front's shape; they do move the average optimum, which is
    then recomputed."""
    scales = np.ones(len(problem.tasks)) if scales is None else np.asarray(scales, dtype=np.float64)
    x0, x1, y0, y1 = problem.box
    width = x1 - x0
    if problem.pareto_set is not None:
        pset = np.asarray(problem.pareto_set(), dtype=np.float64)
        region, from_grid, tol = problem.name == "three_bowls", False, SET_TOL * width
    else:
        n = GRID if len(problem.tasks) == 2 else 71
        _, _, pts = grid_points(problem, n)
        pset = pts[non_dominated(problem.evaluate(pts))]
        region, from_grid, tol = False, True, max(1.5 * width / (n - 1), SET_TOL * width)
    front = problem.evaluate(pset) * scales
    if problem.average_optimum is not None and np.all(scales == scales[0]):
        opt = np.asarray(problem.average_optimum, dtype=np.float64)
    else:
        opt = average_optimum(problem, scales)
    return Reference(pset, front, region, opt, from_grid, tol)


def average_optimum(problem: Problem, scales: np.ndarray) -> np.ndarray:
    """The point of the box with the least average scaled loss: the grid's best, refined by L-BFGS-B."""
    _, _, pts = grid_points(problem, 81)
    mean = (problem.evaluate(pts) * scales).mean(1)
    start = pts[np.nanargmin(np.where(np.isfinite(mean), mean, np.inf))]

    def fun(p: np.ndarray) -> tuple[float, np.ndarray]:
        v, g = task_gradients(problem, p[None], scales)
        return float(v.mean()), g[0].mean(0)

    x0, x1, y0, y1 = problem.box
    res = minimize(fun, start, jac=True, method="L-BFGS-B", bounds=[(x0, x1), (y0, y1)])
    return res.x if np.isfinite(res.fun) and res.fun <= fun(start)[0] else start


def inside_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Whether each of ``points (N, 2)`` lies inside the convex ``polygon (K, 2)`` (its boundary in order)."""
    a, b = polygon, np.roll(polygon, -1, axis=0)
    keep = np.linalg.norm(b - a, axis=1) > 0
    a, b = a[keep], b[keep]
    cross = (b[:, 0] - a[:, 0]) * (points[:, None, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (points[:, None, 0] - a[:, 0])
    return (cross >= -1e-9).all(1) | (cross <= 1e-9).all(1)


def distance_to_set(ref: Reference, points: np.ndarray) -> np.ndarray:
    """Distance of each of ``points (N, 2)`` to the Pareto set (0 inside a region)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    d = np.linalg.norm(pts[:, None, :] - ref.pareto_set[None], axis=2).min(1)
    if len(ref.pareto_set) > 1 and not ref.from_grid:  # a curve: distance to its segments (grid points are no curve)
        a, b = ref.pareto_set[:-1], ref.pareto_set[1:]
        ab = b - a
        t = np.clip(((pts[:, None] - a) * ab).sum(2) / np.maximum((ab * ab).sum(1), 1e-300), 0.0, 1.0)
        d = np.minimum(d, np.linalg.norm(pts[:, None] - (a + t[..., None] * ab), axis=2).min(1))
    if ref.region:
        d = np.where(inside_polygon(pts, ref.pareto_set), 0.0, d)
    return np.where(np.isfinite(pts).all(1), d, np.inf)


def stationarity(problem: Problem, points: np.ndarray, scales: np.ndarray | None = None) -> np.ndarray:
    """``||min-norm point of the task gradients|| / max_t ||g_t||`` at each point: 0 where no
    direction improves every task (Pareto-stationary), 1 where the gradients agree."""
    scales = np.ones(len(problem.tasks)) if scales is None else np.asarray(scales, dtype=np.float64)
    _, g = task_gradients(problem, np.asarray(points, dtype=np.float64).reshape(-1, 2), scales)
    g = np.nan_to_num(g)
    w = min_norm_weights_batch(g @ g.transpose(0, 2, 1))  # (N, T)
    d = np.linalg.norm(np.einsum("nt,ntd->nd", w, g), axis=1)
    return d / np.maximum(np.linalg.norm(g, axis=2).max(1), 1e-300)


def settle_step(path: np.ndarray, tol: float) -> int:
    """The first step after which ``path (N + 1, 2)`` stays within ``tol`` of its end."""
    far = np.linalg.norm(path - path[-1], axis=1) > tol
    far = np.where(np.isfinite(path).all(1), far, True)
    idx = np.nonzero(far)[0]
    return int(idx[-1] + 1) if len(idx) else 0


def endpoints(problem: Problem, paths: Paths, ref: Reference, scales: np.ndarray | None = None) -> list[dict]:
    """One row per method and start: where the path ended, on the Pareto set or not, its distance
    to the average-loss optimum, its Pareto stationarity, and the step it settled at."""
    ends = paths.ends().reshape(-1, 2)
    dist = distance_to_set(ref, ends)
    to_opt = np.linalg.norm(ends - ref.average_optimum, axis=1)
    stat = stationarity(problem, np.nan_to_num(ends), scales)
    x0, x1, y0, y1 = problem.box
    tol = SETTLE_TOL * float(np.hypot(x1 - x0, y1 - y0))
    rows = []
    for k, method in enumerate(paths.methods):
        for i, start in enumerate(paths.starts):
            j = k * len(paths.starts) + i
            end = paths.positions[k, i, -1]
            finite = bool(np.isfinite(end).all())
            rows.append({
                "method": method, "start": i + 1, "start_x": float(start[0]), "start_y": float(start[1]),
                "end_x": float(end[0]), "end_y": float(end[1]),
                **{f"loss_{t}": float(v) for t, v in zip(paths.tasks, paths.losses[k, i, -1])},
                "on_pareto_set": bool(finite and dist[j] <= ref.tolerance),
                "distance_to_set": float(dist[j]), "distance_to_average_optimum": float(to_opt[j]) if finite else np.inf,
                "stationarity": float(stat[j]) if finite else np.nan,
                "settled_at_step": settle_step(paths.positions[k, i], tol) if finite else -1,
                "diverged": not finite,
            })
    return rows


def nearest_to_optimum(rows: list[dict]) -> list[str]:
    """The method(s) whose paths end nearest the average optimum, on average over the starts."""
    mean: dict[str, list[float]] = {}
    for r in rows:
        mean.setdefault(r["method"], []).append(r["distance_to_average_optimum"])
    score = {m: float(np.mean(v)) for m, v in mean.items()}
    best = min(score.values())
    return [m for m, v in score.items() if v <= best * (1 + 1e-9) + 1e-12]
