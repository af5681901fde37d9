"""Images per second a real photo dataset delivers in its second epoch (JPEGs decoded once, then
served by the image cache) as a ratio to what the default model trains on this machine's CPU.

Builds a folder of 640 x 480 JPEGs in the ``image_folder`` layout (one class per source photo:
crops, flips and colour changes of scikit-image's and scikit-learn's sample photos), then

- the pipeline: epoch 1, then epochs 2, 3, ... over the training split through ``__getitem__``
  and :func:`~mtl_core.data.base.collate`, in a seeded shuffled order, batches of 32, exactly as
  ``Trainer._batch`` fetches a dataset without ``get_batch``;
- training: the default model (architecture and backbone of ``ModelConfig()``) for
  ``tasks=("classification",)``, built as ``build_all`` builds it, forward + backward + optimiser
  step on batches of 32, after warm-up.

Both report their best round (for the pipeline: its fastest cached epoch), as ``timeit`` does:
on a shared machine the slower rounds measure the other processes.

Target (real-data issue): at least 3x at a realistic size for photos, 96 x 128 (height x width,
the photos' 3:4). Last line: the ratio.

    python bench/real_data_pipeline.py [--count 2500] [--size 96x128] [--rounds 3] [--keep DIR]

Needs scikit-image and scikit-learn (their sample photos); the folder and the image cache's disk
tier live in a temporary folder unless ``--keep``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageEnhance  # noqa: E402

from mtl_core.config import DataConfig, ExperimentConfig, parse_image_size, size_hw  # noqa: E402
from mtl_core.data.base import collate  # noqa: E402
from mtl_core.data.cache import ImageCache, set_default_cache  # noqa: E402

PHOTO_WH = (640, 480)  # width x height of every JPEG written
SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field",
                  "retina", "camera")  # all shipped with scikit-image (no download); camera is greyscale


def source_photos() -> dict[str, np.ndarray]:
    """Sample photos as ``(H, W, 3)`` uint8, by name: scikit-image's and scikit-learn's."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    out = {}
    for name in SKIMAGE_PHOTOS:
        a = getattr(skimage.data, name)()
        out[name] = np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a[..., :3]
    sk = load_sample_images()
    for path, a in zip(sk.filenames, sk.images):
        out[Path(path).stem] = a  # china, flower
    return out


