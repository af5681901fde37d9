"""Gradient conflict, made visible: per-task gradients on the shared parameters (or, under
``rep_grad``, on the shared representation), their pairwise cosine similarities and norms
(negative cosine = the tasks pull the shared weights apart; Yu et al., 'Gradient Surgery for
Multi-Task Learning', NeurIPS 2020)."""
from __future__ import annotations

import torch
from torch import Tensor


def task_gradients(losses: dict[str, Tensor], params: list[Tensor]) -> dict[str, Tensor]:
    """Flattened gradient of each task's loss on ``params``; keeps the graph for the real backward."""
    out = {}
    for t, loss in losses.items():
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        out[t] = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).float() for g, p in zip(grads, params)])
    return out


def rep_gradients(losses: dict[str, Tensor], rep) -> dict[str, Tensor]:
    """Flattened gradient of each task's loss on the shared representation: under ``rep_grad``
    task ``t``'s head is fed its own detached copy ``rep.per_task[t]`` of the features, so that copy
    is where its gradient arrives (the backbone parameters receive nothing until the method has
    combined them). Keeps the graph for the real backward."""
    out = {}
    for t, loss in losses.items():
        x = rep.per_task[t]
        (g,) = torch.autograd.grad(loss, x, retain_graph=True, allow_unused=True)
        out[t] = (g if g is not None else torch.zeros_like(x)).reshape(-1).float()
    return out


def gradient_stats(grads: dict[str, Tensor]) -> dict[str, float]:
    """``{"gradnorm/<t>": ||g_t||, "gradcos/<a>|<b>": cos(g_a, g_b)}`` for every pair a < b (task order)."""
    names = list(grads)
    g = torch.stack([grads[t] for t in names])  # (T, D)
    norms = g.norm(dim=1)  # (T,)
    unit = g / norms.clamp_min(1e-12)[:, None]
    cos = unit @ unit.T  # (T, T)
    stats = {f"gradnorm/{t}": float(n) for t, n in zip(names, norms)}
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            stats[f"gradcos/{names[i]}|{names[j]}"] = float(cos[i, j])
    return stats


def cosine_matrix(stats: dict[str, float], tasks: list[str]) -> list[list[float]]:
    """The full symmetric matrix (diagonal 1) from :func:`gradient_stats` keys, for a heatmap."""
    m = [[1.0 if i == j else float("nan") for j in range(len(tasks))] for i in range(len(tasks))]
    for i, a in enumerate(tasks):
        for j, b in enumerate(tasks):
            for key in (f"gradcos/{a}|{b}", f"gradcos/{b}|{a}"):
                if key in stats:
                    m[i][j] = stats[key]
    return m
