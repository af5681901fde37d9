"""The built-in procedural scenes: shapes, targets that agree with the pixels, determinism."""
from __future__ import annotations

import math

import pytest
import torch

from mtl_core.config import DataConfig
from mtl_core.data import DATASETS, build_dataset, collate
from mtl_core.data.scenes import SHAPES, ScenesDataset, render, sample_keys, scene_objects, shape_masks
from mtl_core.errors import ConfigError

CFG = DataConfig(train_size=1000, val_size=400, test_size=400)
PER_PIXEL = ("segmentation", "depth", "normals")
PER_SAMPLE = ("classification", "multilabel", "count")


pytestmark = pytest.mark.usefixtures("one_thread")  # many small ops: see tests/conftest.py


@pytest.fixture(scope="module")
def train() -> ScenesDataset:
    return ScenesDataset(CFG, "train", seed=0)


@pytest.fixture(scope="module")
def batch(train):
    return train.get_batch(range(128), instances=True)


def _sample(images, targets, b):
    """Everything about sample ``b`` of a collated batch, for exact comparison."""
    out = {"image": images[b], "boxes": targets["detection"]["boxes"][b], "labels": targets["detection"]["labels"][b]}
    out.update({k: targets[k][b] for k in PER_PIXEL + PER_SAMPLE})
    return out


def _assert_same(a: dict, b: dict) -> None:
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _one(cls: int, cx: float, cy: float, r: float, angle: float = 0.0, size: int = 64) -> torch.Tensor:
    t = lambda v: torch.tensor([v], dtype=torch.float32)  # noqa: E731
    m = shape_masks(torch.tensor([cls]), t(cx), t(cy), t(r), t(math.cos(angle)), t(math.sin(angle)), size)
    return m[0]  # (S, S)


def _box(mask: torch.Tensor) -> list[int]:
    ys, xs = mask.nonzero(as_tuple=True)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


# ------------------------------------------------------------------------------- the shapes
def test_circle_and_square_cover_the_pixels_geometry_says():
    circle = _one(SHAPES.index("circle"), 32.0, 32.0, 10.0)
    assert _box(circle) == [22, 22, 42, 42]
    assert abs(circle.sum().item() - math.pi * 100) < 20  # within the boundary pixels
    assert torch.equal(circle, circle.flip(0)) and torch.equal(circle, circle.T)  # round, centred
    # half-side 0.85 r = 8.5 around 32.25: pixel centres 24.5 .. 40.5, so 17 x 17 pixels
    square = _one(SHAPES.index("square"), 32.25, 32.25, 10.0)
    assert _box(square) == [24, 24, 41, 41] and square.sum().item() == 17 * 17
    assert set(square.unique().tolist()) == {0.0, 1.0}


def test_rotation_turns_a_shape_without_changing_its_area():
    turned = _one(SHAPES.index("square"), 32.25, 32.25, 10.0, math.pi / 6)  # side 17, area 289
    x0, y0, x1, y1 = _box(turned)
    assert 22 <= x1 - x0 <= 24 and 22 <= y1 - y0 <= 24  # 17 (cos 30 + sin 30) = 23.2
    assert abs(turned.sum().item() - 289) < 0.05 * 289


