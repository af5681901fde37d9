"""Finding runs in the store (mtl_core/store/listing.py): a person's tags and note, and the one query
the run lists read, with what it finds and what it counts."""
from __future__ import annotations

import dataclasses

import pytest

from mtl_core.config import ExperimentConfig, WeightingConfig
from mtl_core.errors import ConfigError
from mtl_core.store.listing import NO_STUDY, clean_labels, search_terms
from mtl_core.store.store import RunStore
from mtl_core.studies.store import StudyStore

pytestmark = pytest.mark.usefixtures("store_backend")  # the lists read the same on SQLite and PostgreSQL


def config(method: str = "static", tasks=("classification", "detection"), **kw) -> dict:
    return dataclasses.replace(ExperimentConfig(), tasks=tuple(tasks), weighting=WeightingConfig(method=method),
                               **kw).to_dict()


@pytest.fixture
def catalogue(tmp_path):
    """Three seeds of one level of a study "fusion on scenes" (created in one breath), a depth run
    with PCGrad outside any study, and a failed one: ``(store, ids, study)``."""
    store = RunStore(tmp_path)
    studies = StudyStore(store)
    plan = [{"key": f"k{s}", "role": "trial", "level": {"weighting.method": "famo"}, "seed": s} for s in range(3)]
    study = studies.create("fusion on scenes", {}, plan)
    ids = {}
    for s in range(3):
        rid = store.create_run(config("famo"), f"fusion on scenes · segmentation alone · seed {s}", status="finished",
                               tags={"study": study, "label": "weighting.method=famo", "seed": s})
        studies.attach(study, f"k{s}", rid)
        ids[f"seed {s}"] = rid
    ids["depth"] = store.create_run(config("pcgrad", ("depth",)), "depth alone", status="finished")
    ids["failed"] = store.create_run(config(), "broken", status="failed")
    return store, ids, study


def names(found) -> list[str]:
    return [r["name"] for r in found.rows]


def test_the_list_is_newest_first_with_light_rows_and_counts(catalogue):
    store, ids, study = catalogue
    found = store.find_runs()
    assert names(found) == ["broken", "depth alone", *(f"fusion on scenes · segmentation alone · seed {s}"
                                                      for s in (2, 1, 0))]
    assert found.total == 5 and found.statuses == {"finished": 4, "failed": 1}
    assert found.studies == {study: 3, NO_STUDY: 2} and found.study_names == {study: "fusion on scenes"}
    seed1 = next(r for r in found.rows if r["id"] == ids["seed 1"])
    assert (seed1["study"], seed1["study_name"], seed1["level"], seed1["seed"]) == (
        study, "fusion on scenes", "weighting.method=famo", 1)
    assert seed1["method"] == "famo" and seed1["tasks"] == ["classification", "detection"]
    assert "config" not in seed1 and "metrics" not in seed1
    assert store.find_runs(config=True).rows[0]["config"]["weighting"]["method"] == "static"


def test_a_page_is_bounded_and_says_how_many_match(catalogue):
    store, ids, _ = catalogue
    found = store.find_runs(limit=2)
    assert len(found.rows) == 2 and found.total == 5
    assert store.find_runs(limit=0).rows == []


@pytest.mark.parametrize("text, expected", [
    ("pcgrad", ["depth"]), ("PCGrad", ["depth"]),  # the method, any case
    ("depth", ["depth"]),  # a task
    ("fusion on", ["seed 2", "seed 1", "seed 0"]),  # the study's name
    ('"seed 1"', ["seed 1"]),  # a quoted phrase
    ("famo seed", ["seed 2", "seed 1", "seed 0"]),  # every word somewhere
    ("broken", ["failed"]), ("static", ["failed"]),
    ("nothing-like-this", []), ("100%", []), ("_", []),  # LIKE's wildcards are plain letters here
])
def test_search_by_method_task_study_and_name_finds_those_runs_and_no_others(catalogue, text, expected):
    store, ids, _ = catalogue
    assert [r["id"] for r in store.find_runs(text).rows] == [ids[e] for e in expected]


def test_a_word_elsewhere_in_the_config_is_not_a_task(catalogue):
    """The config's JSON may name a task it does not learn (a loss scale, a spec): that is no match."""
    store, ids, _ = catalogue
    cfg = config("pcgrad", ("depth",))
    cfg["data"]["loss_scale"] = {"segmentation": 2.0}
    other = store.create_run(cfg, "depth again", status="finished")
    assert other not in [r["id"] for r in store.find_runs("segmentation").rows]
    assert [r["id"] for r in store.find_runs("depth again").rows] == [other]