def variant(photo: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A random 4:3 crop (40-100% of the shorter side), maybe mirrored, with its colour changed
    (saturation, brightness, channel gains), at 640 x 480."""
    h, w = photo.shape[:2]
    ch = int(min(h, w * 3 / 4) * rng.uniform(0.4, 1.0))
    cw = int(ch * 4 / 3)
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    im = Image.fromarray(photo[y:y + ch, x:x + cw]).resize(PHOTO_WH, Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    im = ImageEnhance.Color(im).enhance(rng.uniform(0.5, 1.5))
    im = ImageEnhance.Brightness(im).enhance(rng.uniform(0.7, 1.3))
    gains = rng.uniform(0.8, 1.2, size=3)
    a = np.clip(np.asarray(im, dtype=np.float32) * gains, 0, 255).astype(np.uint8)
    return Image.fromarray(a)


def make_photos(root: str | Path, count: int = 2500, seed: int = 0) -> Path:
    """``root/<source photo>/<i>.jpg``: ``count`` 640 x 480 JPEGs, as evenly over the sources as
    ``count`` allows (an ``image_folder`` dataset, one class per source photo)."""
    root = Path(root)
    rng = np.random.default_rng(seed)  # never torch's global generator
    sources = source_photos()
    names = sorted(sources)
    for name in names:
        (root / name).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        name = names[i % len(names)]
        variant(sources[name], rng).save(root / name / f"{i:05d}.jpg", quality=90)
    return root


def epoch_rate(ds, epoch: int, batch: int) -> float:
    """Images per second of one epoch over ``ds`` as the trainer draws it (seeded permutation,
    ``__getitem__`` then ``collate``)."""
    n = len(ds)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(7919 + epoch)).tolist()
    t0 = time.perf_counter()
    for pos in range(0, n - n % batch, batch):
        collate([ds[i] for i in order[pos:pos + batch]], ds.info.max_objects or None)
    return (n - n % batch) / (time.perf_counter() - t0)


def training_rate(cfg: ExperimentConfig, ds, steps: int = 6, rounds: int = 3, warmup: int = 3) -> float:
    """Images per second of real training steps of the default model on batches of ``ds``: the
    best of ``rounds`` rounds of ``steps`` steps."""
    from mtl_core.isolation import seeded_global_rng
    from mtl_core.models import build_model
    from mtl_core.training.builders import build_optimizer, build_tasks
    from mtl_core.training.loop import masked_loss
    from mtl_core.weighting import StepContext, build_weighting

    tasks = build_tasks(cfg, ds.info)
    with seeded_global_rng(cfg.seed):
        model = build_model(tasks, cfg.model)
    model.train()
    method = build_weighting(cfg.weighting.method, list(tasks), cfg.weighting.params, rep_grad=cfg.weighting.rep_grad)
    opt = build_optimizer(model.parameters(), cfg.optim)
    shared = model.shared_parameters()
    bs = cfg.optim.batch_size
    batches = [collate([ds[i] for i in range(k * bs, (k + 1) * bs)]) for k in range(2)]
    best, t0 = 0.0, 0.0
    for step in range(warmup + steps * rounds):
        if step >= warmup and (step - warmup) % steps == 0:
            if step > warmup:
                best = max(best, steps * bs / (time.perf_counter() - t0))
            t0 = time.perf_counter()
        images, targets = batches[step % 2]
        images = images.contiguous(memory_format=torch.channels_last)
        opt.zero_grad(set_to_none=True)
        outputs, rep = model.forward_train(images, rep_grad=method.rep_grad)
        losses = {t: masked_loss(task, outputs[t], *task.target_of(targets)) for t, task in tasks.items()}
        method.combine([losses], shared, StepContext(step=step, rep=rep))
        opt.step()
    return max(best, steps * bs / (time.perf_counter() - t0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=2500, help="JPEGs to write (80%% are the training split)")
    ap.add_argument("--size", default="96x128", help="the model's height x width")
    ap.add_argument("--rounds", type=int, default=3, help="cached epochs, and rounds of 6 training steps")
    ap.add_argument("--keep", default="", help="write the photos here and keep them (else a temp folder)")
    args = ap.parse_args()
    h, w = size_hw(parse_image_size([int(v) for v in args.size.lower().split("x")]))
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="mtl-real-bench-"))
    try:
        root = work / "photos"
        t0 = time.perf_counter()
        if not (root.is_dir() and sum(1 for _ in root.rglob("*.jpg")) >= args.count):
            make_photos(root, args.count)
        made = time.perf_counter() - t0
        set_default_cache(ImageCache(folder=work / "cache"))  # empty, and not the user's ~/.cache
        cfg = ExperimentConfig(tasks=("classification",), device="cpu",
                               data=DataConfig(dataset="image_folder", root=str(root), image_size=(h, w)))
        from mtl_core.data import build_dataset

        ds = build_dataset(cfg.data, "train", cfg.seed)
        bs = cfg.optim.batch_size
        first = epoch_rate(ds, 1, bs)
        second = max(epoch_rate(ds, e, bs) for e in range(2, 2 + args.rounds))
        train = training_rate(cfg, ds, rounds=args.rounds)
        threads, cores = torch.get_num_threads(), len(os.sched_getaffinity(0))
        print(f"photos: {args.count} JPEGs {PHOTO_WH[0]}x{PHOTO_WH[1]} in {len(ds.info.class_names)} classes "
              f"({made:.0f} s to write); training split {len(ds)}; model input {h}x{w} (letterbox), batch {bs}")
        print(f"epoch 1 (decode + resize): {first:,.0f} img/s; epoch 2 (image cache, best of epochs 2-{1 + args.rounds}): "
              f"{second:,.0f} img/s")
        print(f"training ({cfg.model.architecture}/{cfg.model.backbone}, classification, forward + backward + "
              f"{cfg.optim.optimizer} step): {train:,.0f} img/s on {threads} threads")
        print(f"pipeline feeds {second / train:.1f}x faster than training (epoch 2: {second:,.0f} img/s vs "
              f"{train:,.0f} img/s training, {h}x{w}, {cores} cores)")
    finally:
        set_default_cache(None)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
