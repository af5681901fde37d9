"""The state contract, over the registry: a method's whole state (its parameters and buffers, the
host-side state it lists, the person's task weights, a generator's position, an optimiser of its
own) survives ``state_dict`` -> ``torch.save`` -> ``load_state_dict`` into a fresh instance bit for
bit, and the restored method takes exactly the step the saved one takes next.

Which methods keep state is found, not listed: the comparison covers every attribute a method
holds, so state kept where the base does not save it fails here, and every item a method saves
must have been changed by the training below (else the test would not see it lost). Also: no
method writes its own state handling or entry point, and checkpoints of the format before load."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import mtl_core.weighting  # noqa: F401  (registers every method)
from mtl_core.weighting import base
from mtl_core.weighting.base import WEIGHTINGS, StepContext, Weighting
from tests.weighting.data.make_legacy_states import FAST, STEPS, TASKS, USER_WEIGHTS, Tiny, batch_losses

NAMES = WEIGHTINGS.available()
CASES = [(n, False) for n in NAMES if WEIGHTINGS.get(n).supports_params] + \
        [(n, True) for n in NAMES if WEIGHTINGS.get(n).supports_rep]
IDS = [f"{n}-{'rep' if r else 'params'}" for n, r in CASES]
MODULE_OWN = set(vars(nn.Module()))  # nn.Module's bookkeeping (hooks, the parameter and buffer dicts)


def build(name: str, rep_grad: bool = False, weights: dict[str, float] | None = USER_WEIGHTS) -> Weighting:
    """A fresh method (a person's task weights set, by default: they are state too)."""
    method = WEIGHTINGS.get(name)(TASKS, params=FAST.get(name), rep_grad=rep_grad)
    method.set_user_weights(weights or {})
    return method


def take_step(model: Tiny, method: Weighting, step: int, rep_grad: bool) -> dict[str, float]:
    """One update as the trainer makes it: ``batches_per_step`` batches of their own."""
    shared = list(model.shared.parameters())
    k = method.batches_per_step
    if k == 1:
        losses, rep = batch_losses(model, step, rep_grad)
        return method.combine(losses, shared, StepContext(step, rep=rep))
    return method.combine((batch_losses(model, step * k + j)[0] for j in range(k)), shared, StepContext(step))


def trained(name: str, rep_grad: bool = False) -> tuple[Tiny, Weighting]:
    """A model and a method after ``STEPS`` updates (its learnable parameters trained with the model's)."""
    torch.manual_seed(0)
    model, method = Tiny(), build(name, rep_grad)
    opt = torch.optim.SGD(list(model.parameters()) + [p for p in method.parameters() if p.requires_grad], lr=0.05)
    for step in range(STEPS):
        opt.zero_grad(set_to_none=True)
        take_step(model, method, step, rep_grad)
        opt.step()
    return model, method


def round_trip(state: dict[str, Any]) -> dict[str, Any]:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)  # as the engine loads checkpoints


def snapshot(method: Weighting) -> dict[str, Any]:
    """Everything a method holds: its state dict and every attribute but nn.Module's bookkeeping."""
    return {"state_dict": method.state_dict(), **{k: v for k, v in vars(method).items() if k not in MODULE_OWN}}


def assert_same(a: Any, b: Any, path: str = "") -> None:
    """Equal bit for bit: tensors of the same dtype, shape and bytes; numbers of the same type."""
    assert type(a) is type(b) or (isinstance(a, dict) and isinstance(b, dict)), f"{path}: {type(a)} vs {type(b)}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{path}: {a.dtype}{tuple(a.shape)} vs {b.dtype}{tuple(b.shape)}"
        bytes_a, bytes_b = (x.detach().cpu().reshape(-1).contiguous().view(torch.uint8) for x in (a, b))
        assert torch.equal(bytes_a, bytes_b), f"{path}: {a} vs {b}"
    elif isinstance(a, torch.Generator):
        assert_same(a.get_state(), b.get_state(), f"{path}.state")
    elif isinstance(a, torch.optim.Optimizer):
        assert_same(a.state_dict(), b.state_dict(), f"{path}.state_dict")
    elif isinstance(a, dict):
        assert list(a) == list(b), f"{path}: keys {list(a)} vs {list(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), f"{path}: length {len(a)} vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} vs {b!r}"


def differs(a: Any, b: Any) -> bool:
    try:
        assert_same(a, b)
    except AssertionError:
        return True
    return False