def test_star_cross_ring_and_triangle_have_their_features():
    cx = cy = 32.0
    r = 12.0

    def at(mask, dist, deg):
        x, y = cx + dist * math.cos(math.radians(deg)), cy + dist * math.sin(math.radians(deg))
        return mask[int(y), int(x)].item()

    star = _one(SHAPES.index("star"), cx, cy, r)  # outer radius 1.25 r = 15, first tip at 90 deg
    assert all(at(star, 12.0, 90 + 72 * k) == 1 for k in range(5))  # the five tips
    assert all(at(star, 9.0, 126 + 72 * k) == 0 for k in range(5))  # the notches between them
    assert at(star, 0.0, 0) == 1
    cross = _one(SHAPES.index("cross"), cx, cy, r)
    assert all(at(cross, 0.9 * r, deg) == 1 for deg in (0, 90, 180, 270))  # the arms
    assert all(at(cross, 0.8 * r, deg) == 0 for deg in (45, 135, 225, 315))  # the corners between
    ring = _one(SHAPES.index("ring"), cx + 0.5, cy + 0.5, r)
    assert at(ring, 0.5, 0) == 0 and at(ring, 0.8 * r, 30) == 1 and at(ring, 1.1 * r, 30) == 0
    tri = _one(SHAPES.index("triangle"), cx, cy, r)  # circumradius 1.15 r, area 3 sqrt(3) / 4 R^2
    assert abs(tri.sum().item() - 3 * math.sqrt(3) / 4 * (1.15 * r) ** 2) < 0.1 * tri.sum().item()
    assert _one(-1, cx, cy, r).sum() == 0  # an empty slot draws nothing


# ------------------------------------------------------------------------------- the API
def test_registered_and_described(train):
    assert DATASETS.get("scenes") is ScenesDataset
    val = build_dataset(CFG, "val", seed=3)
    assert isinstance(val, ScenesDataset) and len(val) == 400 and len(train) == 1000
    info = train.info
    assert info.name == "scenes" and info.class_names == ("circle", "square", "triangle", "star")
    assert info.image_size == 64 and info.max_objects == 4 and info.depth_max == 10.0
    assert set(info.tasks) == {"classification", "multilabel", "detection", "segmentation", "depth", "count", "normals"}
    six = ScenesDataset(DataConfig(num_shapes=6), "train")
    assert six.info.class_names[4:] == ("cross", "ring")
    labels = six.get_batch(range(200))[1]["detection"]["labels"]
    assert set(labels[labels >= 0].unique().tolist()) == set(range(6))


@pytest.mark.parametrize("size", [16, 31, 257, 1024])
def test_image_size_outside_32_to_256_is_refused(size):
    with pytest.raises(ConfigError) as err:
        ScenesDataset(DataConfig(image_size=size), "train")
    assert err.value.field == "data.image_size" and "32" in str(err.value) and "256" in str(err.value)


def test_unknown_split_and_out_of_range_index_are_refused(train):
    with pytest.raises(ConfigError, match="train, val, test"):
        ScenesDataset(CFG, "training")
    with pytest.raises(IndexError):
        train[1000]
    with pytest.raises(IndexError):
        train.get_batch([0, 5, 1000])
    _assert_same(_sample(*train.get_batch([-1]), 0), _sample(*train.get_batch([999]), 0))


@pytest.mark.parametrize("size", [32, 128])
def test_shapes_and_ranges_at_other_sizes(size):
    ds = ScenesDataset(DataConfig(image_size=size, max_objects=6), "val")
    images, t = ds.get_batch(range(16))
    assert images.shape == (16, 3, size, size) and images.dtype == torch.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert t["segmentation"].shape == (16, size, size) and t["segmentation"].dtype == torch.long
    assert t["depth"].shape == (16, 1, size, size) and t["normals"].shape == (16, 3, size, size)
    assert t["detection"]["boxes"].shape == (16, 6, 4) and t["multilabel"].shape == (16, 4)
    assert (t["count"] >= 1).all()  # the nearest object is always in view
    image, target = ds[3]
    assert image.shape == (3, size, size) and target["classification"].dim() == 0
    assert target["detection"]["boxes"].shape == (int(target["count"]), 4)


