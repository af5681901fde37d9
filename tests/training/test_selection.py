"""Model selection on validation: a run keeps its best model beside its last, scores both on test,
and what it reports, predicts with and is compared by follows its rule."""
import dataclasses

import pytest
import torch

from mtl_core.config import ExperimentConfig, SelectConfig
from mtl_core.inference.predictor import Predictor
from mtl_core.protocols.selection import evaluation_score, pick_checkpoint, reported_metrics
from mtl_core.store.store import RunStore
from mtl_core.training import loop
from mtl_core.training.loop import Trainer
from mtl_core.training.validation import validate

# ------------------------------------------------------------------ scores on hand-made evaluations


def test_primary_rule_scores_by_the_task_metric_signed_by_its_direction():
    sel = SelectConfig(rule="primary")
    assert evaluation_score({"depth/abs_rel": 0.2}, sel, ["depth"], {"depth": "abs_rel"}, {"depth": False}) == -0.2
    assert evaluation_score({"seg/miou": 0.6}, sel, ["seg"], {"seg": "miou"}, {"seg": True}) == 0.6
    assert evaluation_score({"seg/miou": float("nan")}, sel, ["seg"], {"seg": "miou"}, {"seg": True}) is None


def test_delta_m_rule_measures_against_the_reference():
    primary, hib = {"a": "acc", "b": "err"}, {"a": True, "b": False}
    ref = {"a": 0.5, "b": 0.2}
    # a: +20 %, b: err 0.25 against 0.2 is 25 % worse -> mean (20 - 25) / 2 = -2.5 %
    got = evaluation_score({"a/acc": 0.6, "b/err": 0.25}, SelectConfig(), ["a", "b"], primary, hib, ref)
    assert got == pytest.approx(-2.5)
    # the config's reference (a preset's published numbers) wins over the first evaluation
    sel = SelectConfig(reference={"a": 0.6, "b": 0.25})
    assert evaluation_score({"a/acc": 0.6, "b/err": 0.25}, sel, ["a", "b"], primary, hib, ref) == pytest.approx(0.0)


def test_reported_metrics_follow_the_rule_and_say_which():
    rows = [(3, "val", "t/m", 0.9, 0), (6, "val", "t/m", 0.5, 0),
            (3, "test", "t/m", 0.80, 0), (6, "test", "t/m", 0.40, 0), (3, "test_best", "t/m", 0.80, 0)]
    best = reported_metrics(rows, ExperimentConfig())
    assert best.values == {"t/m": 0.80} and best.how == "best on validation (step 3)"
    last = reported_metrics(rows, ExperimentConfig(), use="last")
    assert last.values == {"t/m": 0.40} and last.how == "last step (6)"
    mean = reported_metrics(rows, {"select": {"use": "mean_last", "last_k": 2}})
    assert mean.values["t/m"] == pytest.approx(0.60) and "last 2 evaluations (steps 3–6)" in mean.how
    # a run from before model selection has no test_best: its last model, said so
    old = reported_metrics(rows[:4], {"tasks": ["t"]})
    assert old.values == {"t/m": 0.40} and "no best model kept" in old.how
    assert reported_metrics(rows[:2], None).split == "val"


def test_pick_checkpoint_prefers_best_then_final():
    cks = [{"step": 3, "kind": "best", "path": "b"}, {"step": 3, "kind": "periodic", "path": "l"},
           {"step": 6, "kind": "final", "path": "f"}]
    assert pick_checkpoint(cks, "best")["path"] == "b"
    assert pick_checkpoint(cks, "last")["path"] == "f"
    assert "no best" in pick_checkpoint(cks[1:], "best")["chosen"]
    assert pick_checkpoint([], "best") is None


def test_select_fields_are_validated_by_name():
    cfg = ExperimentConfig(select=SelectConfig(use="best_ever", task="nope"))
    fields = {e.field for e in validate(cfg)}
    assert {"select.use", "select.task"} <= fields


# ------------------------------------------------------------------ a run whose last step is worse


