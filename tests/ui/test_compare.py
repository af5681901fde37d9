"""The Compare page on hand-made runs whose Δm is known."""
from __future__ import annotations

import io

import pandas as pd
import pytest
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

from tests.conftest import tiny_config
from tests.ui.conftest import no_exceptions, page

TASKS = ("classification", "depth")


def final_table(at) -> pd.DataFrame:
    """The final-metrics table (the second dataframe; the first is the table of runs)."""
    return at.dataframe[1].value


@pytest.fixture
def three_runs(tmp_path, monkeypatch):
    """A baseline (accuracy 0.80, abs_rel 0.20), a run better on both by 10% and one that trades
    +10% accuracy for a 10% worse abs_rel; finished, with test metrics."""
    monkeypatch.setenv("MTL_RUNS_DIR", str(tmp_path))
    from mtl_core.store import RunStore

    store = RunStore(tmp_path)
    ids = {}
    for name, acc, abs_rel in (("baseline", 0.80, 0.20), ("better", 0.88, 0.18), ("trade", 0.88, 0.22)):
        cfg = tiny_config(name=name, tasks=TASKS).to_dict()
        rid = store.create_run(cfg, name, "cli", 10)
        store.set_status(rid, "running")
        rows = [(s, "train", f"loss/{t}", 1.0 / s, 0.0) for s in range(1, 11) for t in TASKS]
        rows += [(10, "val", "classification/accuracy", acc - 0.1, 0.0), (10, "val", "depth/abs_rel", abs_rel + 0.1, 0.0),
                 (10, "test", "classification/accuracy", acc, 0.0), (10, "test", "depth/abs_rel", abs_rel, 0.0)]
        store.log_metrics(rid, rows)
        store.update_progress(rid, 10)
        store.set_status(rid, "finished")
        ids[name] = rid
    return store, ids


def test_delta_m_against_the_chosen_baseline_and_the_csv(three_runs, monkeypatch):
    store, ids = three_runs
    csvs: list[bytes] = []
    original = MemoryMediaFileStorage.load_and_get_id

    def capture(self, data, mimetype, kind, filename=None):
        if mimetype == "text/csv":
            csvs.append(data if isinstance(data, bytes) else data.encode())
        return original(self, data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", capture)
    at = page("compare")
    at.run()
    no_exceptions(at)
    at.selectbox(key="compare_baseline").set_value(ids["baseline"]).run()
    no_exceptions(at)
    final = final_table(at).set_index("id")
    dm = final["Δm vs baseline (%)"]
    assert dm[ids["baseline"]] == pytest.approx(0.0)
    assert dm[ids["better"]] == pytest.approx(10.0)
    assert dm[ids["trade"]] == pytest.approx(0.0, abs=1e-9)
    assert (final["split"] == "test").all()  # test metrics win over the last validation
    # the CSV download holds the same table
    assert "CSV" in at.get("download_button")[0].proto.label
    from_csv = pd.read_csv(io.BytesIO(csvs[-1])).set_index("id")
    assert from_csv.loc[ids["better"], "Δm vs baseline (%)"] == pytest.approx(10.0)
    assert from_csv.loc[ids["trade"], "classification · accuracy↑"] == pytest.approx(0.88)
    # another baseline: Δm moves with it
    at.selectbox(key="compare_baseline").set_value(ids["better"]).run()
    dm = final_table(at).set_index("id")["Δm vs baseline (%)"]
    assert dm[ids["baseline"]] == pytest.approx((-0.08 / 0.88 * 100 - 0.02 / 0.18 * 100) / 2)
    # curves per task and the trade-off scatter with its Pareto front
    keys = [c.key for c in at.get("plotly_chart")]
    assert {"compare_loss_classification", "compare_val_depth", "compare_pareto"} <= set(keys)


def test_the_pareto_scatter_puts_only_undominated_runs_on_the_front(three_runs):
    import json

    store, ids = three_runs
    at = page("compare")
    at.run()
    spec = json.loads(next(c for c in at.get("plotly_chart") if c.key == "compare_pareto").proto.spec)
    front = next(tr for tr in spec["data"] if tr["name"] == "on the front")
    assert [t.split(" (")[0] for t in front["text"]] == ["better"]  # it beats both others on both tasks


def test_deleting_asks_first_then_removes_the_run(three_runs):
    store, ids = three_runs
    at = page("compare")
    at.run()
    at.multiselect(key="compare_delete_pick").set_value([ids["trade"]]).run()
    at.button(key="compare_delete").click().run()
    assert store.get_run(ids["trade"]) is not None  # only asked so far
    assert any("cannot be undone" in w.value for w in at.warning)
    at.button(key="compare_delete_yes").click().run()
    no_exceptions(at)
    assert store.get_run(ids["trade"]) is None
    assert store.get_run(ids["baseline"]) is not None
    assert ids["trade"] not in final_table(at)["id"].tolist()
