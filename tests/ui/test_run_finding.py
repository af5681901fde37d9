"""Finding a run among many, as a person does it: the sidebar picker's search and filters and its
labels, Compare's filters over its table and delete list, a run's tags and note on Live."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from streamlit.testing.v1 import AppTest

from mtl_core.studies.store import StudyStore
from tests.runs.test_run_listing import config
from tests.ui.conftest import no_exceptions, page

PICKER = """
import streamlit as st
from ui.sidebar import run_picker
st.write(f"picked={run_picker()}")
"""
SEED_NAME = "fusion on scenes with a long title · segmentation alone · seed {}"


@pytest.fixture
def shelf(runs_dir):
    """Three seeds of one level of the study "fusion on scenes with a long title", created in one
    breath; a depth run with PCGrad; a failed run; two runs both named "demo", one tagged."""
    from mtl_core.runs.manager import get_manager

    store = get_manager(runs_dir).store
    studies = StudyStore(store)
    plan = [{"key": f"k{s}", "role": "trial", "level": {"weighting.method": "famo"}, "seed": s} for s in range(3)]
    study = studies.create("fusion on scenes with a long title", {}, plan)
    ids = {}
    for s in range(3):
        ids[f"seed {s}"] = store.create_run(config("famo"), SEED_NAME.format(s), status="finished",
                                            tags={"study": study, "label": "segmentation alone", "seed": s})
        studies.attach(study, f"k{s}", ids[f"seed {s}"])
    ids["depth"] = store.create_run(config("pcgrad", ("depth",)), "depth alone", status="finished")
    ids["failed"] = store.create_run(config(), "broken", status="failed")
    ids["demo 1"] = store.create_run(config(), "demo", status="finished")
    ids["demo 2"] = store.create_run(config(), "demo", status="finished")
    store.set_labels(ids["demo 1"], ["keeper"])
    return SimpleNamespace(store=store, ids=ids, study=study)


def picker(at: AppTest | None = None) -> AppTest:
    at = at or AppTest.from_string(PICKER, default_timeout=30)
    at.run()
    no_exceptions(at)
    return at


def options(at: AppTest) -> list[str]:
    return list(at.sidebar.selectbox(key="run_picker.run").options)


def listed(at: AppTest) -> list[str]:
    """The labels the picker lists, the run it keeps shown while filtered out (📌) aside."""
    return [label for label in options(at) if not label.startswith("📌")]


def search(at: AppTest, text: str) -> list[str]:
    at.sidebar.text_input(key="run_picker.run.find").input(text)
    return listed(picker(at))


def test_three_seeds_of_a_level_and_two_runs_of_one_name_read_apart(shelf):
    labels = options(picker())
    seeds = [label for label in labels if "seed" in label]
    assert len(seeds) == 3 and len(set(seeds)) == 3, seeds
    assert [s.split(" · ")[-2] for s in seeds] == ["seed 2", "seed 1", "seed 0"]  # the level and seed stay
    demos = [label for label in labels if " demo" in label]
    assert len(demos) == 2 and len(set(demos)) == 2, demos  # same name, same minute: the id's end tells them apart
    assert {d.rsplit(" · ", 1)[1] for d in demos} == {shelf.ids["demo 1"][-6:], shelf.ids["demo 2"][-6:]}


@pytest.mark.parametrize("text, found", [
    ("pcgrad", ["depth alone"]),  # the method
    ("depth", ["depth alone"]),  # a task
    ("fusion on scenes", ["seed 2", "seed 1", "seed 0"]),  # the study's name
    ("keeper", ["demo"]),  # a tag
    ('"seed 1"', ["seed 1"]),  # a phrase of the name
])
def test_the_picker_s_search_finds_by_method_task_study_and_tag_and_nothing_else(shelf, text, found):
    at = picker()
    shown = search(at, text)
    assert len(shown) == len(found) and all(f in label for f, label in zip(found, shown, strict=True)), shown
    assert not any("No run matches" in c.value for c in at.sidebar.caption)
    assert search(at, "") == listed(picker(AppTest.from_string(PICKER, default_timeout=30)))  # cleared: all again


def test_a_search_that_finds_nothing_keeps_the_run_shown_and_says_so(shelf):
    at = picker()
    first = at.markdown[0].value
    assert search(at, "no-such-run") == []
    assert options(at)[0].startswith("📌") and at.markdown[0].value == first  # the page keeps its run
    assert any("No run matches the filters" in c.value for c in at.sidebar.caption)


def test_the_study_and_status_filters_say_how_many_runs_each_holds(shelf):
    at = picker()
    study = at.sidebar.selectbox(key="run_picker.run.study")
    assert study.options == ["All runs", "Outside studies (4)", "fusion on scenes with a long title (3)"]
    study.set_value(shelf.study)
    labels = listed(picker(at))
    assert len(labels) == 3 and all(" · seed " in x and "fusion on" not in x for x in labels), labels  # title left out
    assert not at.sidebar.button_group  # one status among the study's runs: nothing to choose
    at.sidebar.selectbox(key="run_picker.run.study").set_value("")
    pills = picker(at).sidebar.button_group(key="run_picker.run.status")
    assert list(pills.options) == ["finished 6", "failed 1"]  # each with its status icon
    pills.set_value(["failed"])
    assert [x.split(" · ")[0] for x in listed(picker(at))] == ["❌ broken"]


def test_at_many_runs_the_picker_lists_the_newest_and_says_how_many_more(runs_dir):
    from bench.run_list import fill, run_id
    from mtl_core.runs.manager import get_manager
    from ui.sidebar import PICKER_LIMIT

    fill(get_manager(runs_dir).store, PICKER_LIMIT + 50)
    at = picker()
    assert len(options(at)) == PICKER_LIMIT
    assert any(f"Showing the newest {PICKER_LIMIT} of {PICKER_LIMIT + 50} runs: type to narrow." in c.value
               for c in at.sidebar.caption)
    # a run chosen elsewhere (a shared link) that the list leaves out still shows, first
    oldest = run_id(PICKER_LIMIT + 49)
    at.query_params["run"] = oldest
    at = picker(at)
    assert at.markdown[0].value == f"picked={oldest}" and options(at)[0].startswith("📌")
    assert len(search(at, "diverged near step 1")) < PICKER_LIMIT  # a note's words narrow it


def test_tags_and_a_note_written_on_live_show_there_and_are_searchable(shelf):
    rid = shelf.ids["depth"]
    at = page("live", rid)
    at.run()
    no_exceptions(at)
    at.text_input(key=f"live_tags_{rid}").input("paper, check  again")
    at.text_area(key=f"live_note_{rid}").input("best depth so far")
    at.button(key=f"live_notes_save_{rid}").click().run()
    no_exceptions(at)
    run = shelf.store.get_run(rid)
    assert run["labels"] == ["paper", "check again"] and run["note"] == "best depth so far"
    assert any(":violet-badge[paper]" in m.value and ":violet-badge[check again]" in m.value for m in at.markdown)
    assert any("best depth so far" in c.value for c in at.caption)
    assert ["depth alone"] == [x.split(" · ")[0][2:] for x in search(picker(), "check again")]
    assert ["depth alone"] == [x.split(" · ")[0][2:] for x in search(picker(), "best depth")]
    # a tag that is no plain word is refused, saying why, and nothing changes
    at.text_input(key=f"live_tags_{rid}").input('say "hi"')
    at.button(key=f"live_notes_save_{rid}").click().run()
    assert any("a tag is short plain text" in e.value for e in at.error)
    assert shelf.store.get_run(rid)["labels"] == ["paper", "check again"]


def test_compare_s_filters_narrow_its_table_and_its_delete_list(shelf):
    at = page("compare")
    at.run()
    no_exceptions(at)
    assert len(at.dataframe[0].value) == 7
    at.text_input(key="compare_runs.find").input("pcgrad").run()
    no_exceptions(at)
    assert list(at.dataframe[0].value["id"]) == [shelf.ids["depth"]]
    assert at.multiselect(key="compare_delete_pick").options == [f"depth alone ({shelf.ids['depth'][-6:]}) · finished"]
    at.text_input(key="compare_runs.find").input("").run()
    at.selectbox(key="compare_runs.study").set_value(shelf.study).run()
    table = at.dataframe[0].value
    assert sorted(table["id"]) == sorted(shelf.ids[f"seed {s}"] for s in range(3))
    assert set(table["study"]) == {"fusion on scenes with a long title · segmentation alone"}
    assert len(at.multiselect(key="compare_delete_pick").options) == 3


def test_compare_groups_its_table_by_study(shelf):
    at = page("compare")
    at.run()
    studies = list(at.dataframe[0].value["study"])
    first = studies.index("fusion on scenes with a long title · segmentation alone")
    assert studies[first:first + 3] == ["fusion on scenes with a long title · segmentation alone"] * 3


def test_a_viewer_cannot_tag_a_run_or_write_its_note(shelf):
    from mtl_core.runs.manager import get_manager
    from ui.access import AccessError
    from ui.read_only import ViewerManager

    seen = ViewerManager(get_manager(shelf.store.root)).store
    for write in (lambda: seen.set_note(shelf.ids["depth"], "mine now"),
                  lambda: seen.set_labels(shelf.ids["depth"], ["x"])):
        with pytest.raises(AccessError, match="View only"):
            write()
    assert [r["id"] for r in seen.find_runs("pcgrad").rows] == [shelf.ids["depth"]]  # it finds runs all the same
    assert shelf.store.get_run(shelf.ids["depth"])["note"] == ""
