"""Augmentation: geometric transforms move boxes, masks, depth and normals exactly with the image (and turn
normals with it); photometric ones leave every target alone; the batch path keeps the per-sample semantics."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as nnf

from mtl_core.config import AugmentConfig
from mtl_core.data.augment import ERASE_VALUE, IGNORE_INDEX, Augmenter, describe, generator_for
from mtl_core.data.base import collate
from mtl_core.errors import ConfigError

H, W = 32, 40  # not square, so a swapped H/W shows
OFF = AugmentConfig(hflip=0.0)
COLOURS = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])  # label 0, 1, 2


def scene(rects: list[tuple[int, int, int, int]]) -> tuple[torch.Tensor, dict]:
    """Black image with one coloured rectangle per ``(x0, y0, x1, y1)`` (x1, y1 exclusive) of
    label i; the matching mask (class i + 1), boxes and a depth map that is nowhere 0 or symmetric."""
    image = torch.zeros(3, H, W)
    seg = torch.zeros(H, W, dtype=torch.long)
    for i, (x0, y0, x1, y1) in enumerate(rects):
        image[:, y0:y1, x0:x1] = COLOURS[i][:, None, None]
        seg[y0:y1, x0:x1] = i + 1
    depth = (1.0 + torch.arange(H * W, dtype=torch.float32) / (H * W)).reshape(1, H, W)
    det = {"boxes": torch.tensor(rects, dtype=torch.float32).reshape(-1, 4), "labels": torch.arange(len(rects))}
    targets = {"classification": torch.tensor(2), "count": torch.tensor(len(rects)),
               "segmentation": seg, "depth": depth, "detection": det}
    return image, targets


RECTS = [(6, 4, 18, 14), (24, 18, 35, 29)]


def mask_box(mask: torch.Tensor) -> torch.Tensor:
    """Tight xyxy box (exclusive x1, y1) of a boolean (H, W) mask."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)


def boundary_band(mask: torch.Tensor) -> torch.Tensor:
    """Pixels within 1 px of the mask's edge (dilation minus erosion, 3x3)."""
    m = mask.float()[None, None]
    dilated = nnf.max_pool2d(m, 3, 1, 1)
    eroded = -nnf.max_pool2d(-m, 3, 1, 1)
    return (dilated - eroded)[0, 0] > 0


def assert_aligned(image: torch.Tensor, seg: torch.Tensor, label: int) -> int:
    """The object's coloured pixels coincide with its mask, up to the 1 px resampling band;
    returns how many pixels disagree."""
    coloured = (image - COLOURS[label][:, None, None]).abs().amax(0) < 0.5  # (H, W)
    mask = seg == label + 1
    assert mask.any()
    wrong = coloured ^ mask
    assert not (wrong & ~boundary_band(mask)).any(), f"{int(wrong.sum())} misaligned pixels for label {label}"
    return int(wrong.sum())


def test_hflip_mirrors_image_boxes_masks_and_depth_exactly() -> None:
    image, t = scene(RECTS)
    out, o = Augmenter(AugmentConfig(hflip=1.0), H)(image, t)
    assert torch.equal(out, torch.flip(image, [-1]))
    assert torch.equal(o["segmentation"], torch.flip(t["segmentation"], [-1]))
    assert torch.equal(o["depth"], torch.flip(t["depth"], [-1]))
    x0, y0, x1, y1 = t["detection"]["boxes"].unbind(1)
    assert torch.equal(o["detection"]["boxes"], torch.stack([W - x1, y0, W - x0, y1], 1))
    assert torch.equal(o["detection"]["labels"], t["detection"]["labels"])
    for box, label in zip(o["detection"]["boxes"], o["detection"]["labels"]):
        assert torch.equal(box, mask_box(o["segmentation"] == label + 1))


def test_vflip_mirrors_image_boxes_masks_and_depth_exactly() -> None:
    image, t = scene(RECTS)
    out, o = Augmenter(AugmentConfig(hflip=0.0, vflip=1.0), H)(image, t)
    assert torch.equal(out, torch.flip(image, [-2]))
    assert torch.equal(o["segmentation"], torch.flip(t["segmentation"], [-2]))
    assert torch.equal(o["depth"], torch.flip(t["depth"], [-2]))
    x0, y0, x1, y1 = t["detection"]["boxes"].unbind(1)
    assert torch.equal(o["detection"]["boxes"], torch.stack([x0, H - y1, x1, H - y0], 1))


