"""Render the sample images the Predict page offers to a person with nothing to upload.

They are test-split scenes of the built-in procedural dataset (``mtl_core.data``), drawn at
256 px so that every task's overlay reads well on the page, and committed as PNG files under
``assets/samples/``. Regenerate them (after a change to the scenes, say) from the repository root::

    python assets/make_samples.py            # writes assets/samples/scene_1.png ... scene_5.png
    python assets/make_samples.py --count 6 --size 320

The same arguments give the same files: the scenes come from the seed, nothing else.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mtl_core.config import DataConfig  # noqa: E402
from mtl_core.data import build_dataset  # noqa: E402

OUT = ROOT / "assets" / "samples"


def render(count: int, size: int, seed: int, out: Path) -> list[Path]:
    """Save the first ``count`` test scenes at ``size`` px as ``scene_<n>.png`` in ``out``."""
    cfg = DataConfig(image_size=size, test_size=count)
    dataset = build_dataset(cfg, "test", seed)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("scene_*.png"):  # a smaller --count leaves no stale files behind
        old.unlink()
    paths = []
    for i in range(count):
        image, _ = dataset[i]  # (3, H, W) float in [0, 1]
        pixels = (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)  # (H, W, 3)
        path = out / f"scene_{i + 1}.png"
        Image.fromarray(pixels).save(path, optimize=True)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=5, help="how many images (default 5)")
    p.add_argument("--size", type=int, default=256, help="side in pixels, 32 to 256 (default 256)")
    p.add_argument("--seed", type=int, default=0, help="the dataset seed (default 0)")
    p.add_argument("--out", type=Path, default=OUT, help="the folder (default assets/samples)")
    args = p.parse_args(argv)
    for path in render(args.count, args.size, args.seed, args.out):
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


if __name__ == "__main__":
    main()