@pytest.mark.parametrize(("name", "rep_grad"), CASES, ids=IDS)
def test_state_survives_a_checkpoint_bit_for_bit(name, rep_grad):
    model, method = trained(name, rep_grad)
    restored = build(name, rep_grad)
    restored.load_state_dict(round_trip(method.state_dict()))
    assert_same(snapshot(restored), snapshot(method))
    # the next step: the same weights and the same gradient on every parameter, model's and method's
    twin = Tiny()
    twin.load_state_dict(model.state_dict())
    for m in (model, twin, method, restored):
        m.zero_grad(set_to_none=True)
    weights = take_step(model, method, STEPS, rep_grad)
    assert_same(take_step(twin, restored, STEPS, rep_grad), weights)
    for (k, p), q in zip([*model.named_parameters(), *method.named_parameters()],
                         [*twin.parameters(), *restored.parameters()], strict=True):
        assert_same(q.grad, p.grad, k)
    assert_same(snapshot(restored), snapshot(method))


@pytest.mark.parametrize("name", NAMES)
def test_every_saved_item_is_trained_and_its_loss_is_caught(name):
    # each parameter, buffer and listed attribute put back to a fresh instance's value (the person's
    # weights to the defaults), one at a time: the restored method then differs from the trained
    # one, so the steps above exercised that item and the comparison would see it lost
    _, method = trained(name)
    saved, fresh = round_trip(method.state_dict()), build(name, weights=None).state_dict()
    items = [(k, None) for k in saved if k != "_extra_state"] + [("_extra_state", n) for n in saved["_extra_state"]]
    for key, attr in items:
        state = dict(saved)
        if attr is not None:
            state[key] = {**saved[key], attr: fresh[key][attr]}
        elif key in fresh:
            state[key] = fresh[key]
        else:  # a buffer not set yet on a fresh instance
            del state[key]
        restored = build(name)
        restored.load_state_dict(state)
        assert differs(snapshot(restored), snapshot(method)), f"{name}: {attr or key} is the same as a fresh one's"


BASE_CLASSES = {c for c in vars(base).values() if isinstance(c, type) and issubclass(c, Weighting)}
HOOKS = ("fuse", "combine_grads", "combine_multi")
# the base's, never a method's: how the state is saved and moved, and how a step is dispatched
BASE_ONLY = ("combine", "_combine", "state_dict", "load_state_dict", "to", "parameters", "get_extra_state",
             "set_extra_state", "_load_from_state_dict", "_apply")


@pytest.mark.parametrize("name", NAMES)
def test_a_method_implements_one_hook_and_no_state_handling(name):
    own = [c for c in WEIGHTINGS.get(name).__mro__ if issubclass(c, Weighting) and c not in BASE_CLASSES]
    written = {attr for c in own for attr in vars(c)}
    assert not written & set(BASE_ONLY), f"{name} writes {sorted(written & set(BASE_ONLY))} itself"
    assert len(written & set(HOOKS)) == 1, f"{name} implements {sorted(written & set(HOOKS))}"
    assert not hasattr(WEIGHTINGS.get(name), "loss_scale")  # the trainer's scale comes in the step's context


LEGACY = torch.load(Path(__file__).with_name("data") / "legacy_states.pt", weights_only=True)


@pytest.mark.parametrize("name", sorted(LEGACY))
def test_a_checkpoint_of_the_format_before_loads(name):
    # written by the code before methods were modules, after the same steps (make_legacy_states.py)
    restored = build(name)
    restored.load_state_dict(LEGACY[name])
    assert_same(snapshot(restored), snapshot(trained(name)[1]))


def test_state_that_a_method_does_not_keep_is_refused():
    method = build("dwa")
    state = method.state_dict()
    state["_extra_state"]["no_such_thing"] = 1
    with pytest.raises(ValueError, match="no_such_thing"):
        method.load_state_dict(state)


@pytest.mark.parametrize("name", NAMES)
def test_to_moves_parameters_in_place_and_an_own_optimisers_moments_with_them(name):
    # float64 stands in for a device (these tests run on the CPU): the trainer hands the method's
    # parameters to its optimiser, and a method's own optimiser holds its, so they must stay the
    # same objects, and the moments must follow them
    model, method = trained(name)
    before = list(method.parameters())
    method.to(torch.float64)
    assert all(p is q and p.dtype == torch.float64 for p, q in zip(method.parameters(), before, strict=True))
    assert all(b.dtype == torch.float64 for b in method.buffers() if b.is_floating_point())
    for opt in (v for v in vars(method).values() if isinstance(v, torch.optim.Optimizer)):
        assert all(p is q for p, q in zip(opt.param_groups[0]["params"], method.parameters()))
        moments = [v for s in opt.state.values() for k, v in s.items() if k != "step"]
        assert moments and all(m.dtype == torch.float64 for m in moments)
    weights = take_step(model, method, STEPS, False)
    assert all(torch.isfinite(torch.tensor(w)) for w in weights.values())
