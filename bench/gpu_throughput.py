"""Images per second of the default 3-task model at 128x128, batch 256, on CUDA: the fast path
(bf16 autocast, channels_last, scenes drawn on the GPU, optionally torch.compile) as a ratio to
the same code in plain fp32, and the achieved fraction of the card's peak bf16 FLOP/s.

Targets (issue 6): at least 3x fp32. Needs an NVIDIA GPU; on a machine without one it says so.

    python bench/gpu_throughput.py [--compile] [--steps 30]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from mtl_core.config import DataConfig, ExperimentConfig, OptimConfig  # noqa: E402
from mtl_core.data.base import to_device  # noqa: E402
from mtl_core.training.builders import build_all  # noqa: E402

# dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets
PEAKS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "RTX 4090": 165.0}


def peak_tflops(name: str) -> float | None:
    return next((v for k, v in PEAKS.items() if k in name), None)


def run(cfg: ExperimentConfig, fast: bool, steps: int, compile_model: bool) -> tuple[float, float]:
    """(images/s, FLOPs per image for forward + backward)."""
    device = torch.device("cuda")
    built = build_all(cfg, ("train",))
    ds, tasks, model = built["datasets"]["train"], built["tasks"], built["model"].to(device)
    if fast:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    fwd = torch.compile(model) if compile_model else model
    bs = cfg.optim.batch_size

    def step(i: int) -> None:
        idx = list(range(i * bs, (i + 1) * bs))
        if fast:
            images, targets = ds.get_batch(idx, device=device)
            images = images.contiguous(memory_format=torch.channels_last)
        else:  # drawn on the CPU, copied over
            images, targets = ds.get_batch(idx)
            images, targets = images.to(device), to_device(targets, device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=fast):
            out = fwd(images)
            loss = sum(task.loss(out[t], targets[t]) for t, task in tasks.items())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for i in range(5):
        step(i)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(steps):
        step(i % 20)
    torch.cuda.synchronize()
    rate = steps * bs / (time.perf_counter() - t0)
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step(0)
    return rate, counter.get_total_flops() / bs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--compile", action="store_true", help="also torch.compile the fast path")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device on this machine: gpu_throughput skipped")
        return
    cfg = ExperimentConfig(device="cuda", data=DataConfig(image_size=128, train_size=100_000),
                           optim=OptimConfig(batch_size=256))
    cfg = dataclasses.replace(cfg, precision="bf16")
    name = torch.cuda.get_device_name()
    fp32, flops = run(cfg, fast=False, steps=a.steps, compile_model=False)
    fast, _ = run(cfg, fast=True, steps=a.steps, compile_model=False)
    print(f"{name}: fp32 {fp32:.0f} img/s, bf16 + channels_last + GPU data {fast:.0f} img/s")
    best = fast
    if a.compile:
        compiled, _ = run(cfg, fast=True, steps=a.steps, compile_model=True)
        print(f"  + torch.compile: {compiled:.0f} img/s")
        best = max(best, compiled)
    peak = peak_tflops(name)
    achieved = best * flops / 1e12
    frac = f"{achieved / peak:.3f} of the {peak:.0f} TFLOP/s peak" if peak else "peak unknown for this card"
    print(f"model: {flops / 1e9:.2f} GFLOP per image (fwd + bwd); achieved {achieved:.1f} TFLOP/s, {frac}")
    print(f"fast path / fp32: {best / fp32:.2f}x ({best:.0f} vs {fp32:.0f} img/s on {name})")


if __name__ == "__main__":
    main()
