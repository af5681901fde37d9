"""The engine's training throughput (run-store logging on, evaluation off) as a ratio to a plain
hand-written PyTorch loop on the same model, data and batch, measured side by side.

Target (issue 6): at least 0.95 on CPU and on GPU. Last line: the ratio.

    python bench/engine_overhead.py [--steps 40] [--device auto]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from mtl_core.config import AugmentConfig, ExperimentConfig  # noqa: E402
from mtl_core.store.store import RunStore  # noqa: E402
from mtl_core.training.builders import autocast, autocast_dtype, build_all, resolve_device  # noqa: E402
from mtl_core.training.loop import Trainer  # noqa: E402


def config(steps: int, device: str) -> ExperimentConfig:
    cfg = ExperimentConfig(device=device, augment=AugmentConfig(hflip=0.0), eval_every=10**9, checkpoint_every=0,
                           gradstats_every=0)
    return dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, steps=steps, warmup_steps=0),
                               data=dataclasses.replace(cfg.data, val_size=1, test_size=1))


def plain_loop(cfg: ExperimentConfig) -> float:
    """Images per second of the loop a person would write by hand."""
    device = resolve_device(cfg.device)
    built = build_all(cfg, ("train",))
    ds, tasks, model = built["datasets"]["train"], built["tasks"], built["model"].to(device)
    model.to(memory_format=torch.channels_last)  # the engine's layout too, so the ratio is pure overhead
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    dtype = autocast_dtype(cfg.precision, device)
    bs, n = cfg.optim.batch_size, len(ds)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed))
    t0 = None
    for step in range(cfg.optim.steps):
        if step == 3:
            t0 = time.perf_counter()
        idx = order[(step * bs) % (n - bs):(step * bs) % (n - bs) + bs].tolist()
        images, targets = ds.get_batch(idx)
        images = images.to(device).contiguous(memory_format=torch.channels_last)
        targets = {k: (v.to(device) if torch.is_tensor(v) else {kk: vv.to(device) for kk, vv in v.items()})
                   for k, v in targets.items()}
        with autocast(device, dtype):
            out = model(images)
            loss = sum(task.loss(out[t], targets[t]) for t, task in tasks.items())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (cfg.optim.steps - 3) * bs / (time.perf_counter() - t0)


def engine(cfg: ExperimentConfig) -> float:
    with tempfile.TemporaryDirectory() as d:
        store = RunStore(d)
        rid = store.create_run(cfg.to_dict(), "overhead", "bench", cfg.optim.steps)
        stamps: list[tuple[int, float]] = []
        Trainer(cfg, store, rid, on_progress=lambda p: stamps.append((p["step"], time.perf_counter()))).run()
        assert store.get_run(rid)["status"] == "finished", store.get_run(rid)["error"]
        (s0, t0), (s1, t1) = stamps[0], stamps[-1]
        return (s1 - s0) * cfg.optim.batch_size / (t1 - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rounds", type=int, default=2, help="alternate the two loops this many times")
    a = ap.parse_args()
    cfg = config(a.steps, a.device)
    plain, eng = [], []
    for _ in range(a.rounds):  # interleaved so a noisy neighbour hurts both alike
        plain.append(plain_loop(cfg))
        eng.append(engine(cfg))
    print(f"plain loop: {max(plain):.0f} img/s   engine: {max(eng):.0f} img/s   ({resolve_device(a.device)})")
    print(f"engine/plain throughput ratio: {max(eng) / max(plain):.3f}")


if __name__ == "__main__":
    main()