def test_filters_by_status_and_study_with_counts_that_leave_their_own_filter_out(catalogue):
    store, ids, study = catalogue
    found = store.find_runs(statuses=["finished"], study=NO_STUDY)
    assert [r["id"] for r in found.rows] == [ids["depth"]] and found.total == 1
    assert found.statuses == {"finished": 1, "failed": 1}  # outside studies, whatever the status
    assert found.studies == {study: 3, NO_STUDY: 2}  # each study's runs, whatever the status
    assert store.find_runs(study=study).total == 3
    assert store.find_runs("depth", study=study).total == 0
    searched = store.find_runs("static", statuses=["finished"])
    assert searched.total == 0 and searched.statuses == {"failed": 1} and searched.studies == {NO_STUDY: 1}
    tagged = store.find_runs(label="x", counts=False)
    assert tagged.total == 0 and tagged.statuses == {} and tagged.studies == {}
    assert store.find_runs(statuses=[]).total == 0
    assert [r["id"] for r in store.find_runs(ids=[ids["depth"], ids["failed"]]).rows] == [ids["failed"], ids["depth"]]


def test_tags_and_a_note_are_kept_shown_and_searchable(catalogue):
    store, ids, _ = catalogue
    assert store.set_labels(ids["seed 1"], [" Keep ", "paper  fig", "keep"]) == ["Keep", "paper fig"]
    store.set_note(ids["seed 0"], "diverged at step 300, see logs")
    assert store.get_run(ids["seed 1"])["labels"] == ["Keep", "paper fig"]
    assert store.get_run(ids["seed 0"])["note"] == "diverged at step 300, see logs"
    assert [r["id"] for r in store.find_runs("keep").rows] == [ids["seed 1"]]
    assert [r["id"] for r in store.find_runs("diverged").rows] == [ids["seed 0"]]
    assert [r["id"] for r in store.find_runs(label="KEEP").rows] == [ids["seed 1"]]
    assert store.find_runs(label="kee").total == 0  # a tag filter is the whole tag
    row = store.find_runs(ids=[ids["seed 1"]]).rows[0]
    assert row["labels"] == ["Keep", "paper fig"]
    store.set_labels(ids["seed 1"], [])
    store.set_note(ids["seed 0"], "")
    assert store.find_runs("keep").total == 0 and store.find_runs("diverged").total == 0


def test_tags_and_notes_that_are_refused_name_their_field(catalogue):
    store, ids, _ = catalogue
    for bad in ('say "hi"', "x" * 33, "-lead", "a,b", ["nested"]):
        with pytest.raises(ConfigError, match="labels"):
            store.set_labels(ids["depth"], [bad])
    with pytest.raises(ConfigError, match="labels.*list"):
        store.set_labels(ids["depth"], "a string")
    with pytest.raises(ConfigError, match="at most 20"):
        store.set_labels(ids["depth"], [f"t{i}" for i in range(21)])
    with pytest.raises(ConfigError, match="note"):
        store.set_note(ids["depth"], "x" * 5000)
    with pytest.raises(ConfigError, match="run_id.*no run"):
        store.set_note("20990101-000000-abcdef", "hello")
    assert store.get_run(ids["depth"])["labels"] == [] and store.get_run(ids["depth"])["note"] == ""


def test_baselines_of_a_run_are_found_by_their_config(catalogue):
    store, ids, _ = catalogue
    mtl = ids["failed"]
    cls = store.create_run(config(tasks=("classification",), baseline_of=mtl), "cls alone", status="finished")
    store.create_run(config(tasks=("depth",), baseline_of=ids["depth"]), "other's", status="finished")
    assert [r["id"] for r in store.find_runs(baseline_of=[mtl]).rows] == [cls]
    assert store.find_runs(baseline_of=[]).total == 0


def test_a_deleted_study_leaves_its_runs_outside_studies(catalogue):
    store, ids, study = catalogue
    with store.transaction() as c:
        c.execute("DELETE FROM study_runs WHERE study=?", (study,))
    row = store.find_runs(ids=[ids["seed 0"]]).rows[0]
    assert row["study"] == "" and row["level"] == "" and row["seed"] is None
    assert store.find_runs(study=NO_STUDY).total == 5


def test_search_terms_and_clean_labels():
    assert search_terms('  PCGrad "seed 1"  depth ') == ["pcgrad", "seed 1", "depth"]
    assert search_terms("") == [] and len(search_terms("a " * 50)) == 8
    assert clean_labels(["ünïcode ok", "v1.2", "a/b #3"]) == ["ünïcode ok", "v1.2", "a/b #3"]