def test_getitems_and_dataloader_give_the_batch(train):
    images, t = train.get_batch([4, 9, 2])
    for b, (image, target) in enumerate(train.__getitems__([4, 9, 2])):
        n = int(t["count"][b])
        assert torch.equal(image, images[b]) and torch.equal(target["segmentation"], t["segmentation"][b])
        assert torch.equal(target["detection"]["boxes"], t["detection"]["boxes"][b, :n])
    loader = torch.utils.data.DataLoader(train, batch_size=8, collate_fn=collate)
    first_images, first = next(iter(loader))
    images, t = train.get_batch(range(8))
    assert torch.equal(first_images, images) and torch.equal(first["classification"], t["classification"])
    m = first["detection"]["labels"].shape[1]
    assert torch.equal(first["detection"]["labels"], t["detection"]["labels"][:, :m])


# ------------------------------------------------------------------------------- determinism
def test_same_seed_and_index_give_the_same_sample_in_any_batch(train):
    a_idx = list(range(40, 111))  # 71 samples: the vectorised loops split them differently
    b_idx = [107, 3, 55, 40, 999, 81, 64, 12, 110]
    a, b = train.get_batch(a_idx), ScenesDataset(CFG, "train", seed=0).get_batch(b_idx)
    for j, i in enumerate(b_idx):
        if i in a_idx:
            _assert_same(_sample(*a, a_idx.index(i)), _sample(*b, j))
    image, target = train[55]
    s = _sample(*a, a_idx.index(55))
    n = int(s["count"])
    assert torch.equal(image, s["image"]) and torch.equal(target["segmentation"], s["segmentation"])
    assert torch.equal(target["detection"]["boxes"], s["boxes"][:n]) and torch.equal(target["depth"], s["depth"])
    keys = sample_keys(0, "train", torch.arange(40, 111))
    whole, chunked = render(keys), render(keys, chunk=7)
    for b in range(len(keys)):
        _assert_same(_sample(*whole, b), _sample(*chunked, b))


def test_rendering_on_worker_threads_gives_the_same_bits_and_leaves_threads_alone():
    keys = sample_keys(1, "val", torch.arange(70))
    one = render(keys)  # this module runs on one thread: no workers
    torch.set_num_threads(2)
    try:
        two = render(keys)  # two chunks, side by side on the worker threads
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
    for b in range(len(keys)):
        _assert_same(_sample(*one, b), _sample(*two, b))


def _render_in_child(queue) -> None:
    torch.set_num_threads(2)
    queue.put(render(sample_keys(1, "val", torch.arange(6)))[1]["count"].tolist())


def test_a_forked_process_can_render_on_worker_threads():
    """A forked child inherits the worker pool object but not its threads: it must not hang."""
    torch.set_num_threads(2)
    try:
        expected = render(sample_keys(1, "val", torch.arange(6)))[1]["count"].tolist()  # pool made here
    finally:
        torch.set_num_threads(1)
    ctx = torch.multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_render_in_child, args=(queue,), daemon=True)
    child.start()
    child.join(timeout=30)
    if child.is_alive():
        child.kill()
    assert child.exitcode == 0, "the child hung or failed"
    assert queue.get(timeout=5) == expected


def test_the_gpu_painting_path_gives_the_same_bits(monkeypatch):
    """On a GPU the scenes are painted without a matmul (TF32 could round one): same result."""
    from mtl_core.data import scenes

    keys = sample_keys(2, "test", torch.arange(24))
    cpu = render(keys, instances=True)
    monkeypatch.setattr(scenes, "_paint", scenes._paint_by_sum)
    summed = render(keys, instances=True)
    for b in range(len(keys)):
        _assert_same(_sample(*cpu, b), _sample(*summed, b))
    assert torch.equal(cpu[1]["instances"], summed[1]["instances"])


def test_different_seeds_give_different_scenes(train):
    a = train.get_batch(range(20))[0]
    b = ScenesDataset(CFG, "train", seed=1).get_batch(range(20))[0]
    assert all(not torch.equal(a[i], b[i]) for i in range(20))


def test_splits_share_no_image():
    seen: dict[bytes, str] = {}
    for split in ("train", "val", "test"):
        images = ScenesDataset(CFG, split).get_batch(range(250))[0]
        for image in images:
            key = image.numpy().tobytes()
            assert key not in seen, f"a {split} image repeats one from {seen.get(key)}"
            seen[key] = split
    assert len(seen) == 750


