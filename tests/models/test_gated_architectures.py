"""The gated mixture-of-experts architectures (MMoE, CGC, PLE, DSelect-k) and PAD-Net: every task
gets the output a hard-sharing model gives it, gates are distributions over the experts they may
use, DSelect-k's selectors pick exactly k experts once saturated, PAD-Net's tasks really exchange
features, and ``shared_parameters()`` is exactly what every task's loss reaches."""
from __future__ import annotations

import math

import pytest
import torch

from mtl_core.config import DataConfig, ModelConfig
from mtl_core.data import build_dataset
from mtl_core.isolation import seeded_global_rng
from mtl_core.models import build_model
from mtl_core.models.dselect_k import NUM_EXPERTS, K, smooth_step
from mtl_core.tasks import build_task

GATED = ["mmoe", "cgc", "ple", "dselect_k"]
NEW = ["cgc", "ple", "dselect_k", "pad_net"]
TASKS = ("classification", "segmentation", "depth")


@pytest.fixture(scope="module")
def tasks() -> dict:
    info = build_dataset(DataConfig(image_size=32, train_size=4, val_size=4, test_size=4), "val", 0).info
    return {t: build_task(t, info) for t in TASKS}


def model(tasks, arch: str, backbone: str = "small_cnn"):
    with seeded_global_rng(0):  # module initialisation draws from the global generator
        return build_model(tasks, ModelConfig(architecture=arch, backbone=backbone, width=8)).eval()


def images(seed: int = 0, n: int = 2) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def shapes(out: dict) -> dict:
    return {t: {k: v.shape for k, v in o.items()} if isinstance(o, dict) else o.shape for t, o in out.items()}


@pytest.mark.parametrize("backbone", ["small_cnn", "mobilenet_v3"])
@pytest.mark.parametrize("arch", NEW)
def test_every_task_gets_the_output_shape_hard_sharing_gives_it(tasks, arch, backbone):
    x = images()
    expected = shapes(model(tasks, "hard_sharing", backbone)(x))
    assert expected["segmentation"][-1] == 32 // (2 if backbone == "small_cnn" else 8)
    assert shapes(model(tasks, arch, backbone)(x)) == expected


@pytest.mark.parametrize("arch", GATED)
def test_each_tasks_gate_is_a_distribution_over_its_experts(tasks, arch):
    m = model(tasks, arch)
    values = m.gate_values(images(n=3))
    assert list(values) == list(TASKS)
    for t in TASKS:
        per_image = m.last_gates[t]  # (B, E), from the forward gate_values ran
        assert per_image.shape == (3, len(m.expert_names[t]))
        assert torch.allclose(per_image.sum(1), torch.ones(3), atol=1e-5) and (per_image >= 0).all()
        assert list(values[t]) == m.expert_names[t]
        assert all(isinstance(w, float) for w in values[t].values())
        assert math.isclose(sum(values[t].values()), 1.0, abs_tol=1e-5)


@pytest.mark.parametrize("arch", ["cgc", "ple"])
def test_a_tasks_gate_covers_the_shared_experts_and_its_own_only(tasks, arch):
    m = model(tasks, arch)
    assert m.expert_names == {t: ["shared", t] for t in TASKS}
    x = images()
    before = m(x)
    with torch.no_grad():  # spoil segmentation's own expert at the last level (its decoder, for small_cnn)
        for n, p in m.own["segmentation"][0].named_parameters():
            if arch == "cgc" or n not in m._level1:
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    after = m(x)
    assert not torch.allclose(after["segmentation"], before["segmentation"])
    for t in ("classification", "depth"):
        assert torch.equal(after[t], before[t])


def test_ples_inner_level_passes_every_tasks_experts_to_every_task_through_its_shared_gate(tasks):
    m = model(tasks, "ple")
    assert m.split == 2  # small_cnn's five stages: level 1 ends at the stride-8 bottleneck
    x = images()
    before = m(x)
    with torch.no_grad():  # segmentation's own expert's first level feeds the shared gate
        for n, p in m.own["segmentation"][0].named_parameters():
            if n in m._level1:
                p.mul_(1.5)
    after = m(x)
    for t in TASKS:
        assert not torch.allclose(after[t], before[t]), t