@pytest.fixture
def scripted(monkeypatch):
    """Validation scores scripted per evaluation (good, better, worse); the test "accuracy" is a
    fingerprint of the model's weights, so the test metrics show which model was scored."""
    val_scores = iter([0.50, 0.90, 0.30, 0.20, 0.10])
    real = loop.evaluate

    def fake(model, tasks, dataset, device, **kw):
        out = real(model, tasks, dataset, device, **kw)
        if dataset.split == "val":
            out["classification/accuracy"] = next(val_scores)
        else:
            out["classification/accuracy"] = float(sum(p.detach().double().sum() for p in model.parameters()))
        return out

    monkeypatch.setattr(loop, "evaluate", fake)


def _run(tmp_path, tiny, **select):
    cfg = tiny(tasks=("classification",), optim=dataclasses.replace(tiny().optim, steps=9, lr=0.05),
               eval_every=3, first_eval=0, checkpoint_every=0, select=SelectConfig(**select))
    store = RunStore(tmp_path / "runs")
    rid = store.create_run(cfg.to_dict(), "sel", "test", cfg.optim.steps)
    assert Trainer(cfg, store, rid).run() == "finished"
    return store, rid


def test_a_run_whose_last_step_is_worse_reports_and_predicts_with_its_best(tmp_path, tiny, scripted):
    store, rid = _run(tmp_path, tiny)
    best = store.latest_checkpoint(rid, "best")
    assert best["step"] == 6  # val 0.5 at 3, 0.9 at 6, 0.3 at 9
    fingerprint = lambda path: float(sum(p.detach().double().sum() for p in Predictor(path).model.parameters()))  # noqa: E731
    rows = store.metrics(rid)
    rep = reported_metrics(rows, store.get_run(rid)["config"])
    assert rep.split == "test_best" and rep.step == 6
    assert rep.values["classification/accuracy"] == pytest.approx(fingerprint(best["path"]), rel=1e-6)
    last = reported_metrics(rows, store.get_run(rid)["config"], use="last")
    final = store.latest_checkpoint(rid, "final")
    assert last.values["classification/accuracy"] == pytest.approx(fingerprint(final["path"]), rel=1e-6)
    assert last.values["classification/accuracy"] != pytest.approx(rep.values["classification/accuracy"])
    # Predict (and every page or command that asks the store) takes the best model
    chosen = store.chosen_checkpoint(rid)
    assert chosen["path"] == best["path"] and "best on validation (step 6)" in chosen["chosen"]
    assert store.chosen_checkpoint(rid, "last")["kind"] == "final"
    # training goes on from last.pt, never from the best model
    assert store.latest_checkpoint(rid)["kind"] != "best"


def test_use_last_keeps_the_best_too_but_reports_the_last(tmp_path, tiny, scripted):
    store, rid = _run(tmp_path, tiny, use="last")
    rep = reported_metrics(store.metrics(rid), store.get_run(rid)["config"])
    assert rep.use == "last" and rep.step == 9
    assert store.chosen_checkpoint(rid)["kind"] == "final"


def test_mean_last_scores_test_at_the_last_k_evaluations(tmp_path, tiny, scripted):
    store, rid = _run(tmp_path, tiny, use="mean_last", last_k=2)
    steps = sorted({r[0] for r in store.metrics(rid, "test")})
    assert steps == [6, 9]
    rep = reported_metrics(store.metrics(rid), store.get_run(rid)["config"])
    by_step = {r[0]: r[3] for r in store.metrics(rid, "test") if r[2] == "classification/accuracy"}
    assert rep.values["classification/accuracy"] == pytest.approx((by_step[6] + by_step[9]) / 2)


def test_best_checkpoint_holds_no_optimizer_state(tmp_path, tiny, scripted):
    store, rid = _run(tmp_path, tiny)
    payload = torch.load(store.latest_checkpoint(rid, "best")["path"], weights_only=True)
    assert "optimizer" not in payload and payload["select"]["step"] == 6
