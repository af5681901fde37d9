"""The built-in procedural scenes: coloured shapes on a textured, noisy background.

Each image shows 1 to ``max_objects`` shapes (circle, square, triangle, star, cross, ring), each
with its own colour, size, position, rotation and depth; nearer objects hide farther ones
(a z-buffer, Catmull, "A subdivision algorithm for computer display of curved surfaces", 1974).
Every object's surface is a dome, a sphere cap over its shape (its depth, one value per object,
is its distance; the relief is small beside it), and the background a plane facing the camera,
tilted as its depth recedes; a light from the upper left shades them (Lambertian, see
:func:`mtl_core.data.backdrop.shading`), so the relief that the ``normals`` target holds can be seen in the image.
Every sample carries targets for all seven tasks at once (see :mod:`mtl_core.data.base`).

Randomness is counter-based (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
SC 2011): every number is a hash of ``(seed, split, index, draw)``, never the state of a
generator, so a sample is the same bit for bit whatever batch it is made in, each split has
its own stream, and the same code runs on a GPU (:func:`render` takes ``device``). Only exactly
rounded float ops (+, -, *, /, sqrt, min, max, comparisons, and sums with one nonzero term) touch
per-sample values; sin and cos come from tables built once, because CPU kernels compute them
differently in their vectorised body and their scalar tail, which would make a sample depend
on where it sits in the batch.
"""
from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import torch
from torch import Tensor

from mtl_core.config import DataConfig, size_hw
from mtl_core.data.backdrop import ANGLES, backdrop, light_direction, shading
from mtl_core.data.base import SPLITS, DatasetInfo, Sample, Targets, register_dataset, unpad_detection
from mtl_core.data.shapes import SHAPES, dome_normals, shape_masks  # noqa: F401  (SHAPES is public here too)
from mtl_core.errors import ConfigError
from mtl_core.isolation import THREADS_LOCK

TASKS = ("classification", "multilabel", "detection", "segmentation", "depth", "count", "normals")
DEPTH_MAX = 10.0  # the background (a far plane) lies in [6.75, 10]; objects in [1.5, 6]
DOME = 1.5  # an object's surface is a sphere cap of this many times its radius (a star's tips reach 1.25)
MIN_SIZE, MAX_SIZE = 32, 256
MAX_OBJECTS = 16

_M32 = 0xFFFFFFFF
_MUL = 0x45D9F3B  # below 2**27, so a 32-bit value times it stays far below 2**63
_SPLIT_SALT = {"train": 0x1B873593, "val": 0x5BD1E995, "test": 0x27D4EB2F}
_NOISE_BANK = 1 << 20  # 4 MiB; a 256 x 256 image takes a window of 3 * 65536
_SAMPLE_DRAWS = 20  # per-sample draws, then _OBJECT_DRAWS per object slot, then _SURFACE_DRAWS
_OBJECT_DRAWS = 9
_SURFACE_DRAWS = 3  # the backdrop's ripples (drawn last, so the draws before them stay as they were)


def hash32(x: Tensor) -> Tensor:
    """A 32-bit integer hash of an int64 tensor (low 32 bits used); values in ``[0, 2**32)``.

    Thomas Mueller's xor-shift-multiply hash (his answer to "What integer hash function are good
    that accepts an integer hash key?", Stack Overflow), a bijection on 32 bits; every product
    stays below 2**60, so it is exact in int64 on any device.
    """
    x = x & _M32
    x = (((x >> 16) ^ x) * _MUL) & _M32
    x = (((x >> 16) ^ x) * _MUL) & _M32
    return (x >> 16) ^ x