@pytest.mark.parametrize("arch", NEW + ["mmoe"])
def test_shared_parameters_are_exactly_what_every_task_updates(tasks, arch):
    m = model(tasks, arch)
    out = m(images())
    reached = []
    for t in TASKS:
        leaves = out[t] if isinstance(out[t], dict) else {"": out[t]}
        loss = sum((v.float() ** 2).mean() for v in leaves.values())
        m.zero_grad(set_to_none=True)
        loss.backward(retain_graph=True)
        reached.append({n for n, p in m.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0})
    every = set.intersection(*reached)
    names = {id(p): n for n, p in m.named_parameters()}
    shared = {names[id(p)] for p in m.shared_parameters()}
    assert shared == every, (sorted(shared - every)[:5], sorted(every - shared)[:5])
    assert len(shared) < len(names)  # and the heads (at least) are each task's own


def test_smooth_step_is_zero_and_one_outside_its_cubic():
    t = torch.tensor([-2.0, -0.5, -0.25, 0.0, 0.25, 0.5, 2.0])
    expected = [0.0, 0.0, 1 - 0.84375, 0.5, 0.84375, 1.0, 1.0]  # -2 t^3 + 1.5 t + 0.5 at t = 0.25: 0.84375
    assert torch.allclose(smooth_step(t), torch.tensor(expected))


def test_dselect_k_picks_exactly_k_experts_once_its_selectors_saturate(tasks):
    assert (K, NUM_EXPERTS) == (2, 4)
    m = model(tasks, "dselect_k")
    x = images(n=3)
    m.gate_values(x)
    assert (m.last_gates["depth"] > 0).all()  # at init the selectors are soft: every expert has a share
    with torch.no_grad():
        z, w = m.z_logits["depth"], m.w_logits["depth"]
        z.weight.zero_()
        w.weight.zero_()
        # selector 1 spells expert 2 (binary 01), selector 2 expert 3 (binary 10), past the cubic's +-1/2
        z.bias.copy_(torch.tensor([-1.0, 1.0, 1.0, -1.0]))
        w.bias.copy_(torch.tensor([0.0, math.log(3.0)]))  # softmax: 1/4 and 3/4
    values = m.gate_values(x)["depth"]
    assert values == pytest.approx({"expert 1": 0.0, "expert 2": 0.25, "expert 3": 0.75, "expert 4": 0.0}, abs=1e-6)
    assert (torch.count_nonzero(m.last_gates["depth"], dim=1) == K).all()  # every image: k experts, the others exactly 0
    assert (m.last_gates["segmentation"] > 0).all()  # the other tasks' selectors are their own


def test_pad_nets_distillation_passes_each_tasks_features_to_the_others(tasks):
    m = model(tasks, "pad_net")
    x = images()
    before = m(x)
    shift = m.intermediate["segmentation"].register_forward_hook(lambda mod, inp, out: out + 1.0)
    after = m(x)
    assert not torch.allclose(after["classification"], before["classification"])
    assert not torch.allclose(after["depth"], before["depth"])
    shift.remove()
    with torch.no_grad():  # cut the one message segmentation sends classification: its features no longer matter there
        m.distill["classification"]["segmentation"].transform.weight.zero_()
    before = m(x)
    shift = m.intermediate["segmentation"].register_forward_hook(lambda mod, inp, out: out + 1.0)
    after = m(x)
    shift.remove()
    assert torch.allclose(after["classification"], before["classification"])
    assert not torch.allclose(after["depth"], before["depth"])
    gates = m.distillation_gates(x)
    assert gates.keys() == set(TASKS) and gates["classification"].keys() == {"segmentation", "depth"}
    assert all(0.0 < g < 1.0 for d in gates.values() for g in d.values())


@pytest.mark.parametrize("arch", ["cgc", "ple", "dselect_k", "pad_net"])
def test_the_new_architectures_have_no_single_shared_representation(tasks, arch):
    from mtl_core.errors import ConfigError

    with pytest.raises(ConfigError, match="rep_grad") as e:
        model(tasks, arch).forward_train(images(), rep_grad=True)
    assert arch in e.value.message


@pytest.mark.parametrize("arch", NEW)
def test_the_new_architectures_export_to_torchscript_and_compute_the_same(tasks, arch, tmp_path):
    from mtl_core.deploy.export import export_torchscript, load_torchscript

    m = model(tasks, arch)
    result = export_torchscript(m, tmp_path / f"{arch}.pt", images(n=3))
    assert result.ok, result
    loaded, meta = load_torchscript(tmp_path / f"{arch}.pt")
    x = images(seed=5, n=2)  # not the images the export checked
    assert torch.allclose(dict(loaded(x))["depth"], m(x)["depth"], atol=1e-5)
