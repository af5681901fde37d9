"""Per-task label budgets for the training split: scarce, noisy and mis-scaled labels.

Real multi-task datasets rarely label every image for every task, some labels are wrong, and
tasks' losses come in units that differ by orders of magnitude. Three ``data`` fields make any
run such a case, per task, on any dataset:

- ``label_fraction``: only that share of the training samples keeps the task's label; the others
  are masked from its loss (``targets["valid"]``), as a dataset with missing annotations is
  (semi-supervised multi-task learning, e.g. Liu et al., "Semi-supervised multitask learning",
  NeurIPS 2007).
- ``label_noise``: that share of the task's labels is replaced by a class drawn uniformly at
  random (symmetric label noise, Natarajan et al., "Learning with noisy labels", NeurIPS 2013);
  at 1.0 the task is a pure distractor that competes for the shared layers.
- ``loss_scale``: the task's loss is multiplied before any weighting, as if its targets came in
  other units (the imbalance that Kendall et al., CVPR 2018, and Chen et al., GradNorm,
  ICML 2018, set out to undo).

Which samples are labelled, and which labels are flipped to what, is a hash of the run's seed,
the task and the sample's index: the same samples every epoch (a fixed labelled subset, as in a
real dataset), independent of batch order, the same on every rank, and never the global RNG.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from mtl_core.data.scenes import hash32

_SALT_FRACTION, _SALT_NOISE, _SALT_CLASS = 0x2545F491, 0x9E3779B9, 0x7FEB352D


def _uniform(seed: int, task: str, salt: int, indices: Tensor) -> Tensor:
    """A uniform draw in [0, 1) per sample index, fixed by (seed, task, salt, index)."""
    t = sum((i + 1) * ord(c) for i, c in enumerate(task)) & 0xFFFFFFFF
    k = hash32(torch.full_like(indices, (seed * 0x01000193 + t) & 0xFFFFFFFF) ^ salt)
    return (hash32(hash32(k + indices) ^ salt) >> 8).double() / (1 << 24)


def labelled(seed: int, task: str, fraction: float, indices: Sequence[int] | Tensor) -> Tensor:
    """Which of these training samples keep ``task``'s label (bool ``(B,)``)."""
    idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
    if fraction >= 1.0:
        return torch.ones(len(idx), dtype=torch.bool)
    return _uniform(seed, task, _SALT_FRACTION, idx) < fraction


def apply_budget(targets: dict[str, Any], indices: Sequence[int] | Tensor, tasks: Mapping[str, Any],
                 data: Any, seed: int) -> dict[str, Any]:
    """A training batch's targets with ``data.label_fraction`` and ``data.label_noise`` applied.

    ``tasks``: name -> built task (its ``target_name()`` says where its label is; its
    ``random_labels`` draws the noise). Returns ``targets`` itself when nothing applies.
    """
    fractions = {t: f for t, f in data.label_fraction.items() if t in tasks and f < 1.0}
    noise = {t: p for t, p in data.label_noise.items() if t in tasks and p > 0.0}
    if not fractions and not noise:
        return targets
    idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
    out = dict(targets)
    valid = dict(out.get("valid", {}))
    for t, f in fractions.items():
        key = tasks[t].target_name()
        keep = labelled(seed, t, f, idx)
        old = valid.get(key)
        valid[key] = keep if old is None else torch.as_tensor(old, dtype=torch.bool).reshape(-1).cpu() & keep
    if fractions:
        out["valid"] = valid
    for t, p in noise.items():
        key = tasks[t].target_name()
        label = out[key]
        flip = (_uniform(seed, t, _SALT_NOISE, idx) < p).to(label.device)
        drawn = tasks[t].random_labels(_uniform(seed, t, _SALT_CLASS, idx)).to(label.device, label.dtype)
        out[key] = torch.where(flip.view(-1, *[1] * (label.dim() - 1)), drawn.view_as(label), label)
    return out


def scale_losses(losses: dict[str, Tensor], scales: Mapping[str, float]) -> dict[str, Tensor]:
    """Each task's loss times its ``data.loss_scale`` (missing = 1)."""
    if not scales:
        return losses
    return {t: v * float(scales[t]) if t in scales and scales[t] != 1.0 else v for t, v in losses.items()}