@pytest.mark.parametrize("step", range(4))
def test_random_resized_crop_keeps_boxes_masks_and_image_consistent(step: int) -> None:
    image, t = scene(RECTS)
    aug = Augmenter(AugmentConfig(hflip=0.0, crop=1.0, crop_scale_min=0.3), H)
    out, o = aug(image, t, generator=generator_for(0, step))
    assert out.shape == image.shape and o["segmentation"].shape == (H, W) and o["depth"].shape == (1, H, W)
    assert not torch.equal(o["depth"], t["depth"]), "the crop did nothing; pick another seed"
    assert len(o["detection"]["labels"]) > 0
    for box, label in zip(o["detection"]["boxes"], o["detection"]["labels"].tolist()):
        assert torch.allclose(box, mask_box(o["segmentation"] == label + 1), atol=1.0)
        # plain "nearest" mask resampling would shift the mask half a pixel: whole edge rows wrong
        assert assert_aligned(out, o["segmentation"], label) <= 2
    # depth moved with the mask: every depth under an object's mask came from under that object
    for label in range(len(RECTS)):
        before = t["depth"][0][t["segmentation"] == label + 1]
        after = o["depth"][0][o["segmentation"] == label + 1]
        assert torch.isin(after, before).all()


@pytest.mark.parametrize("step", [0, 3, 5])  # draws of about 17, -13 and 13 degrees
def test_rotation_keeps_mask_image_and_depth_aligned(step: int) -> None:
    image, t = scene(RECTS)
    t["instances"] = t["segmentation"].clone()
    out, o = Augmenter(AugmentConfig(hflip=0.0, rotation=30.0), H)(image, t, generator=generator_for(1, step))
    seg = o["segmentation"]
    exposed = seg == IGNORE_INDEX
    assert exposed.any(), "a rotation this large exposes the corners"
    assert torch.equal(o["depth"][0] == 0, exposed)  # no data: ignore in seg, 0 in depth
    assert torch.equal(o["instances"], torch.where(exposed, 0, seg))  # and background in instances
    inner = exposed & ~boundary_band(exposed)
    assert (out[:, inner] == 0).all()  # image fill 0
    for box, label in zip(o["detection"]["boxes"], o["detection"]["labels"].tolist()):
        assert_aligned(out, seg, label)
        mb = mask_box(seg == label + 1)  # the box encloses the rotated object
        assert (box[:2] <= mb[:2] + 1).all() and (box[2:] >= mb[2:] - 1).all()


PHOTOMETRIC = {
    "color_jitter": AugmentConfig(hflip=0.0, color_jitter=0.8),
    "noise": AugmentConfig(hflip=0.0, noise=0.1),
    "blur": AugmentConfig(hflip=0.0, blur=1.0, blur_sigma=2.0),
    "erasing": AugmentConfig(hflip=0.0, erasing=1.0),
    "all": AugmentConfig(hflip=0.0, color_jitter=0.8, noise=0.1, blur=1.0, blur_sigma=2.0, erasing=1.0),
}


@pytest.mark.parametrize("name", PHOTOMETRIC)
def test_photometric_changes_only_the_image(name: str) -> None:
    image, t = scene(RECTS)
    out, o = Augmenter(PHOTOMETRIC[name], H)(image, t, generator=generator_for(0, 0))
    assert not torch.equal(out, image)
    assert out.shape == image.shape and out.min() >= 0 and out.max() <= 1
    for key in ("segmentation", "depth", "classification", "count"):
        assert torch.equal(o[key], t[key]), key
    assert torch.equal(o["detection"]["boxes"], t["detection"]["boxes"])
    assert torch.equal(o["detection"]["labels"], t["detection"]["labels"])


