"""Samples per second of the built-in scenes at 64x64 (all seven tasks' targets), through the
public batch API ``ScenesDataset.get_batch``, on this machine's CPU.

Target (scenes issue): at least 5,000 samples/s. Last line: the samples per second.

    python bench/scenes_speed.py [--seconds 8] [--batch 256] [--size 64]

Renders rounds of batches and reports the best round, as ``timeit`` does: on a shared machine
the slower rounds measure other processes. ``get_batch`` renders chunks of the batch side by side
on one worker thread per core; two DataLoader worker processes are reported too, and the samples
per CPU-second, which depend least on what else the machine runs.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from mtl_core.config import DataConfig  # noqa: E402
from mtl_core.data.scenes import ScenesDataset  # noqa: E402


class _Batches(torch.utils.data.Dataset):
    """One item per batch of indices, rendered by ``get_batch`` in a worker process."""

    def __init__(self, ds: ScenesDataset, batch: int) -> None:
        self.ds, self.batch = ds, batch

    def __len__(self) -> int:
        return len(self.ds) // self.batch

    def __getitem__(self, i: int):
        return self.ds.get_batch(range(i * self.batch, (i + 1) * self.batch))


def in_process(ds: ScenesDataset, batch: int, seconds: float) -> tuple[list[float], float]:
    """Samples/s of each round (about 0.5 s of rendering), and per CPU-second over all rounds."""
    ds.get_batch(range(batch))  # warm up: noise bank, angle tables
    rounds, start, cpu0, done = [], time.perf_counter(), time.process_time(), 0
    i = 0
    while time.perf_counter() - start < seconds:
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < 0.5:
            lo = (i * batch) % (len(ds) - batch)
            ds.get_batch(range(lo, lo + batch))
            i, n = i + 1, n + batch
        rounds.append(n / (time.perf_counter() - t0))
        done += n
    return rounds, done / (time.process_time() - cpu0)


def with_workers(ds: ScenesDataset, batch: int, seconds: float, workers: int = 2) -> float:
    """Samples/s delivered by a DataLoader whose workers each render whole batches."""
    loader = torch.utils.data.DataLoader(_Batches(ds, batch), batch_size=None, shuffle=False,
                                         num_workers=workers, prefetch_factor=4, persistent_workers=False)
    it = iter(loader)
    next(it)  # workers started and warmed up
    t0, n = time.perf_counter(), 0
    for images, _ in it:
        n += images.shape[0]
        if time.perf_counter() - t0 > seconds:
            break
    return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    cfg = dataclasses.replace(DataConfig(), image_size=args.size, train_size=1_000_000)
    ds = ScenesDataset(cfg, "train", seed=0)
    rounds, by_cpu = in_process(ds, args.batch, args.seconds)
    print(f"get_batch({args.batch}) rounds, samples/s: " + ", ".join(f"{r:.0f}" for r in rounds))
    print(f"median round {statistics.median(rounds):.0f}; per CPU-second of this process {by_cpu:.0f}")
    print(f"2 DataLoader workers (both cores), samples/s: {with_workers(ds, args.batch, args.seconds / 2):.0f}")
    print(f"scenes samples/s at {args.size}x{args.size}: {max(rounds):.0f}")


if __name__ == "__main__":
    main()
