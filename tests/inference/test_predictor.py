"""The Predictor on photos of any shape: the photo is brought to the model's height x width the
way the run's data was, and every prediction comes back in the photo's own pixels, so overlays
drawn on it line up. Stored runs of the schema before sizes had two sides still predict."""
from __future__ import annotations

import dataclasses
import shutil
import sqlite3
from pathlib import Path

import pytest
import torch
from torch import nn

from mtl_core.config import DataConfig, ExperimentConfig, ModelConfig
from mtl_core.data.base import pad_detection
from mtl_core.data.resize import PAD_VALUE, Fit
from mtl_core.inference.predictor import Predictor, dense_to_photo
from mtl_core.training.builders import build_all
from mtl_core.training.checkpoint import save_checkpoint

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "runs_schema_2026_12"
TASKS = ("classification", "detection", "segmentation", "depth")
HW = (48, 80)  # the model's (height, width)


def config(resize: str = "letterbox", **data) -> ExperimentConfig:
    return ExperimentConfig(name="shape", tasks=TASKS, device="cpu",
                            data=DataConfig(image_size=HW, resize=resize, train_size=8, val_size=8, test_size=8, **data),
                            model=ModelConfig(width=4))


def checkpoint(tmp_path: Path, cfg: ExperimentConfig) -> Path:
    """A randomly initialised model of ``cfg`` saved as a run's checkpoint."""
    built = build_all(cfg, ("val",))
    return save_checkpoint(tmp_path / "final.pt", cfg, 0, built["model"].state_dict())


class Fixed(nn.Module):
    """A model that gives fixed outputs, so what comes back to the photo can be worked out by hand."""

    def __init__(self, outputs: dict) -> None:
        super().__init__()
        self.outputs, self.seen = outputs, []

    def forward(self, x):
        self.seen.append(x)
        return self.outputs


# a 100 x 200 photo letterboxed into 48 x 80: scale min(48 / 100, 80 / 200) = 0.4, so the photo
# covers 40 x 80 of the frame with 4 rows of padding above and below
PHOTO = (100, 200)
BY_HAND = Fit("letterbox", PHOTO, HW, (40, 80), 4, 0)
BOX = [8.0, 12.0, 40.0, 28.0]  # in the model's frame: (x0, y0, x1, y1)
BOX_IN_PHOTO = [20.0, 20.0, 100.0, 60.0]  # x / 0.4 and (y - 4) / 0.4