def test_erasing_paints_one_grey_rectangle() -> None:
    image, t = scene(RECTS)
    out, _ = Augmenter(PHOTOMETRIC["erasing"], H)(image, t, generator=generator_for(0, 0))
    erased = (out != image).any(0)
    assert erased.any() and (out[:, erased] == ERASE_VALUE).all()
    assert torch.equal(mask_box(erased), mask_box(erased).round())
    box = mask_box(erased).long()
    assert (out[:, box[1]:box[3], box[0]:box[2]] == ERASE_VALUE).all()  # a solid rectangle


def test_boxes_pushed_out_are_dropped_with_their_labels() -> None:
    # label 0 hugs the left edge, 1 the right edge, 2 sits in the middle
    image, t = scene([(0, 2, 4, 30), (36, 2, 40, 30), (14, 10, 26, 22)])
    t["instances"] = t["segmentation"].clone()  # object j is box j: id j + 1
    aug = Augmenter(AugmentConfig(hflip=0.0, crop=1.0, crop_scale_min=0.2), H)
    dropped_once = False
    for step in range(20):
        out, o = aug(image, t, generator=generator_for(0, step))
        boxes, labels = o["detection"]["boxes"], o["detection"]["labels"]
        assert len(boxes) == len(labels)
        assert labels.tolist() == sorted(set(labels.tolist()))  # survivors keep their order, no duplicates
        for label in range(3):
            visible = (o["segmentation"] == label + 1).sum(0)  # mask pixels per column
            if label in labels.tolist():
                j = labels.tolist().index(label)
                assert torch.allclose(boxes[j], mask_box(o["segmentation"] == label + 1), atol=1.0)
                assert torch.equal(o["instances"] == j + 1, o["segmentation"] == label + 1)  # ids follow the boxes
            else:
                dropped_once = True
                assert int((visible > 0).sum()) <= 1, f"label {label} is still visible but its box was dropped"
        assert int(o["instances"].max()) <= len(labels)  # a dropped box's pixels are background
    assert dropped_once


def test_a_spatial_target_it_cannot_move_is_refused() -> None:
    image, t = scene(RECTS)
    t["flow"] = torch.zeros(2, H, W)  # optical flow: a flip would have to negate it too, which nothing here knows
    with pytest.raises(ValueError, match="flow"):
        Augmenter(AugmentConfig(hflip=1.0), H)(image, t)
    out, o = Augmenter(AugmentConfig(hflip=0.0, noise=0.1), H)(image, t)  # photometric only: fine
    assert o["flow"] is t["flow"]


