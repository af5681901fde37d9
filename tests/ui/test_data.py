"""The Data page: samples of every split with their ground truth, paging, per-task toggles."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "app.py")


@pytest.fixture
def data_page(runs_dir) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30).run()
    at.switch_page("pages/data.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def indices(at: AppTest) -> list[int]:
    """The sample indices shown, from the captions (``#12 · star · 3 objects``)."""
    return sorted(int(i.captions[0].split(" · ")[0].lstrip("#")) for i in at.image)


def test_every_split_shows_a_page_of_samples(data_page):
    at = data_page
    seen = {}
    for split in ("train", "val", "test"):
        at.radio(key="data.split").set_value(split).run()
        assert not at.exception
        assert len(at.image) == 8
        assert indices(at) == list(range(8))
        seen[split] = [i.value[0] for i in at.image]
    # the splits are different images (the media URL is a hash of the picture)
    assert len({tuple(v) for v in seen.values()}) == 3


def test_paging_moves_through_the_indices(data_page):
    at = data_page
    at.button(key="data.next").click().run()
    assert at.number_input(key="data.page").value == 2
    assert indices(at) == list(range(8, 16))
    at.button(key="data.prev").click().run()
    assert at.number_input(key="data.page").value == 1
    assert at.button(key="data.prev").disabled


def test_a_task_toggle_changes_what_is_drawn(data_page):
    at = data_page
    before = [i.value[0] for i in at.image]
    at.toggle(key="data.show.detection").set_value(False).run()
    without_boxes = [i.value[0] for i in at.image]
    assert all(a != b for a, b in zip(before, without_boxes, strict=True))
    at.toggle(key="data.show.detection").set_value(True).run()
    assert [i.value[0] for i in at.image] == before


def test_the_page_describes_the_tasks_and_classes(data_page):
    text = " ".join(m.value for m in data_page.markdown)
    assert "circle, square, triangle, star" in text  # the default 4 shape classes
    assert "Segmentation" in text and "a class for every pixel" in text


def test_the_data_follows_the_setup_page(runs_dir):
    at = AppTest.from_file(APP, default_timeout=30).run()
    at.switch_page("pages/setup.py").run()
    at.slider(key="cfg.data.height").set_value(32)
    at.slider(key="cfg.data.num_shapes").set_value(2).run()
    at.switch_page("pages/data.py").run()
    assert "(32 px" in at.caption[0].value
    assert "**Classes** (2): circle, square" in [m.value for m in at.markdown]
    at.switch_page("pages/setup.py").run()  # and the form kept its values meanwhile
    assert at.slider(key="cfg.data.height").value == 32


def test_a_label_table_is_checked_row_by_row_before_it_is_shown(runs_dir, tmp_path):
    from tests.label_tables import split_of, write_table  # noqa: PLC0415

    rows = [{"image": f"i/{k}.png", "split": split_of(k), "animal": ("cat", "dog")[k % 2]} for k in range(8)]
    rows[5]["image"], rows[5]["_no_file"] = "i/lost.png", True
    table = write_table(tmp_path, rows)
    at = AppTest.from_file(APP, default_timeout=30).run()
    at.switch_page("pages/setup.py").run()
    at.selectbox(key="cfg.data.dataset").set_value("manifest").run()
    at.text_input(key="cfg.data.root").set_value(str(table)).run()
    at.switch_page("pages/data.py").run()
    assert not at.exception, [e.message for e in at.exception]
    assert list(at.dataframe[0].value["task"]) == ["animal"]
    assert "1 problem" in at.error[0].value and "skip" in at.error[0].value
    assert "labels.csv, row 7, image: i/lost.png does not exist" in at.code[0].value
    assert not at.image  # nothing drawn from data a run would refuse
    at.switch_page("pages/setup.py").run()
    at.selectbox(key="cfg.data.on_error").set_value("skip").run()
    at.switch_page("pages/data.py").run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.image, "with bad rows skipped, the samples are drawn"
