import math

import torch

from mtl_core.training.gradstats import cosine_matrix, gradient_stats, task_gradients


def test_opposite_tasks_have_cosine_minus_one_and_the_right_norms():
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    losses = {"a": (w * torch.tensor([3.0, 4.0])).sum(), "b": -(w * torch.tensor([3.0, 4.0])).sum() * 2,
              "c": (w * torch.tensor([-4.0, 3.0])).sum()}
    stats = gradient_stats(task_gradients(losses, [w]))
    assert math.isclose(stats["gradnorm/a"], 5.0) and math.isclose(stats["gradnorm/b"], 10.0)
    assert math.isclose(stats["gradcos/a|b"], -1.0, abs_tol=1e-6)
    assert math.isclose(stats["gradcos/a|c"], 0.0, abs_tol=1e-6)
    m = cosine_matrix(stats, ["a", "b", "c"])
    assert m[1][0] == m[0][1] and m[2][2] == 1.0


def test_graph_survives_for_the_real_backward():
    w = torch.nn.Parameter(torch.ones(3))
    loss = (w ** 2).sum()
    task_gradients({"a": loss}, [w])
    loss.backward()
    assert torch.equal(w.grad, 2 * torch.ones(3))


def test_under_rep_grad_conflict_is_measured_on_the_shared_representation():
    """Each head sees its own detached copy of the features, so the backbone has no gradient of a
    single task to compare; the cosines come from the gradients at the representation, by hand."""
    from mtl_core.models.base import SharedRep
    from mtl_core.training.gradstats import rep_gradients

    w = torch.nn.Parameter(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    x = torch.tensor([[1.0, 1.0], [2.0, -1.0]])  # (B=2, 2)
    rep = SharedRep(x @ w, ["a", "b"])  # features (2, 2)
    u, v = torch.tensor([3.0, 4.0]), torch.tensor([4.0, -3.0])
    losses = {"a": (rep.per_task["a"] * u).sum(), "b": (rep.per_task["b"] * (u + v)).sum()}
    stats = gradient_stats(rep_gradients(losses, rep))
    # dL_a/drep = u in every row, dL_b/drep = u + v: cos = u.(u + v) / (|u| |u + v|) = 25 / (5 * sqrt(50))
    assert math.isclose(stats["gradcos/a|b"], 25 / (5 * math.sqrt(50)), rel_tol=1e-6)
    assert math.isclose(stats["gradnorm/a"], 5.0 * math.sqrt(2), rel_tol=1e-6)  # two rows of |u| = 5
    assert math.isclose(stats["gradnorm/b"], math.sqrt(50) * math.sqrt(2), rel_tol=1e-6)
    assert w.grad is None  # measuring leaves the parameters' gradients to the method
    losses["a"].backward(retain_graph=True)
    assert torch.equal(rep.per_task["a"].grad, u.expand(2, 2))  # and the graph survives for it


def test_a_rep_grad_run_records_real_conflict_statistics(tmp_path):
    """The Live page's conflict charts for a rep_grad run show numbers, not a wall of zeros."""
    import dataclasses

    from mtl_core.runs.manager import RunManager
    from tests.conftest import demo_config

    cfg = dataclasses.replace(demo_config("pcgrad", rep_grad=True), gradstats_every=2)
    cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, steps=6))
    m = RunManager(tmp_path, max_concurrent=1)
    rid = m.start(cfg)
    assert m.wait(rid, 120) == "finished", m.store.get_run(rid)["error"]
    cos = [r[3] for r in m.store.metrics(rid, "train", key_prefix="gradcos/")]
    norms = [r[3] for r in m.store.metrics(rid, "train", key_prefix="gradnorm/")]
    assert len(cos) == 3 * 3 and len(norms) == 3 * 3  # 3 pairs and 3 tasks, at steps 1, 3 and 5
    assert all(n > 0 for n in norms) and any(abs(c) > 1e-3 for c in cos)
    m.shutdown()