# ------------------------------------------------------------------------------- the targets
def test_targets_match_a_plain_painter_of_the_sampled_objects(train):
    """Paint each object's full shape far to near with plain loops: the segmentation, depth,
    boxes (tight around each object's visible pixels, hidden objects dropped), count,
    multilabel and classification (largest visible object) must all follow."""
    everything = train.get_batch(range(1000))[1]["count"]
    n_objects = (scene_objects(sample_keys(0, "train", torch.arange(1000)))["shape"] >= 0).sum(1)
    with_hidden = (everything < n_objects).nonzero().flatten()[:8].tolist()
    assert with_hidden  # fully hidden objects occur; they must be dropped
    indices = torch.tensor(list(range(40)) + with_hidden)
    keys = sample_keys(0, "train", indices)
    images, t = train.get_batch(indices)
    obj = scene_objects(keys, 64, 4, 4)
    full = shape_masks(obj["shape"], obj["cx"], obj["cy"], obj["radius"], obj["cos"], obj["sin"], 64)  # (B, N, S, S)
    for b in range(len(indices)):
        slot = torch.full((64, 64), -1)
        for n in range(4):  # far to near: a nearer object overwrites
            slot[full[b, n] > 0] = n
        seg = torch.where(slot >= 0, obj["shape"][b][slot.clamp(min=0)] + 1, 0)
        assert torch.equal(t["segmentation"][b], seg)
        on = slot >= 0
        assert torch.equal(t["depth"][b, 0][on], obj["depth"][b][slot[on]])
        boxes, labels, areas = [], [], []
        for n in range(4):
            if (slot == n).any():
                boxes.append(_box(slot == n))
                labels.append(int(obj["shape"][b, n]))
                areas.append(int((slot == n).sum()))
        count = int(t["count"][b])
        assert count == len(boxes) == int((t["detection"]["labels"][b] >= 0).sum())
        assert t["detection"]["boxes"][b, :count].tolist() == boxes
        assert t["detection"]["labels"][b, :count].tolist() == labels
        assert (t["detection"]["labels"][b, count:] == -1).all()
        assert t["multilabel"][b].nonzero().flatten().tolist() == sorted(set(labels))
        biggest = max(areas)
        assert max(a for a, c in zip(areas, labels, strict=True) if c == int(t["classification"][b])) == biggest


def test_every_object_pixel_lies_in_a_box_of_its_class_and_each_box_is_tight(batch):
    images, t = batch
    for b in range(len(images)):
        seg, inst = t["segmentation"][b], t["instances"][b]
        boxes, labels = t["detection"]["boxes"][b], t["detection"]["labels"][b]
        assert torch.equal(seg > 0, inst > 0)
        covered = torch.zeros_like(seg, dtype=torch.bool)
        for j in range(int(t["count"][b])):
            x0, y0, x1, y1 = boxes[j].long().tolist()
            assert _box(inst == j + 1) == [x0, y0, x1, y1]
            assert (seg[inst == j + 1] == labels[j] + 1).all()
            in_box = seg[y0:y1, x0:x1] == labels[j] + 1
            assert in_box[0].any() and in_box[-1].any() and in_box[:, 0].any() and in_box[:, -1].any()
            covered[y0:y1, x0:x1] |= seg[y0:y1, x0:x1] == labels[j] + 1
        assert torch.equal(covered, seg > 0)


def test_objects_are_nearer_than_the_background_and_stand_out_from_it(batch):
    images, t = batch
    depth, seg, inst = t["depth"][:, 0], t["segmentation"], t["instances"]
    assert (depth > 0).all() and depth.max() <= 10.0
    for b in range(len(images)):
        on = seg[b] > 0
        assert depth[b][on].max() < depth[b][~on].min()
        background = images[b][:, ~on].mean(1)  # (3,)
        for j in range(int(t["count"][b])):
            pixels = inst[b] == j + 1
            assert depth[b][pixels].unique().numel() == 1  # one depth per object
            assert (images[b][:, pixels].mean(1) - background).norm() > 0.1


