"""Samples per second the data pipeline delivers (generation, augmentation, batching) as a
ratio to what the default model consumes in training, on this machine's CPU.

Target (issue 6): at least 3. Last line: the ratio.

    python bench/data_pipeline.py
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from mtl_core.config import ExperimentConfig  # noqa: E402
from mtl_core.data.augment import Augmenter  # noqa: E402
from mtl_core.training.builders import build_all  # noqa: E402
from mtl_core.weighting import StepContext, build_weighting  # noqa: E402


def pipeline_rate(cfg: ExperimentConfig, batches: int = 30) -> float:
    built = build_all(cfg, ("train",))
    ds = built["datasets"]["train"]
    aug = Augmenter(cfg.augment, cfg.data.image_size)
    bs = cfg.optim.batch_size
    t0 = time.perf_counter()
    for b in range(batches):
        images, targets = ds.get_batch(list(range(b * bs, (b + 1) * bs)))
        aug.augment_batch(images, targets, generator=torch.Generator().manual_seed(b))
    return batches * bs / (time.perf_counter() - t0)


def model_rate(cfg: ExperimentConfig, steps: int = 12) -> float:
    built = build_all(cfg, ("train",))
    ds, tasks, model = built["datasets"]["train"], built["tasks"], built["model"]
    method = build_weighting("static", list(tasks))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images, targets = ds.get_batch(list(range(cfg.optim.batch_size)))
    t0 = None
    for i in range(steps):
        if i == 2:
            t0 = time.perf_counter()
        out = model(images)
        losses = {t: task.loss(out[t], targets[t]) for t, task in tasks.items()}
        opt.zero_grad(set_to_none=True)
        method.combine(losses, model.shared_parameters(), StepContext(step=i))
        opt.step()
    return (steps - 2) * cfg.optim.batch_size / (time.perf_counter() - t0)


def main() -> None:
    cfg = ExperimentConfig(device="cpu")
    data = max(pipeline_rate(cfg) for _ in range(2))
    model = max(model_rate(cfg) for _ in range(2))
    print(f"pipeline: {data:.0f} samples/s (generation + augmentation + batching, batch {cfg.optim.batch_size})")
    print(f"model consumes: {model:.0f} samples/s (forward + backward + step)")
    print(f"pipeline/model ratio: {data / model:.2f}")


if __name__ == "__main__":
    main()
