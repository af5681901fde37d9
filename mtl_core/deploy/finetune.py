"""A short, deterministic fine-tune of a compressed model (e.g. after channel pruning) on its run's data.

Not the Trainer (which builds its own model from the config and records a run): a plain loop
over the run's training split, in the run's own seeded data order (a fresh permutation per
epoch from ``seed``, like the Trainer's), with the run's tasks' losses summed with the run's
static task weights (missing = 1; a run trained with an adaptive weighting method is fine-tuned
with equal weights: a few hundred steps are too few for its state to matter) and the run's
optimiser at ``lr`` with cosine decay. Augmentation is the run's, drawn from a generator per step.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from mtl_core.config import ExperimentConfig
from mtl_core.data.augment import Augmenter
from mtl_core.data.base import collate
from mtl_core.data.labels import apply_budget, scale_losses
from mtl_core.errors import ConfigError
from mtl_core.tasks import target_kinds
from mtl_core.training.builders import build_optimizer, lr_factor
from mtl_core.training.loop import masked_loss

FINETUNE_SEED_OFFSET = 104_729  # a data order of its own, not the first epochs the run already saw


def _batch(ds, idx: list[int]):
    if hasattr(ds, "get_batch"):
        return ds.get_batch(idx)
    return collate([ds[i] for i in idx], ds.info.max_objects or None)


def finetune(model: nn.Module, config: ExperimentConfig, tasks: dict, train_set, steps: int,
             lr: float | None = None) -> list[float]:
    """Train ``model`` (on the CPU, in place) for ``steps`` updates; returns the total loss of each step.

    ``lr``: the peak learning rate (default: the run's own; a tenth of it left the demo, pruned by half,
    0.03 to 0.06 below the original after 300 steps, the run's own recovered it in 600: bench/RESULTS.md), decayed by cosine to 5%.
    """
    if steps < 0:
        raise ConfigError("finetune_steps", f"must be 0 or more, got {steps}")
    if steps == 0:
        return []
    weights = dict(config.weighting.weights) if config.weighting.method == "static" else {}
    optim_cfg = dataclasses.replace(config.optim, steps=steps, warmup_steps=0, lr=lr or config.optim.lr)
    optimizer = build_optimizer(model.parameters(), optim_cfg)
    augmenter = Augmenter(config.augment, config.data.image_size)
    augmenter.kinds = target_kinds(tasks)
    n, bs = len(train_set), min(config.optim.batch_size, len(train_set))
    per_epoch = max(1, n // bs)
    seed = config.seed * 7919 + FINETUNE_SEED_OFFSET
    order = None
    totals = []
    model.train()
    for step in range(steps):
        epoch, pos = divmod(step, per_epoch)
        if pos == 0 or order is None:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))
        idx = order[pos * bs:(pos + 1) * bs].tolist()
        images, targets = _batch(train_set, idx)
        targets = apply_budget(targets, idx, tasks, config.data, config.seed)
        if not augmenter.is_identity:
            g = torch.Generator().manual_seed(seed * 31 + step)
            images, targets = augmenter.augment_batch(images, targets, generator=g)
        for group in optimizer.param_groups:
            group["lr"] = optim_cfg.lr * lr_factor(step, optim_cfg)
        outputs = model(images)
        losses = {t: masked_loss(task, outputs[t], *task.target_of(targets)) for t, task in tasks.items()}
        losses = scale_losses(losses, config.data.loss_scale)
        total = sum(weights.get(t, 1.0) * v for t, v in losses.items())
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        if config.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
        optimizer.step()
        totals.append(float(total.detach()))
    model.eval()
    return totals