def test_noise_is_per_pixel_with_the_configured_spread():
    keys = sample_keys(5, "val", torch.arange(8))
    clean = render(keys, noise=0.0)[0]
    noisy = render(keys, noise=0.1)[0]
    inner = (clean > 0.001) & (clean < 0.999) & (noisy > 0.001) & (noisy < 0.999)  # not clipped
    diff = (noisy - clean)[inner]
    assert 0.09 < diff.std().item() < 0.11 and abs(diff.mean().item()) < 0.01
    assert (noisy[:, 0] - clean[:, 0]).flatten().unique().numel() > 1000  # not one offset repeated


def test_render_workers_run_on_one_thread_and_leave_the_default_alone():
    """Chunks render side by side on single-threaded workers (so they never wait for each
    other); a thread started afterwards still gets the process's default count."""
    import threading

    from mtl_core.data.scenes import _pool

    default = torch.get_num_threads()
    pool = _pool(2)
    assert list(pool.map(lambda _: torch.get_num_threads(), range(4))) == [1, 1, 1, 1]
    seen = []
    t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    t.start()
    t.join()
    assert seen == [default] and torch.get_num_threads() == default


# ------------------------------------------------------------------------------- height x width
@pytest.mark.parametrize("hw", [(48, 80), (80, 48)])
def test_a_wide_or_tall_scene_has_every_target_at_its_height_and_width(hw):
    h, w = hw
    ds = ScenesDataset(DataConfig(image_size=hw, max_objects=5, train_size=64), "train")
    assert ds.info.hw == hw
    images, t = ds.get_batch(range(64), instances=True)
    assert images.shape == (64, 3, h, w) and 0.0 <= images.min() and images.max() <= 1.0
    assert t["segmentation"].shape == (64, h, w) and t["depth"].shape == (64, 1, h, w)
    assert t["normals"].shape == (64, 3, h, w)
    assert t["instances"].shape == (64, h, w) and t["detection"]["boxes"].shape == (64, 5, 4)
    boxes, labels = t["detection"]["boxes"], t["detection"]["labels"]
    real = boxes[labels >= 0]
    assert (real[:, 0] >= 0).all() and (real[:, 2] <= w).all() and (real[:, 1] >= 0).all() and (real[:, 3] <= h).all()
    # objects spread over the whole frame, not a square corner of it
    centres = (real[:, :2] + real[:, 2:]) / 2
    assert centres[:, 0].max() > 0.7 * w and centres[:, 1].max() > 0.7 * h
    for b in range(64):  # every box tight around its object's visible pixels
        for j in range(int(t["count"][b])):
            assert _box(t["instances"][b] == j + 1) == boxes[b, j].long().tolist()
            assert (t["segmentation"][b][t["instances"][b] == j + 1] == labels[b, j] + 1).all()
    assert (t["depth"] > 0).all()


def test_a_wide_scene_draws_round_shapes_where_its_objects_say():
    """Shapes on a non-square grid are where their centres are and keep their size (a circle is round)."""
    m = _one(0, cx=60.0, cy=20.0, r=10.0, size=(40, 100))  # circle, (H, W) = (40, 100)
    assert m.shape == (40, 100)
    assert _box(m) == [50, 10, 70, 30]
    assert abs(int(m.sum()) - math.pi * 100) < 20


def test_a_square_given_as_height_and_width_is_the_square():
    square = ScenesDataset(DataConfig(image_size=48, train_size=8), "train").get_batch(range(8), instances=True)
    pair = ScenesDataset(DataConfig(image_size=(48, 48), train_size=8), "train").get_batch(range(8), instances=True)
    _assert_same(_sample(*square, 3), _sample(*pair, 3))


