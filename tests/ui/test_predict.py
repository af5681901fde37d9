"""The Predict page, driven with Streamlit's AppTest on the session's tiny finished run."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

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
    # the overlay and the depth colour map beside it, both at the upload's size
    assert [im.captions[0] for im in at.image] == ["Prediction", "Depth (near blue, far red)"]
    overlay, depth = shown_images[-2:]
    assert overlay.shape == depth.shape == (260, 300, 3)
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


def test_small_images_are_enlarged_with_their_predictions_so_labels_stay_readable():
    import torch

    from mtl_core.predict_api import enlarge

    image = torch.zeros(3, 32, 40, dtype=torch.uint8)
    image[:, 0, 0] = 255
    preds = {"detection": {"boxes": torch.tensor([[1.0, 2.0, 3.0, 4.0]]), "labels": torch.tensor([0])},
             "segmentation": {"mask": torch.eye(32, 40, dtype=torch.long)}, "classification": {"label": 1}}
    big, scaled = enlarge(image, preds, 256)
    assert big.shape == (3, 256, 320)  # factor 8: the short side reaches 256
    assert big[:, :8, :8].eq(255).all() and big[:, 8, 8].eq(0).all()  # pixels stay square and crisp
    assert scaled["detection"]["boxes"].tolist() == [[8.0, 16.0, 24.0, 32.0]]
    assert scaled["segmentation"]["mask"].shape == (256, 320) and scaled["segmentation"]["mask"][15, 15] == 1
    assert scaled["classification"] == {"label": 1}
    assert enlarge(big, scaled, 256)[0] is big  # large enough already: unchanged
