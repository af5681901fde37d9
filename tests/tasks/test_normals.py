"""Surface normals: the loss and the metrics of Eigen and Fergus (ICCV 2015) on hand-made normal
maps, the head's unit vectors, decoding, drawing, and a short run that learns them."""
from __future__ import annotations

import math

import pytest
import torch

from mtl_core.data.base import DatasetInfo
from mtl_core.tasks import DISPLAYS, KINDS, TASKS, build_task
from mtl_core.tasks.normals import Normals, median

INFO = DatasetInfo(name="toy", class_names=("circle",), image_size=32, tasks=("normals",))


@pytest.fixture
def task() -> Normals:
    return build_task("normals", INFO)


def turned(normals: torch.Tensor, degrees: float) -> torch.Tensor:
    """Each vector of ``(B, 3, H, W)`` turned by ``degrees`` about the x axis (y towards z)."""
    a = math.radians(degrees)
    x, y, z = normals.unbind(1)
    return torch.stack([x, y * math.cos(a) - z * math.sin(a), y * math.sin(a) + z * math.cos(a)], 1)


def facing(b: int = 2, h: int = 4, w: int = 6) -> torch.Tensor:
    """Every pixel facing the camera: ``(b, 3, h, w)``."""
    n = torch.zeros(b, 3, h, w)
    n[:, 2] = 1.0
    return n


def test_registered_as_a_task_and_a_kind_with_its_display():
    assert TASKS.get("normals") is Normals and KINDS.get("normals") is Normals
    assert Normals.primary == "mean" and not Normals.higher_is_better
    assert type(build_task("normals", INFO).display) is DISPLAYS.get("normals")


def test_metrics_pool_the_angles_of_every_labelled_pixel(task):
    gt = facing()  # 48 pixels
    pred = gt.clone()
    pred[:, :, :, :3] = turned(gt[:, :, :, :3], 10.0)  # half the pixels 10 degrees off
    pred[:, :, :, 3:] = turned(gt[:, :, :, 3:], 40.0)  # the other half 40 degrees off
    gt[1, :, 0, :] = 0.0  # a row without a label: whatever is predicted there counts for nothing
    pred[1, :, 0, :] = -gt[0, :, 0, :]
    m = task.metrics(pred * 3.0, gt)  # the prediction's length does not matter
    assert m["mean"] == pytest.approx(25.0, abs=1e-4)
    assert m["median"] == pytest.approx(25.0, abs=1e-4)  # an even count: the middle two averaged, as numpy does
    assert m["within_11"] == 0.5 and m["within_22"] == 0.5 and m["within_30"] == 0.5
    assert set(m) == {"mean", "median", "within_11", "within_22", "within_30"}
    pred[:, :, :, 3:] = turned(gt[:, :, :, 3:], 25.0)
    assert task.metrics(pred, gt)["within_22"] == 0.5 and task.metrics(pred, gt)["within_30"] == 1.0


def test_metrics_at_the_labels_size_and_over_many_chunks(task):
    gt = facing(b=70, h=8, w=8)  # more images than one chunk of the metric
    out = turned(facing(b=70, h=2, w=2), 5.0)  # a head's output at a quarter of the size
    m = task.metrics(out, gt)
    assert m["mean"] == pytest.approx(5.0, abs=1e-3) and m["median"] == pytest.approx(5.0, abs=1e-3)
    assert m["within_11"] == 1.0
    assert task.metrics(out, torch.zeros_like(gt)) == {"mean": 0.0, "median": 0.0, "within_11": 0.0,
                                                       "within_22": 0.0, "within_30": 0.0}


def test_median_is_numpys():
    assert median(torch.tensor([3.0, 1.0, 2.0])) == 2.0
    assert median(torch.tensor([4.0, 1.0, 3.0, 2.0])) == 2.5
    assert median(torch.tensor([])) == 0.0


def test_loss_is_0_when_right_2_when_opposite_and_skips_unlabelled_pixels(task):
    gt = facing()
    assert task.loss(gt, gt).item() == pytest.approx(0.0, abs=1e-6)
    assert task.loss(-gt, gt).item() == pytest.approx(2.0)
    assert task.loss(turned(gt, 60.0), gt).item() == pytest.approx(0.5, abs=1e-6)  # 1 - cos 60
    gt[:, :, :2] = 0.0  # the top half unlabelled: a wrong answer there costs nothing
    pred = facing()
    pred[:, :, :2] = -pred[:, :, :2]
    assert task.loss(pred, gt).item() == pytest.approx(0.0, abs=1e-6)
    assert task.loss(pred, torch.zeros_like(gt)).item() == 0.0  # nothing labelled: 0, not NaN