def sample_keys(seed: int, split: str, indices: Tensor) -> Tensor:
    """One 32-bit key per sample (int64 ``(B,)``); distinct indices give distinct keys."""
    if split not in _SPLIT_SALT:
        raise ConfigError("split", f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    idx = indices.long()
    k = hash32(torch.full_like(idx, seed & _M32) ^ _SPLIT_SALT[split])
    k = hash32(k ^ hash32(torch.full_like(idx, (seed >> 32) & _M32)))
    return hash32(k + idx)  # hash32 is a bijection on 32 bits: distinct indices, distinct keys


def _uniforms(keys: Tensor, n: int) -> Tensor:
    """``n`` uniform draws in [0, 1) per key: ``(B, n)`` float32, exact (24-bit) values."""
    draws = hash32(torch.arange(n, device=keys.device) * 0x9E3779B + 0x632BE5AB)  # (n,)
    h = hash32(hash32(keys[:, None] ^ draws[None, :]) + keys[:, None])  # (B, n)
    return (h >> 8).float() * (1.0 / (1 << 24))


@lru_cache(maxsize=4)
def _angle_table(device: torch.device) -> tuple[Tensor, Tensor]:
    """cos and sin of ``ANGLES`` angles, from Python's math so they are identical everywhere."""
    angles = [2 * math.pi * i / ANGLES for i in range(ANGLES)]
    return (torch.tensor([math.cos(a) for a in angles], device=device),
            torch.tensor([math.sin(a) for a in angles], device=device))


@lru_cache(maxsize=4)
def _noise_bank(device: torch.device, std: float) -> Tensor:
    """``_NOISE_BANK`` Gaussian-like values of standard deviation ``std`` (Irwin-Hall: the sum of
    four uniforms), hashed from their position, so the same on every run and device."""
    h = torch.stack([hash32(torch.arange(_NOISE_BANK, device=device) * 2 + j) for j in (0, 1)])  # (2, T)
    u = torch.cat([h & 0xFFFF, h >> 16]).float() * (1.0 / (1 << 16))  # (4, T)
    return (u.sum(0) - 2.0) * (math.sqrt(3.0) * std)  # (T,)


# ----------------------------------------------------------------------------------- render
def render(keys: Tensor, image_size: int | tuple[int, int] = 64, max_objects: int = 4, num_shapes: int = 4,
           noise: float = 0.04, device: torch.device | str | None = None,
           instances: bool = False, chunk: int | None = None) -> tuple[Tensor, Targets]:
    """Render one scene per key (from :func:`sample_keys`); a pure function of its arguments.

    ``image_size`` is one number for a square or ``(height, width)``. Returns ``images (B, 3, H, W)``
    in [0, 1] and the collated targets of :mod:`mtl_core.data.base`, detection padded to
    ``max_objects`` boxes (visible objects first, far to near). With ``instances=True`` the targets
    also hold ``"instances"``, long ``(B, H, W)``: 0 for background, ``j + 1`` where object ``j``
    of the detection list is seen.
    On the CPU the batch is rendered ``chunk`` samples at a time (default: about a million pixels,
    and at least one chunk per intra-op thread torch may use), the chunks side by side on
    worker threads; the result does not depend on either.
    """
    dev = torch.device(device) if device is not None else keys.device
    keys, B, (H, W) = keys.to(dev), len(keys), size_hw(image_size)
    if chunk is None:
        chunk = B if dev.type != "cpu" else max(1, (1 << 20) // (H * W))
    images = torch.empty(B, 3, H, W, device=dev)
    big: Targets = {"segmentation": torch.empty(B, H, W, dtype=torch.long, device=dev),
                    "depth": torch.empty(B, 1, H, W, device=dev), "normals": torch.empty(B, 3, H, W, device=dev)}
    if instances:
        big["instances"] = torch.empty(B, H, W, dtype=torch.long, device=dev)
    workers = torch.get_num_threads() if dev.type == "cpu" else 1
    if workers > 1 and B > 1:
        chunk = min(chunk, -(-B // workers))  # at least one chunk per worker

    def part(i: int) -> Targets:
        return _render(keys[i:i + chunk], (H, W), max_objects, num_shapes, noise, images[i:i + chunk],
                       {k: v[i:i + chunk] for k, v in big.items()})

    starts = range(0, max(B, 1), chunk)
    parts = list(_pool(workers).map(part, starts)) if workers > 1 and B > 1 else [part(i) for i in starts]
    small = {k: torch.cat([p[k] for p in parts]) for k in ("classification", "multilabel", "count")}
    det = {f: torch.cat([p["detection"][f] for p in parts]) for f in ("boxes", "labels")}
    targets: Targets = {"classification": small["classification"], "multilabel": small["multilabel"],
                        "detection": det, "segmentation": big["segmentation"], "depth": big["depth"],
                        "count": small["count"], "normals": big["normals"]}
    if instances:
        targets["instances"] = big["instances"]
    return images, targets


def scene_objects(keys: Tensor, image_size: int | tuple[int, int] = 64, max_objects: int = 4,
                  num_shapes: int = 4) -> dict[str, Tensor]:
    """The objects of each scene, sorted far to near (a later slot hides an earlier one).

    Each entry is ``(B, N)`` (``colour``: ``(B, N, 3)``): ``shape`` (index into :data:`SHAPES`,
    -1 for an empty slot), ``cx``, ``cy``, ``radius`` in pixels, ``cos``, ``sin`` of the rotation
    (the arguments of :func:`shape_masks`), ``depth`` (empty slots: 100) and ``colour`` in [0, 1].
    """
    return _objects(_uniforms(keys, _SAMPLE_DRAWS + _OBJECT_DRAWS * max_objects), size_hw(image_size),
                    max_objects, num_shapes)


def _objects(u: Tensor, hw: tuple[int, int], N: int, K: int) -> dict[str, Tensor]:
    """Centres spread over the whole ``H x W`` frame; sizes follow its short side, so a shape
    stays round and fits on a wide or tall image as on a square one."""
    B, dev = u.shape[0], u.device
    (H, W), S = hw, min(hw)
    g, o = u[:, :_SAMPLE_DRAWS], u[:, _SAMPLE_DRAWS:].view(B, N, _OBJECT_DRAWS)  # (B, 20), (B, N, 9)
    n_obj = 1 + (g[:, 0] * N).long()  # (B,)
    active = torch.arange(N, device=dev)[None, :] < n_obj[:, None]  # (B, N)
    z = torch.where(active, 1.5 + 4.5 * o[..., 0], 100.0)  # (B, N); empty slots farthest
    order = torch.argsort(-z, dim=1, stable=True)
    o = o.gather(1, order[..., None].expand(-1, -1, _OBJECT_DRAWS))
    z, active = z.gather(1, order), active.gather(1, order)  # (B, N)
    near = (6.0 - z) / 4.5  # 1 nearest .. 0 farthest
    # nearer objects tend to be larger and brighter: cues from which depth can be learnt
    radius = (0.15 + 0.30 * (0.5 * near + 0.5 * o[..., 2])) * (S / 2)  # diameter 15%..45% of the short side
    rot = (o[..., 5] * ANGLES).long()
    cos_t, sin_t = _angle_table(dev)
    hue, sat, val = o[..., 6], 0.6 + 0.4 * o[..., 7], (0.75 + 0.25 * o[..., 8]) * (0.85 + 0.15 * near)
    return {"shape": torch.where(active, (o[..., 1] * K).long(), -1),
            "cx": (0.1 + 0.8 * o[..., 3]) * W, "cy": (0.1 + 0.8 * o[..., 4]) * H, "radius": radius,
            "cos": cos_t[rot], "sin": sin_t[rot], "depth": z, "colour": _hsv_to_rgb(hue, sat, val)}


_POOL: tuple[int, int, ThreadPoolExecutor] | None = None  # (process id, workers, pool)
_POOL_LOCK = threading.Lock()


def _one_thread() -> None:
    """A render worker's intra-op threads: one. Its count is fixed first (a thread takes the
    process default at its first parallel op, which would undo a count set before it)."""
    torch.get_num_threads()
    torch.set_num_threads(1)


def _pool(workers: int) -> ThreadPoolExecutor:
    """Threads that render chunks side by side, each with one intra-op thread.

    Independent chunks share the cores without ever waiting for each other; a two-thread op
    instead waits for both threads at every op, which on a busy machine made rendering 2.5x
    slower (load 9) and this module's tests 20x slower. Made again after a fork (a forked
    child has the pool object but not its threads).
    """
    global _POOL
    with _POOL_LOCK, THREADS_LOCK:  # a training thread pinning its count waits out the moment the default is 1
        if _POOL is None or _POOL[0] != os.getpid() or _POOL[1] != workers:
            n = torch.get_num_threads()
            started = threading.Barrier(workers + 1)
            pool = ThreadPoolExecutor(workers, "scenes", initializer=_one_thread)
            for _ in range(workers):
                pool.submit(started.wait)
            started.wait()  # every worker has run its initializer
            # set_num_threads also sets the default for threads started later: give it back
            torch.set_num_threads(n)
            _POOL = (os.getpid(), workers, pool)
        return _POOL[2]


def _render(keys: Tensor, hw: tuple[int, int], N: int, K: int, noise: float, image: Tensor, out: Targets) -> Targets:
    """Render a chunk of ``H x W`` scenes into ``image`` and the per-pixel targets in ``out``;
    returns the others."""
    dev, B, (H, W) = keys.device, keys.shape[0], hw
    cos_t, sin_t = _angle_table(dev)
    u = _uniforms(keys, _SAMPLE_DRAWS + _OBJECT_DRAWS * N + _SURFACE_DRAWS)  # (B, D)
    g, obj, ripple = u[:, :_SAMPLE_DRAWS], _objects(u[:, :-_SURFACE_DRAWS], hw, N, K), u[:, -_SURFACE_DRAWS:]
    cls, z, colour = obj["shape"], obj["depth"], obj["colour"]  # (B, N), (B, N), (B, N, 3)

    # masks (B, N + 1, H, W) in {0, 1}; slot N is the background, behind everything (-2: filled below)
    pad = torch.nn.functional.pad
    masks = torch.empty(B, N + 1, H, W, device=dev)
    shape_masks(pad(cls, (0, 1), value=-2), *(pad(obj[k], (0, 1)) for k in ("cx", "cy", "radius", "cos", "sin")),
                (H, W), out=masks)

    # z-buffer, nearest slot first: a slot is seen where it is drawn and nothing nearer is;
    # in place, since fresh memory costs page faults on the CPU
    vis = masks  # (B, N + 1, H, W): becomes the seen part of each slot
    cover = vis[:, N - 1].clone()  # (B, H, W): 1 where some object is seen; the nearest hides nothing
    for n in reversed(range(N - 1)):
        cover.add_(vis[:, n].sub_(cover).clamp_(min=0.0))
    bg = vis[:, N].fill_(1.0).sub_(cover)  # (B, H, W): 1 where no object is seen
    rows, cols = vis[:, :N].sum(3), vis[:, :N].sum(2)  # (B, N, H), (B, N, W): seen pixels per row / column (exact)
    area = rows.sum(2)  # (B, N)
    present = area > 0
    ar_h, ar_w = torch.arange(H, device=dev), torch.arange(W, device=dev)
    y0 = torch.where(rows > 0, ar_h, H).amin(2)
    y1 = torch.where(rows > 0, ar_h, -1).amax(2) + 1
    x0 = torch.where(cols > 0, ar_w, W).amin(2)
    x1 = torch.where(cols > 0, ar_w, -1).amax(2) + 1
    boxes = torch.stack([x0, y0, x1, y1], 2).float() * present[..., None]  # (B, N, 4)

    # visible objects first (stable, so still far to near); labels -1 pad
    keep = torch.argsort((~present).to(torch.uint8), dim=1, stable=True)  # (B, N)
    labels = torch.where(present, cls, -1)
    biggest = torch.where(present, area, -1.0).argmax(1, keepdim=True)  # (B, 1)
    small: Targets = {
        "classification": cls.gather(1, biggest)[:, 0],
        "multilabel": torch.zeros(B, K + 1, device=dev).scatter_(1, torch.where(present, cls, K), 1.0)[:, :K],
        "detection": {"boxes": boxes.gather(1, keep[..., None].expand(-1, -1, 4)), "labels": labels.gather(1, keep)},
        "count": present.sum(1),
    }

    # per-pixel outputs: each slot's value painted where it is seen (the background is slot N);
    # the surface of the object seen at a pixel from its centre and dome radius (background: 1)
    vis = vis.view(B, N + 1, H * W)
    light = light_direction(g, cos_t, sin_t)
    base, top, texture, depth_slope, facing = backdrop(g, ripple, light, (H, W), cos_t, sin_t)
    rows_ = [torch.cat([z, top[:, None]], 1), pad(cls + 1, (0, 1)).float(),  # (B, N + 1): depth, segmentation,
             pad(obj["cx"], (0, 1)), pad(obj["cy"], (0, 1)), pad(DOME * obj["radius"], (0, 1), value=1.0)]  # surface
    if "instances" in out:
        rank = torch.zeros_like(keep).scatter_(1, keep, torch.arange(1, N + 1, device=dev).expand(B, -1))
        rows_.append(pad(rank * present, (0, 1)).float())
    painted = _paint(torch.stack(rows_, 1), vis).view(B, len(rows_), H, W)  # (B, V, H, W)
    out["segmentation"].copy_(painted[:, 1])
    if "instances" in out:
        out["instances"].copy_(painted[:, 5])
    torch.add(painted[:, 0], depth_slope.mul_(bg), out=out["depth"][:, 0])
    normals = dome_normals(painted[:, 2], painted[:, 3], painted[:, 4], (H, W), out=out["normals"])  # (B, 3, H, W)
    behind = bg.bool()
    for c in range(3):
        torch.where(behind, facing[c], normals[:, c], out=normals[:, c])
    shade = shading(normals, light).view(B, 1, H * W)  # (B, 1, H * W)
    flat = image.view(B, 3, H * W)
    if noise > 0:
        # a window of the shared noise bank at a per-sample offset: one copy, no per-pixel hashing
        L = 3 * H * W
        start = (g[:, 19] * (_NOISE_BANK - L)).long()  # (B,)
        windows = _noise_bank(dev, float(noise)).as_strided((_NOISE_BANK - L + 1, L), (1, 1))
        torch.index_select(windows, 0, start, out=flat.view(B, L))
    else:
        flat.zero_()
    # shaded colours, painted where the targets were painted (that memory is free now: fresh memory costs page faults)
    colours = painted.view(-1)[:3 * B * H * W].view(B, 3, H * W).zero_()
    flat.add_(_paint(torch.cat([colour, base[:, None]], 1).transpose(1, 2), vis, colours).mul_(shade))
    image.add_(texture.mul_(bg)[:, None]).clamp_(0.0, 1.0)  # (B, 3, H, W)
    return small


def _paint(values: Tensor, vis: Tensor, out: Tensor | None = None) -> Tensor:
    """``out + sum_n values[:, :, n] * vis[:, n]`` (in place when ``out`` is given): (B, V, P)
    from values (B, V, N) and vis (B, N, P).

    Exact and order-free, because exactly one slot is seen at a pixel (one nonzero term).
    """
    if vis.device.type != "cpu":
        return _paint_by_sum(values, vis, out)
    return torch.bmm(values, vis) if out is None else out.baddbmm_(values, vis)  # one small matmul


def _paint_by_sum(values: Tensor, vis: Tensor, out: Tensor | None = None) -> Tensor:
    """:func:`_paint` without a matmul, for GPUs, where TF32 could round a matmul's inputs."""
    painted = (values[..., None] * vis[:, None]).sum(2)  # (B, V, P)
    return painted if out is None else out.add_(painted)


def _hsv_to_rgb(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    """HSV in [0, 1] to RGB ``(..., 3)``, the branch-free formula (arithmetic ops only)."""
    n = torch.tensor([5.0, 3.0, 1.0], device=h.device)
    k = n + h[..., None] * 6.0  # (..., 3)
    k = k - 6.0 * (k >= 6.0)
    ramp = torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)
    return v[..., None] * (1.0 - s[..., None] * ramp)


# ----------------------------------------------------------------------------------- dataset
@register_dataset("scenes")
class ScenesDataset:
    """The procedural scenes for one split; ``get_batch`` renders a whole batch at once, on any
    device (``renders_on_device``: a trainer on a GPU asks for its batches there)."""

    renders_on_device = True
    supplies = TASKS  # every scene has every label

    def __init__(self, cfg: DataConfig, split: str, seed: int = 0) -> None:
        if split not in SPLITS:
            raise ConfigError("split", f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
        _check(cfg)
        self.cfg, self.split, self.seed = cfg, split, seed
        self.length = {"train": cfg.train_size, "val": cfg.val_size, "test": cfg.test_size}[split]
        self.info = DatasetInfo(name="scenes", class_names=SHAPES[:cfg.num_shapes], image_size=cfg.image_size,
                                tasks=TASKS, max_objects=cfg.max_objects, depth_max=DEPTH_MAX)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> Sample:
        return self.__getitems__([i])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[Sample]:
        """Render the samples in one batch (torch's DataLoader calls this for a batch)."""
        images, t = self.get_batch(indices)
        dets = unpad_detection(t["detection"])
        return [(images[b], {k: (dets[b] if k == "detection" else v[b]) for k, v in t.items()})
                for b in range(len(dets))]

    def get_batch(self, indices: Sequence[int] | Tensor, device: torch.device | str | None = None,
                  instances: bool = False) -> tuple[Tensor, Targets]:
        """Images ``(B, 3, H, W)`` and collated targets (detection padded to ``max_objects``)."""
        idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        idx = torch.where(idx < 0, idx + self.length, idx)  # Python-style negative indices
        if idx.numel() and (idx.min() < 0 or idx.max() >= self.length):
            bad = int(torch.as_tensor(indices).reshape(-1)[(idx < 0) | (idx >= self.length)][0])
            raise IndexError(f"index {bad} is out of range for the {self.split} split of {self.length} samples")
        cfg = self.cfg
        keys = sample_keys(self.seed, self.split, idx.to(device) if device is not None else idx)
        return render(keys, cfg.image_size, cfg.max_objects, cfg.num_shapes, cfg.noise, device, instances)


def _check(cfg: DataConfig) -> None:
    """Reject settings the renderer cannot honour, saying what is allowed."""
    h, w = cfg.hw
    if not (MIN_SIZE <= h <= MAX_SIZE and MIN_SIZE <= w <= MAX_SIZE):
        shown = f"{h}" if isinstance(cfg.image_size, int) else f"{h}x{w} (height x width)"
        raise ConfigError("data.image_size", f"image size {shown} is outside {MIN_SIZE}..{MAX_SIZE}; "
                          f"choose each side from {MIN_SIZE} to {MAX_SIZE}")
    if not 1 <= cfg.max_objects <= MAX_OBJECTS:
        raise ConfigError("data.max_objects", f"{cfg.max_objects} is outside 1..{MAX_OBJECTS}")
    if not 1 <= cfg.num_shapes <= len(SHAPES):
        raise ConfigError("data.num_shapes", f"{cfg.num_shapes} is outside 1..{len(SHAPES)} ({', '.join(SHAPES)})")
    if not 0.0 <= cfg.noise <= 1.0:
        raise ConfigError("data.noise", f"noise std {cfg.noise} is outside 0..1")
    for name in ("train_size", "val_size", "test_size"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"data.{name}", f"must be 0 or more, got {getattr(cfg, name)}")
