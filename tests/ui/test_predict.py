"""The Predict page, driven with Streamlit's AppTest on the session's tiny finished run."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

from mtl_core.data.scenes import DEPTH_MAX
from mtl_core.tasks.drawing import colour_bar_margin
from tests.ui.conftest import no_exceptions, page


@pytest.fixture
def shown_images(monkeypatch) -> list[np.ndarray]:
    """Every image the page sends to the browser, decoded."""
    shown: list[np.ndarray] = []
    original = MemoryMediaFileStorage.load_and_get_id

    def capture(self, data, mimetype, kind, filename=None):
        if mimetype.startswith("image/"):
            shown.append(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
        return original(self, data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", capture)
    return shown


def png_bytes(w: int = 300, h: int = 260, seed: int = 0) -> bytes:
    """A smooth gradient with a bright disc (smooth, so the page's JPEG preview stays close to it)."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 // w, y * 255 // h, np.full_like(x, 60 + 40 * seed)], axis=-1)
    img[(x - w // 2) ** 2 + (y - h // 2) ** 2 < (min(w, h) // 4) ** 2] = (250, 220, 30)
    buf = io.BytesIO()
    Image.fromarray(img.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_an_uploaded_png_yields_an_overlay_with_every_task_and_a_download(ui_runs, shown_images):
    at = page("predict", ui_runs["run_id"])
    at.run()
    no_exceptions(at)
    assert any("Upload" in i.value for i in at.info)  # asks for images first
    upload = png_bytes()
    at.file_uploader(key="predict_upload").set_value(("cat.png", upload, "image/png"))
    at.run()
    no_exceptions(at)
    assert not at.error
    captions = [m.value for m in at.markdown]
    assert any("cat.png" in c and "300×260 px" in c and "inference" in c for c in captions)
    summary = next(c for c in captions if c.startswith("Classification:"))
    for title in ("Classification:", "Detection:", "Segmentation:", "Depth:"):
        assert title in summary
    # the overlay at the upload's size, the depth colour map beside it too, widened by its colour bar
    assert [im.captions[0] for im in at.image] == ["Prediction", "Depth (near blue, far red)"]
    overlay, depth = shown_images[-2:]
    assert overlay.shape == (260, 300, 3)
    assert depth.shape == (260, 300 + colour_bar_margin((260, 300), 0.0, DEPTH_MAX), 3)
    original = np.asarray(Image.open(io.BytesIO(upload)).convert("RGB")).astype(int)
    assert np.abs(overlay.astype(int) - original).mean() > 5  # something was drawn on it
    assert at.get("download_button")
    # blending depth instead leaves one image; hiding every task leaves the upload as it was
    at.radio(key="predict_depth_mode").set_value("blended").run()
    assert [im.captions[0] for im in at.image] == ["Prediction"]
    at.pills(key="predict_show").set_value([]).run()
    no_exceptions(at)
    assert np.abs(shown_images[-1].astype(int) - original).mean() < 3


def test_a_broken_upload_names_the_file_and_the_good_one_beside_it_still_renders(ui_runs):
    at = page("predict", ui_runs["run_id"])
    at.run()
    at.file_uploader(key="predict_upload").set_value([
        ("broken.png", b"this is not a png", "image/png"),
        ("good.png", png_bytes(seed=1), "image/png"),
    ])
    at.run()
    no_exceptions(at)
    assert len(at.error) == 1 and "broken.png" in at.error[0].value
    assert any("good.png" in m.value and "inference" in m.value for m in at.markdown)


def test_dataset_samples_show_ground_truth_beside_the_prediction(ui_runs):
    at = page("predict", ui_runs["run_id"])
    at.run()
    at.radio(key="predict_source").set_value("dataset").run()
    at.slider(key="predict_count").set_value(2).run()
    no_exceptions(at)
    titles = [m.value for m in at.markdown if "sample" in m.value]
    assert len(titles) == 2 and "val sample 0" in titles[0] and "val sample 1" in titles[1]
    assert "32×32 px" in titles[0]
    captions = [im.captions[0] for im in at.image]
    assert captions == ["Prediction", "Depth (near blue, far red)", "Ground truth", "Ground-truth depth"] * 2


SAMPLE_IMAGES = sorted((Path(__file__).resolve().parents[2] / "assets" / "samples").glob("*.png"))


def test_the_sample_images_are_drawn_like_uploads(ui_runs, shown_images):
    assert 4 <= len(SAMPLE_IMAGES) <= 6, SAMPLE_IMAGES
    at = page("predict", ui_runs["run_id"])
    at.run()
    at.radio(key="predict_source").set_value("samples").run()
    no_exceptions(at)
    assert not at.error
    titles = [m.value for m in at.markdown if "inference" in m.value]
    assert len(titles) == len(SAMPLE_IMAGES)  # one result per sample image
    for path, title in zip(SAMPLE_IMAGES, titles, strict=True):
        w, h = Image.open(path).size
        assert path.name in title and f"{w}×{h} px" in title
    captions = [im.captions[0] for im in at.image]
    assert captions == ["Prediction", "Depth (near blue, far red)"] * len(SAMPLE_IMAGES)
    overlays = shown_images[-2 * len(SAMPLE_IMAGES)::2]
    for path, overlay in zip(SAMPLE_IMAGES, overlays, strict=True):
        original = np.asarray(Image.open(path).convert("RGB")).astype(int)
        assert overlay.shape == original.shape  # drawn at the sample's own size
        changed = np.abs(overlay.astype(int) - original).max(axis=-1) > 20  # (H, W)
        assert changed.mean() > 0.01, changed.mean()  # something was drawn on it (a 5-step model draws little)
    assert len(at.get("download_button")) == len(SAMPLE_IMAGES)


@pytest.fixture(scope="module")
def mtan_run(tmp_path_factory) -> dict:
    """A finished 3-step MTAN run (classification and segmentation) in its own runs directory."""
    import dataclasses

    from mtl_core.runs.manager import get_manager
    from tests.conftest import tiny_config

    d = tmp_path_factory.mktemp("mtan_runs")
    manager = get_manager(d)
    base = tiny_config()
    run_id = manager.start(tiny_config(name="tiny-mtan", tasks=("classification", "segmentation"),
                                       model=dataclasses.replace(base.model, architecture="mtan"),
                                       optim=dataclasses.replace(base.optim, steps=3)))
    assert manager.wait(run_id, timeout=120) == "finished", manager.store.get_run(run_id)["error"]
    return {"dir": d, "run_id": run_id}


def heat_part(shown: np.ndarray, upload: np.ndarray, opacity: float = 0.6) -> np.ndarray:
    """The heat map blended into an attention image: ``(shown - (1 - a) * upload) / a``."""
    return (shown.astype(float) - (1 - opacity) * upload.astype(float)) / opacity


def test_an_mtan_run_shows_each_tasks_attention_map_on_the_image(mtan_run, monkeypatch, shown_images):
    monkeypatch.setenv("MTL_RUNS_DIR", str(mtan_run["dir"]))
    at = page("predict", mtan_run["run_id"])
    at.run()
    no_exceptions(at)
    upload = png_bytes()
    original = np.asarray(Image.open(io.BytesIO(upload)).convert("RGB"))
    at.file_uploader(key="predict_upload").set_value(("cat.png", upload, "image/png")).run()
    no_exceptions(at)
    captions = [im.captions[0] for im in at.image]
    assert captions[0] == "Prediction"
    attention = captions[1:]
    assert [c.split(":")[0] for c in attention] == ["Classification", "Segmentation"]
    for c in attention:  # "Classification: 0.49 to 0.51": the raw map's range, inside [0, 1]
        low, high = (float(x) for x in c.split(": ")[1].split(" to "))
        assert 0.0 <= low <= high <= 1.0
    stretched = shown_images[-2:]
    assert all(im.shape == original.shape for im in stretched)  # drawn over the whole image
    # a 3-step run's maps are nearly flat: on its own range a map spans dark to bright, on the
    # absolute 0..1 scale it is one even colour
    at.toggle(key="predict_attention_stretch").set_value(False).run()
    no_exceptions(at)
    absolute = shown_images[-2:]
    for s, a in zip(stretched, absolute, strict=True):
        spread_stretched = heat_part(s, original).std(axis=(0, 1)).mean()  # over pixels, per colour channel
        spread_absolute = heat_part(a, original).std(axis=(0, 1)).mean()
        assert spread_stretched > 30 and spread_absolute < 10, (spread_stretched, spread_absolute)
    at.toggle(key="predict_attention").set_value(False).run()
    assert [im.captions[0] for im in at.image] == ["Prediction"]


def test_an_ensemble_of_one_model_twice_draws_what_that_model_draws(twin_runs, shown_images):
    a, b = twin_runs["ids"]
    at = page("predict", a)
    at.run()
    upload = png_bytes(seed=2)
    at.file_uploader(key="predict_upload").set_value(("cat.png", upload, "image/png")).run()
    single = shown_images[-2]  # the overlay (the depth map comes after it)
    at.radio(key="predict_mode").set_value("ensemble").run()
    no_exceptions(at)
    assert sorted(at.multiselect(key="predict_ens_runs").value) == sorted([a, b])  # runs on the same tasks
    assert any("ensemble of 2" in c.value and "twin-a 50%" in c.value for c in at.caption)
    assert [im.captions[0] for im in at.image] == ["Prediction", "Depth (near blue, far red)"]
    fused = shown_images[-2]
    original = np.asarray(Image.open(io.BytesIO(upload)).convert("RGB")).astype(int)
    assert fused.shape == single.shape == original.shape
    assert np.abs(fused.astype(int) - original).mean() > 5  # something was drawn
    assert np.abs(fused.astype(int) - single.astype(int)).mean() < 1.0  # and it is the model's own prediction
    assert any(m.value.startswith("Classification:") for m in at.markdown)
    # one member alone is not an ensemble
    at.multiselect(key="predict_ens_runs").set_value([a]).run()
    no_exceptions(at)
    assert any("two or more" in i.value for i in at.info) and not at.image