@pytest.mark.parametrize("hw", [(16, 64), (64, 300)])
def test_a_side_outside_32_to_256_is_refused(hw):
    with pytest.raises(ConfigError) as err:
        ScenesDataset(DataConfig(image_size=hw), "train")
    assert err.value.field == "data.image_size" and "height x width" in str(err.value) and "256" in str(err.value)


# ------------------------------------------------------------------------------- surfaces
def test_normals_are_unit_domes_on_objects_and_a_rippled_upward_leaning_plane_behind(batch):
    """Each object is a sphere cap over its shape (its normal tilts away from its centre, facing
    the camera at the centre); the background is a plane leaning up as its depth recedes towards
    the top, with ripples of slopes up to RIDGE degrees along one direction; every normal is a
    unit vector facing the camera."""
    from mtl_core.data.backdrop import RIDGE
    from mtl_core.data.scenes import DOME

    images, t = batch
    n, seg, inst = t["normals"], t["segmentation"], t["instances"]
    assert torch.allclose(n.norm(dim=1), torch.ones(1), atol=1e-5) and (n[:, 2] > 0).all()
    keys = sample_keys(0, "train", torch.arange(128))
    obj = scene_objects(keys)
    ys, xs = torch.meshgrid(torch.arange(64) + 0.5, torch.arange(64) + 0.5, indexing="ij")
    spread, leans = [], []
    for b in range(len(images)):
        back = n[b][:, seg[b] == 0]  # (3, pixels)
        plane = back.mean(1) / back.mean(1).norm()  # the ripples about cancel out
        leans.append(plane)
        off = torch.rad2deg(torch.acos((plane[:, None] * back).sum(0).clamp(max=1.0)))  # (pixels,)
        assert off.max() < RIDGE + 12
        spread.append(float(off.max()))
        # ripples along one direction: the normals' sideways parts lie on a line
        xy = back[:2] - back[:2].mean(1, keepdim=True)
        assert torch.linalg.svdvals(xy)[1] < 0.05 * torch.linalg.svdvals(xy)[0]
        for j in range(int(t["count"][b])):
            pixels = inst[b] == j + 1
            x, y, (nx, ny) = xs[pixels], ys[pixels], n[b][:2, pixels]  # (m,) each
            # a dome of centre (cx, cy) and radius R has n_x R = x - cx and n_y R = cy - y
            domes = [k for k in range(4) if obj["shape"][b, k] >= 0
                     and torch.allclose(nx * DOME * obj["radius"][b, k], x - obj["cx"][b, k], atol=1e-3)
                     and torch.allclose(ny * DOME * obj["radius"][b, k], obj["cy"][b, k] - y, atol=1e-3)]
            assert domes, f"sample {b}, object {j}: its normals are no dome over a drawn object"
    assert sum(spread) / len(spread) > RIDGE / 2
    leans = torch.stack(leans)  # (B, 3): up by 12 degrees on average, as much left as right
    assert leans[:, 1].mean() > 0.1 and abs(float(leans[:, 0].mean())) < 0.05


def test_the_image_is_shaded_by_its_normals():
    """Lambertian shading under a light from the upper left: within each object (flat colour
    without noise), the brighter pixels face up and to the left more than the darker ones."""
    keys = sample_keys(3, "train", torch.arange(32))
    images, t = render(keys, noise=0.0, instances=True)
    n, inst = t["normals"], t["instances"]
    checked = 0
    for b in range(len(keys)):
        for j in range(int(t["count"][b])):
            pixels = inst[b] == j + 1
            if pixels.sum() < 40:
                continue
            light = images[b][:, pixels].sum(0)  # (m,) brightness
            towards = n[b][1, pixels] - n[b][0, pixels]  # up and to the left
            bright = light >= light.median()
            assert towards[bright].mean() > towards[~bright].mean() + 0.1
            checked += 1
    assert checked > 20