# ---- surface normals: moved with the image and turned with it --------------------------
def facing_right_on_the_left() -> torch.Tensor:
    """``(3, H, W)``: the left quarter faces right and a little up, the rest the camera, the top
    row has no label."""
    n = torch.zeros(3, H, W)
    n[2] = 1.0
    n[:, :, : W // 4] = torch.tensor([0.6, 0.48, 0.64])[:, None, None]
    n[:, 0] = 0.0
    return n


def test_a_horizontal_flip_mirrors_normals_and_turns_them_to_face_the_other_way() -> None:
    image, t = scene(RECTS)
    t["normals"] = facing_right_on_the_left()
    _, o = Augmenter(AugmentConfig(hflip=1.0), (H, W))(image, t)
    n = o["normals"]
    assert n[:, 5, W - 1].tolist() == pytest.approx([-0.6, 0.48, 0.64])  # now on the right, facing left
    assert n[:, 5, 0].tolist() == [0.0, 0.0, 1.0]
    assert torch.equal(n[:, :, W - W // 4:], t["normals"].flip(-1)[:, :, W - W // 4:] * torch.tensor([-1.0, 1, 1])[:, None, None])
    assert not n[:, 0].any()  # still no label in the top row
    _, seg = Augmenter(AugmentConfig(hflip=1.0), (H, W))(image, t)  # the mask moves the same way
    assert torch.equal(seg["segmentation"], t["segmentation"].flip(-1))


def test_a_vertical_flip_negates_the_up_component() -> None:
    image, t = scene(RECTS)
    t["normals"] = facing_right_on_the_left()
    _, o = Augmenter(AugmentConfig(hflip=0.0, vflip=1.0), (H, W))(image, t)
    n = o["normals"]
    assert n[:, 5, 0].tolist() == pytest.approx([0.6, -0.48, 0.64])
    assert not n[:, H - 1].any() and n[:, 0].any()  # the unlabelled row is now at the bottom


def test_a_rotation_turns_normals_with_the_image_and_keeps_them_unit() -> None:
    from torchvision.transforms.v2 import functional as F

    from mtl_core.data.augment import NormalMap

    n = torch.zeros(1, 3, 16, 16)
    n[0, 2] = 1.0
    n[0, :, 6:10, 12:] = torch.tensor([1.0, 0.0, 0.0])[:, None, None]  # the right edge faces right
    turned = F.rotate(NormalMap(n), 90.0).as_subclass(torch.Tensor)  # a quarter turn counter-clockwise
    assert turned[0, :, 1, 8].tolist() == pytest.approx([0.0, 1.0, 0.0], abs=1e-6)  # at the top, facing up
    assert turned[0, :, 8, 8].tolist() == pytest.approx([0.0, 0.0, 1.0], abs=1e-6)
    image, t = scene(RECTS)
    t["normals"] = facing_right_on_the_left()
    _, o = Augmenter(AugmentConfig(hflip=0.0, rotation=40.0), (H, W))(image, t, generator_for(0, 3))
    length = o["normals"].norm(dim=0)
    assert ((length - 1).abs() < 1e-5).sum() + (length == 0).sum() == H * W  # unit vectors, or no label
    assert (length == 0).sum() > W  # the corners a rotation exposes have no label


def test_a_crop_keeps_normals_unit_and_tilts_them_as_it_stretches() -> None:
    from torchvision.transforms.v2 import functional as F

    from mtl_core.data.augment import NormalMap

    n = torch.nn.functional.normalize(torch.tensor([0.5, 0.5, 0.7]), dim=0).view(1, 3, 1, 1).expand(1, 3, 8, 8)
    wider = F.resize(NormalMap(n.clone()), [8, 16]).as_subclass(torch.Tensor)  # stretched twice across
    x, y, z = wider[0, :, 3, 3].tolist()
    assert math.isclose(x * 2, y, rel_tol=1e-5) and abs(x * x + y * y + z * z - 1) < 1e-5  # sideways slope halved
    image, t = scene(RECTS)
    t["normals"] = facing_right_on_the_left()
    batch_images, batch = collate([(image, t)] * 4)
    _, o = Augmenter(AugmentConfig(hflip=0.0, crop=1.0, crop_scale_min=0.3), (H, W)).augment_batch(
        batch_images, batch, generator_for(1, 2))
    length = o["normals"].norm(dim=1)
    assert o["normals"].shape == (4, 3, H, W) and ((length - 1).abs() < 1e-5).logical_or(length == 0).all()


def test_all_off_is_identity() -> None:
    image, t = scene(RECTS)
    aug = Augmenter(OFF, H)
    assert aug.is_identity and describe(OFF) == []
    out, o = aug(image, t)
    assert out is image and o is t
    images, targets = collate([scene(RECTS), scene(RECTS[:1])])
    assert aug.augment_batch(images, targets) == (images, targets)
    assert not Augmenter(AugmentConfig(), H).is_identity  # the default flips


def test_describe_lists_active_transforms() -> None:
    cfg = AugmentConfig(hflip=0.5, rotation=15.0, erasing=0.25)
    assert describe(cfg) == ["horizontal flip (p=0.5)", "rotation (±15°)", "random erasing (p=0.25)"]


EVERYTHING = AugmentConfig(hflip=0.5, vflip=0.5, crop=0.5, rotation=20.0, color_jitter=0.4, noise=0.05,
                           blur=0.5, erasing=0.5)


def test_same_seed_gives_the_same_result_and_leaves_the_global_rng_alone() -> None:
    images, targets = collate([scene(RECTS) for _ in range(8)])
    aug = Augmenter(EVERYTHING, H, groups=4)
    state = torch.get_rng_state()
    a = aug.augment_batch(images, targets, generator=generator_for(3, 7))
    b = aug.augment_batch(images, targets, generator=generator_for(3, 7))
    c = aug.augment_batch(images, targets, generator=generator_for(3, 8))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])
    for key in ("segmentation", "depth"):
        assert torch.equal(a[1][key], b[1][key])
    assert torch.equal(a[1]["detection"]["boxes"], b[1]["detection"]["boxes"])


def test_batch_path_matches_per_sample_path() -> None:
    samples = [scene(RECTS), scene(RECTS[:1]), scene([(0, 2, 4, 30), (14, 10, 26, 22)]), scene([])]
    samples = samples * 2
    cfg = AugmentConfig(hflip=0.5, crop=1.0, crop_scale_min=0.2, rotation=10.0, noise=0.05)
    aug = Augmenter(cfg, H, groups=len(samples))  # one group per sample: the same draws, in order
    images, targets = collate(samples)
    with torch.random.fork_rng():
        torch.manual_seed(5)
        bi, bt = aug.augment_batch(images, targets)
    with torch.random.fork_rng():
        torch.manual_seed(5)
        singles = [aug(img, t) for img, t in samples]
    ref_images, ref_targets = collate(singles, max_boxes=targets["detection"]["labels"].shape[1])
    assert torch.equal(bi, ref_images)
    for key in ("segmentation", "depth", "classification", "count"):
        assert torch.equal(bt[key], ref_targets[key]), key
    assert bt["detection"]["boxes"].shape == targets["detection"]["boxes"].shape  # same padding M
    assert torch.equal(bt["detection"]["labels"], ref_targets["detection"]["labels"])
    assert torch.equal(bt["detection"]["boxes"], ref_targets["detection"]["boxes"])
    assert (bt["detection"]["labels"] == -1).any()  # some boxes were dropped or padded
    pad = bt["detection"]["labels"] < 0
    assert (bt["detection"]["boxes"][pad] == 0).all()


def test_a_group_shares_one_geometric_draw() -> None:
    image, t = scene(RECTS)
    images, targets = collate([(image, t)] * 16)
    aug = Augmenter(AugmentConfig(hflip=0.5), H, groups=4)
    out, o = aug.augment_batch(images, targets, generator=generator_for(0, 0))
    flipped = torch.tensor([torch.equal(x, torch.flip(image, [-1])) for x in out])
    assert flipped.reshape(4, 4).all(1).logical_or(~flipped.reshape(4, 4).any(1)).all()  # all or none per group
    assert 0 < int(flipped.sum()) < 16  # but groups differ
    assert torch.equal(o["segmentation"][flipped], torch.flip(t["segmentation"], [-1]).expand(int(flipped.sum()), H, W))


def test_out_of_range_config_names_the_field() -> None:
    with pytest.raises(ConfigError, match="augment.hflip"):
        Augmenter(AugmentConfig(hflip=1.5), H)
    with pytest.raises(ConfigError, match="augment.crop_scale_min"):
        Augmenter(AugmentConfig(crop=0.5, crop_scale_min=0.0), H)


@pytest.mark.parametrize("hw", [(48, 80), (80, 48)])
def test_every_transform_at_height_by_width_keeps_targets_in_the_frame(hw) -> None:
    from mtl_core.config import DataConfig
    from mtl_core.data.scenes import ScenesDataset

    h, w = hw
    images, targets = ScenesDataset(DataConfig(image_size=hw, train_size=16), "train").get_batch(range(16))
    every = AugmentConfig(hflip=0.5, vflip=0.5, crop=1.0, crop_scale_min=0.3, rotation=20.0, color_jitter=0.4,
                          noise=0.05, blur=1.0, blur_sigma=1.5, erasing=0.5)
    out, o = Augmenter(every, hw, groups=4).augment_batch(images, targets, generator=generator_for(0, 1))
    assert out.shape == (16, 3, h, w) and o["segmentation"].shape == (16, h, w) and o["depth"].shape == (16, 1, h, w)
    boxes = o["detection"]["boxes"][o["detection"]["labels"] >= 0]
    assert len(boxes) and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all() and (boxes[:, :2] >= 0).all()


def test_blur_fits_the_short_side_of_a_narrow_image() -> None:
    image = torch.rand(3, 9, 64)
    aug = Augmenter(AugmentConfig(hflip=0.0, blur=1.0, blur_sigma=3.0), (9, 64))
    out, _ = aug(image, {}, generator=generator_for(0, 0))
    assert out.shape == image.shape and not torch.equal(out, image)