@pytest.fixture(scope="module")
def letterboxed(tmp_path_factory):
    """A letterbox run's predictor whose model gives one box, one rectangle of class 2 and a depth
    of 2 where the photo is (9 on the padding), all in the model's 48 x 80 frame."""
    p = Predictor(checkpoint(tmp_path_factory.mktemp("letterbox"), config()))
    det = p.tasks["detection"]
    h, w = HW
    seg = torch.full((1, len(p.tasks["segmentation"].class_names) + 1, h, w), -10.0)
    seg[:, 0] = 0.0
    x0, y0, x1, y1 = (int(v) for v in BOX)
    seg[0, 2, y0:y1, x0:x1] = 10.0  # class 2 (index 1 + 1) on the box, at full resolution
    depth = torch.full((1, 1, h, w), 9.0)
    depth[..., 4:44, :] = 2.0
    p.model = Fixed({"classification": torch.tensor([[0.0, 3.0, 0.0, 0.0]]),
                     "detection": det.ideal_output(pad_detection([{"boxes": torch.tensor([BOX]), "labels": torch.tensor([1])}]),
                                                   h // 4, w // 4),
                     "segmentation": seg, "depth": depth})
    return p


def test_the_photo_is_letterboxed_into_the_models_height_and_width(letterboxed):
    assert letterboxed.input_size == HW and letterboxed.resize_policy == "letterbox"
    assert letterboxed.input_label == "48x80 px (height x width)"
    assert letterboxed.fit_for(PHOTO) == BY_HAND
    photo = torch.full((3, *PHOTO), 255, dtype=torch.uint8)
    letterboxed.model.seen.clear()
    letterboxed.predict(photo)
    x = letterboxed.model.seen[0]
    assert x.shape == (1, 3, *HW)
    assert (x[..., :4, :] == PAD_VALUE).all() and (x[..., 44:, :] == PAD_VALUE).all()  # grey bands above and below
    assert torch.allclose(x[..., 4:44, :], torch.ones(1))  # the white photo in between


def test_boxes_come_back_in_the_photos_pixels(letterboxed):
    preds, _ = letterboxed.predict(torch.zeros(3, *PHOTO, dtype=torch.uint8))
    boxes = preds["detection"]["boxes"]
    at_model = letterboxed.tasks["detection"].decode(letterboxed.model.outputs["detection"], HW)[0]["boxes"]
    assert torch.equal(boxes, BY_HAND.boxes_back(at_model))  # exactly the Fit's map back
    assert torch.allclose(boxes[0], torch.tensor(BOX_IN_PHOTO), atol=1.3)  # half a model pixel, in photo pixels
    assert preds["detection"]["labels"].tolist()[0] == 1
    assert preds["classification"]["label"] == 1  # per-image answers are not moved


def test_masks_and_depth_come_back_at_the_photos_shape_where_the_model_saw_them(letterboxed):
    preds, _ = letterboxed.predict(torch.zeros(3, *PHOTO, dtype=torch.uint8))
    mask = preds["segmentation"]["mask"]
    assert mask.shape == PHOTO
    expected = torch.zeros(PHOTO, dtype=torch.long)
    x0, y0, x1, y1 = (round(v) for v in BOX_IN_PHOTO)
    expected[y0:y1, x0:x1] = 2  # the rectangle's edges fall halfway between model pixels: exact
    wrong = (mask != expected).nonzero().tolist()
    assert wrong == [[y0, x0], [y0, x1 - 1], [y1 - 1, x0], [y1 - 1, x1 - 1]]  # bilinear logits round its four corners
    depth = preds["depth"]["depth"]
    assert depth.shape == PHOTO
    assert torch.allclose(depth, torch.full(PHOTO, 2.0))  # the padding's 9 does not bleed into the photo's edge


def test_a_300_by_400_photo_through_a_48_by_80_model(tmp_path):
    p = Predictor(checkpoint(tmp_path, config()))
    photo = torch.randint(0, 256, (3, 300, 400), dtype=torch.uint8)
    preds, seconds = p.predict(photo)
    assert preds["segmentation"]["mask"].shape == (300, 400)
    assert preds["depth"]["depth"].shape == (300, 400)
    boxes = preds["detection"]["boxes"]
    assert len(boxes) and (boxes[:, 0::2] <= 400).all() and (boxes[:, 1::2] <= 300).all() and (boxes >= 0).all()
    assert p.overlay(photo, preds).shape == photo.shape and seconds > 0


def test_crop_leaves_what_it_cut_off_unlabelled(tmp_path):
    p = Predictor(checkpoint(tmp_path, config(resize="crop")))
    f = p.fit_for((100, 300))  # scale max(0.48, 0.267) = 0.48: 144 wide, 32 cut on each side
    assert (f.scaled, f.left, f.top) == ((48, 144), -32, 0)
    depth = dense_to_photo(torch.full((1, 1, 12, 20), 3.0), f)[0, 0]  # (100, 300)
    cut = int(32 / 0.48)  # photo columns left of the frame
    assert (depth[:, :cut] == 0).all() and (depth[:, -cut:] == 0).all()
    assert torch.allclose(depth[:, cut + 1:-cut - 1], torch.tensor(3.0))
    preds, _ = p.predict(torch.zeros(3, 100, 300, dtype=torch.uint8))
    assert preds["segmentation"]["mask"].shape == (100, 300) and (preds["segmentation"]["mask"][:, :cut] == 0).all()


def test_a_scenes_run_stretches_a_photo_as_it_always_did(tmp_path):
    cfg = dataclasses.replace(config(resize=""), data=DataConfig(image_size=48, train_size=8, val_size=8, test_size=8))
    p = Predictor(checkpoint(tmp_path, cfg))
    assert p.resize_policy == "stretch" and p.input_size == (48, 48) and p.input_label == "48 px"
    photo = torch.randint(0, 256, (3, 60, 90), dtype=torch.uint8)
    preds, _ = p.predict(photo)
    x = torch.nn.functional.interpolate(photo.float()[None] / 255, size=(48, 48), mode="bilinear", antialias=True,
                                        align_corners=False)
    with torch.no_grad():
        out = p.model(x)
    for t, task in p.tasks.items():  # decoded straight at the photo's size, as before sizes had two sides
        old = task.decode(out[t], (60, 90))[0]
        for k, v in old.items():
            assert torch.equal(torch.as_tensor(preds[t][k]), torch.as_tensor(v)), (t, k)


def test_a_stored_run_of_the_schema_before_two_sided_sizes_loads_and_predicts(tmp_path):
    """tests/fixtures/runs_schema_2026_12: a runs directory as users have on disk (image_size one
    number, no data.resize), copied away from where it was made."""
    runs = tmp_path / "runs"
    shutil.copytree(FIXTURE, runs)
    with sqlite3.connect(runs / "runs.sqlite") as db:
        run_id, made_at = db.execute("SELECT run_id, path FROM checkpoints WHERE kind = 'final'").fetchone()
    final = runs / run_id / Path(made_at).name  # the sqlite holds where it was made (/tmp/legacy_runs/...)
    p = Predictor(final)
    assert p.config.data.image_size == 48 and p.input_size == (48, 48) and p.resize_policy == "stretch"
    photo = torch.randint(0, 256, (3, 50, 90), dtype=torch.uint8)
    preds, _ = p.predict(photo)
    assert set(preds) == {"classification", "segmentation", "count"}
    assert preds["segmentation"]["mask"].shape == (50, 90)
    assert 0 <= preds["classification"]["label"] < 4
    assert p.overlay(photo, preds).shape == (3, 50, 90)


def test_an_ensemble_of_letterboxed_members_answers_in_the_photos_pixels(tmp_path):
    from mtl_core.inference.ensemble import Ensemble

    paths = [checkpoint(tmp_path / "a", config()), checkpoint(tmp_path / "b", dataclasses.replace(config(), seed=1))]
    photo = torch.randint(0, 256, (3, 90, 120), dtype=torch.uint8)
    alone = Predictor(paths[0]).predict(photo)[0]
    one = Ensemble.from_checkpoints(paths[:1]).predict(photo)[0]
    assert torch.equal(one["segmentation"]["mask"], alone["segmentation"]["mask"])
    assert torch.allclose(one["depth"]["depth"], alone["depth"]["depth"])
    both = Ensemble.from_checkpoints(paths).predict(photo)[0]
    assert both["segmentation"]["mask"].shape == (90, 120) and both["depth"]["depth"].shape == (90, 120)
    boxes = both["detection"]["boxes"]
    assert len(boxes) and (boxes[:, 0::2] <= 120).all() and (boxes[:, 1::2] <= 90).all() and (boxes >= 0).all()


def test_attention_maps_are_drawn_where_the_photo_is_not_on_the_letterbox(tmp_path):
    from mtl_core.views.attention import HEAT_STOPS, attention_overlays

    cfg = dataclasses.replace(config(), tasks=("classification", "segmentation"),
                              model=ModelConfig(architecture="mtan", width=4))
    p = Predictor(checkpoint(tmp_path, cfg))
    h, w = HW
    attended = torch.ones(1, h // 4, w // 4)
    attended[:, 1:11] = 0.0  # rows 4..43 of the frame: the photo; the letterbox's bands attended fully
    p.model.attention_maps = lambda x: {"segmentation": attended}
    photo = torch.zeros(3, 256, 512, dtype=torch.uint8)  # 1:2, letterboxed as the 100 x 200 photo above
    maps = attention_overlays(p, photo, opacity=1.0, stretch=False)
    picture = maps["segmentation"].image
    assert picture.shape == (160, 320, 3)  # at most 320 pixels a side, the photo's aspect
    assert (picture == HEAT_STOPS[0]).all()  # the photo's part: no attention; the bands are cut off


def test_a_runs_dataset_sample_comes_at_its_height_and_width(tmp_path):
    from mtl_core.inference.samples import dataset_sample

    cfg = config(resize="")
    p = Predictor(checkpoint(tmp_path, cfg))
    image, truth = dataset_sample(p.config, "val", 0, p.tasks)
    assert image.shape == (3, *HW) and truth["segmentation"]["mask"].shape == HW
    preds, _ = p.predict(image)  # a sample is already at the model's size: nothing to fit
    assert preds["segmentation"]["mask"].shape == HW
