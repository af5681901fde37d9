"""Upload-to-overlay latency on CPU for a 1024x768 photo-like JPEG: decode + predict + overlay +
PNG encode, what the Predict page does for one uploaded file. The checkpoint comes from a tiny run
trained here (all four dense/box/label tasks). Target: under 0.5 s. The last line is the figure.
"""
from __future__ import annotations

import dataclasses
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mtl_core.config import DataConfig, ExperimentConfig, OptimConfig  # noqa: E402
from mtl_core.inference.images import decode_image  # noqa: E402
from mtl_core.inference.predictor import Predictor  # noqa: E402
from mtl_core.runs.manager import RunManager  # noqa: E402
from mtl_core.views.render import render  # noqa: E402

TASKS = ("classification", "detection", "segmentation", "depth")


def photo_like(w: int = 1024, h: int = 768, seed: int = 0) -> bytes:
    """A JPEG with smooth gradients, blobs and sensor-like noise (compresses like a photo)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([x / w, y / h, 0.5 + 0.5 * np.sin(x / 70.0) * np.cos(y / 50.0)], axis=-1) * 200
    for _ in range(12):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(30, 150)
        img[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 8, img.shape)
    buf = io.BytesIO()
    Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def tiny_checkpoint(runs_dir: str) -> str:
    cfg = ExperimentConfig(name="bench", tasks=TASKS, data=DataConfig(image_size=64, train_size=64, val_size=32, test_size=32),
                           optim=OptimConfig(batch_size=16, steps=5, warmup_steps=0), eval_every=5, checkpoint_every=5,
                           device="cpu")
    manager = RunManager(runs_dir)
    run_id = manager.start(dataclasses.replace(cfg))
    status = manager.wait(run_id, 300)
    assert status == "finished", manager.store.get_run(run_id)["error"]
    return manager.store.latest_checkpoint(run_id)["path"]


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        predictor = Predictor(tiny_checkpoint(d))
        data = photo_like()
        parts: dict[str, list[float]] = {"decode": [], "predict": [], "overlay + PNG": [], "total": []}
        for i in range(6):
            t0 = time.perf_counter()
            image = decode_image(data, "photo.jpg")  # (3, 768, 1024) uint8
            t1 = time.perf_counter()
            preds, _ = predictor.predict(image)
            t2 = time.perf_counter()
            out = render(predictor, image, preds, opacity=0.5, score_threshold=0.3, beside=True)
            png = out.png()
            t3 = time.perf_counter()
            assert out.overlay.shape == (768, 1024, 3) and png[:4] == b"\x89PNG"
            if i:  # the first call warms up allocators and fonts
                for k, v in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t3 - t0), strict=False):
                    parts[k].append(v)
        print(f"image: 1024x768 JPEG ({len(data) / 1024:.0f} KiB), tasks: {', '.join(TASKS)}, model input 64 px")
        for k, v in parts.items():
            print(f"{k}: {statistics.median(v) * 1e3:.0f} ms")
        print(f"upload to overlay (decode + predict + overlay + PNG), 1024x768, CPU: "
              f"{statistics.median(parts['total']):.3f} s (target < 0.5 s)")


if __name__ == "__main__":
    main()