def test_loss_upsamples_a_small_output_and_normalises_it_again(task):
    out = torch.zeros(1, 3, 2, 2, requires_grad=True)
    with torch.no_grad():
        out[0, 0, :, 0], out[0, 0, :, 1], out[0, 2] = -1.0, 1.0, 0.0  # left half faces left, right half right
    gt = torch.zeros(1, 3, 8, 8)
    gt[0, 0, :, :4], gt[0, 0, :, 4:] = -1.0, 1.0
    loss = task.loss(out, gt)
    # bilinear mixing shortens the vectors between the two halves; normalised again they still
    # point left or right, so only the exact middle, where they cancel, would be off
    assert loss.item() == pytest.approx(0.0, abs=1e-5)
    loss.backward()
    assert torch.isfinite(out.grad).all()


def test_head_gives_unit_vectors_at_its_features_size(task):
    torch.manual_seed(0)
    head = task.head(8, 4)
    out = head(torch.randn(2, 8, 5, 7))
    assert out.shape == (2, 3, 5, 7)
    assert torch.allclose(out.norm(dim=1), torch.ones(2, 5, 7), atol=1e-5)


def test_decode_gives_unit_normals_at_the_image_size(task):
    out = turned(facing(b=2, h=4, w=4), 20.0) * 0.5
    preds = task.decode(out, (12, 16))
    assert len(preds) == 2 and set(preds[0]) == {"normals"}
    n = preds[0]["normals"]
    assert n.shape == (3, 12, 16) and n.dtype == torch.float32 and n.device.type == "cpu"
    assert torch.allclose(n.norm(dim=0), torch.ones(12, 16), atol=1e-5)
    assert task.decode(out[0], (8, 8))[0]["normals"].shape == (3, 8, 8)  # one image without its batch


def test_display_draws_the_rgb_normal_map_and_the_angle_errors(task):
    shown = task.display
    image = torch.full((3, 12, 16), 40, dtype=torch.uint8)
    truth = shown.target_to_prediction(facing(b=1, h=12, w=16)[0])
    truth["normals"][:, :, :4] = 0.0  # unlabelled on the left
    drawn = shown.draw(image, truth, opacity=1.0)
    assert drawn.dtype == torch.uint8 and drawn.shape == image.shape
    assert drawn[:, 0, 8].tolist() == [128, 128, 255]  # facing the camera: (n + 1) / 2
    assert drawn[:, 0, 0].tolist() == [128, 128, 128]  # no label: grey
    beside = shown.draw(image, truth, opacity=1.0, show_scale=True)  # with its key
    assert beside.shape[:2] == (3, 12) and beside.shape[2] > 16 and beside.dtype == torch.uint8
    pred = {"normals": turned(facing(b=1, h=12, w=16), 40.0)[0]}
    errors = shown.draw_errors(image, pred, truth)
    assert errors.dtype == torch.uint8 and errors.shape[:2] == (3, 12) and errors.shape[2] >= 16
    assert errors[:, 6, 0].tolist() == [128, 128, 128] and errors[:, 6, 8].tolist() != [128, 128, 128]
    table = shown.sample_errors([pred, pred], [truth, None])
    assert table["mean_angle"][0] == pytest.approx(40.0, abs=1e-4) and table["failed"][0] == 1.0
    assert table["within_30"][0] == 0.0 and math.isnan(table["mean_angle"][1])
    assert shown.summarize(truth) == "mean tilt 0°"
    assert shown.summarize(pred) == "mean tilt 40°, leaning down"  # turned from z towards -y


def test_a_short_run_on_the_scenes_lowers_the_normals_loss(tmp_path):
    from mtl_core.config import OptimConfig
    from mtl_core.store.store import RunStore
    from mtl_core.training.loop import Trainer
    from tests.conftest import tiny_config

    cfg = tiny_config(tasks=("normals",), optim=OptimConfig(batch_size=16, steps=30, warmup_steps=0, lr=3e-3),
                      eval_every=30, checkpoint_every=0)
    store = RunStore(tmp_path)
    rid = store.create_run(cfg.to_dict(), cfg.name, "test", cfg.optim.steps)
    assert Trainer(cfg, store, rid).run() == "finished"
    losses = [r[3] for r in store.metrics(rid, "train", "loss/normals")]
    assert len(losses) >= 10 and all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) < 0.8 * sum(losses[:5])
    val = {k: v for _, _, k, v, _ in store.metrics(rid, "val")}
    assert 0.0 < val["normals/mean"] < 90.0
