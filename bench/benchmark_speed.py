"""Images per second and peak memory of a protocol preset's training step on the device at hand.

    python bench/benchmark_speed.py --preset nyuv2 [--method static|cagrad|...] [--steps 5]
                                    [--data-root DIR] [--set FIELD=VALUE ...]

Without ``--data-root`` the bench writes a folder in the preset's exact on-disk format (MTAN's
``.npy`` layout, random arrays of the published shapes and dtypes) and trains on it, so the numbers
count reading and decoding the real files. The first step (allocation, cuDNN's autotuning) is left
out of the rate. Peak memory: the GPU's largest allocation on CUDA, else the process's peak
resident set (Python, torch and the data included). On this machine's CPU the preset's full size
is slow (a dilated ResNet-50 at 288 x 384); ``--set data.image_size=[72,96]`` tries it smaller.
The last line: ``<preset> <method> <device>: <images/s> images/s, peak <MiB> MiB``.
"""
from __future__ import annotations

import argparse
import dataclasses
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from mtl_core.config import ExperimentConfig, merge, parse_set  # noqa: E402
from mtl_core.data.mtan_npy import write_random_copy  # noqa: E402
from mtl_core.protocols.benchmarks import load_preset  # noqa: E402
from mtl_core.store.store import RunStore  # noqa: E402
from mtl_core.training.loop import Trainer  # noqa: E402
from mtl_core.training.validation import check  # noqa: E402


def bench_config(preset: str, method: str, steps: int, root: str, overrides: list[str]) -> ExperimentConfig:
    """The preset's config for ``steps`` timed steps on ``root``: no evaluation until the end (on a
    few images), no checkpoint but the final one, the preset's model, batch and image size."""
    cfg = load_preset(preset).experiment()
    cfg = dataclasses.replace(
        cfg, eval_every=10**7, first_eval=0, checkpoint_every=0, gradstats_every=0,
        data=dataclasses.replace(cfg.data, root=root, val_size=2, test_size=2),
        model=dataclasses.replace(cfg.model, pretrained=False),  # no ImageNet file here: speed does not depend on it
        optim=dataclasses.replace(cfg.optim, steps=steps + 1),
        weighting=dataclasses.replace(cfg.weighting, method=method))
    if overrides:
        cfg = ExperimentConfig.from_dict(merge(cfg.to_dict(), parse_set(overrides)))
    return check(cfg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="nyuv2")
    ap.add_argument("--method", default="static", help="weighting method (static = EW)")
    ap.add_argument("--steps", type=int, default=5, help="timed steps (after one untimed)")
    ap.add_argument("--data-root", help="the preset's data on disk (default: a random copy in its format)")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = a.data_root
        base = load_preset(a.preset).experiment()
        if root is None:
            size = ExperimentConfig.from_dict(merge(base.to_dict(), parse_set(a.set))).data.hw if a.set else base.data.hw
            n = base.optim.batch_size * (a.steps + 1) + 8  # every step reads files it has not read
            root = str(write_random_copy(Path(tmp) / "data", base.data.dataset, n_train=n, n_val=2, size=size))
        cfg = bench_config(a.preset, a.method, a.steps, root, a.set)
        store = RunStore(Path(tmp) / "runs")
        rid = store.create_run(cfg.to_dict(), cfg.name, "bench", cfg.optim.steps)
        marks: list[tuple[int, float]] = []
        trainer = Trainer(cfg, store, rid, on_progress=lambda p: marks.append((p["step"], time.perf_counter())))
        trainer.flush_seconds = 0.0  # a progress report at every step: its time is the step's end
        status = trainer.run()
        run = store.get_run(rid)
        if status != "finished":
            raise SystemExit(f"the run {status}: {run.get('error')}")
        device = run.get("device") or "cpu"
        (s0, t0), (s1, t1) = marks[0], marks[-1]
        rate = (s1 - s0) * cfg.optim.batch_size * trainer.method.batches_per_step / max(t1 - t0, 1e-9)
        if device.startswith("cuda"):
            peak = torch.cuda.max_memory_allocated() / 2**20
            what = "GPU allocation"
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            what = "process resident set"
        name = torch.cuda.get_device_name() if device.startswith("cuda") else "CPU"
        print(f"{a.preset}: {cfg.model.backbone} + {cfg.model.architecture}"
              f"{' + ' + cfg.model.head if cfg.model.head else ''}, {cfg.data.hw[0]}x{cfg.data.hw[1]}, batch "
              f"{cfg.optim.batch_size}, {a.steps} timed steps on {name} ({torch.get_num_threads()} threads); peak is "
              f"the {what}")
        print(f"{a.preset} {a.method} {device}: {rate:.2f} images/s, peak {peak:.0f} MiB")


if __name__ == "__main__":
    main()
