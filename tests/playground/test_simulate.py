"""The playground steps the registry's methods as a run trains with them: every method's path
equals the one its ``combine`` gives on a two-parameter model with torch's Adam (the trainer's
loop, one start at a time), whichever way the playground steps it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mtl_core.errors import ConfigError
from mtl_core.playground import analysis
from mtl_core.playground.problems import get_problem
from mtl_core.playground.simulate import Simulation
from mtl_core.weighting import WEIGHTINGS, build_weighting
from mtl_core.weighting.base import StepContext

STEPS = 12


def trainer_path(problem, name, start, lr, steps, optimizer="adam"):
    """One start as the trainer steps a model: ``combine`` on the losses, then the optimiser over the
    parameters and the method's own learnable ones. Returns the positions and the reported weights."""
    x = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    method = build_weighting(name, list(problem.tasks)).double()
    own = [p for p in method.parameters() if p.requires_grad]
    opt = (torch.optim.Adam if optimizer == "adam" else torch.optim.SGD)([x, *own], lr=lr)
    out, weights = [x.detach().numpy().copy()], []
    for n in range(steps):
        opt.zero_grad()
        values = problem.losses(x[None])[0]
        got = method.combine({t: values[i] for i, t in enumerate(problem.tasks)}, [x], StepContext(step=n))
        weights.append([got[t] for t in problem.tasks])
        opt.step()
        out.append(x.detach().numpy().copy())
    return np.array(out), np.array(weights)


def trainer_paths_sharing_draws(problem, name, starts, lr, steps):
    """Every start as the trainer steps it, the runs in lockstep with their random numbers drawn from
    one stream, each step start by start (how a batched form draws them: as ``S`` calls in a row)."""
    xs = [torch.tensor(start, dtype=torch.float64, requires_grad=True) for start in starts]
    methods = [build_weighting(name, list(problem.tasks)).double() for _ in starts]
    opts = [torch.optim.Adam([x], lr=lr) for x in xs]
    out = [[x.detach().numpy().copy()] for x in xs]
    stream = methods[0].generator.get_state()
    for n in range(steps):
        for x, method, opt, path in zip(xs, methods, opts, out):
            opt.zero_grad()
            method.generator.set_state(stream)
            values = problem.losses(x[None])[0]
            method.combine({t: values[i] for i, t in enumerate(problem.tasks)}, [x], StepContext(step=n))
            stream = method.generator.get_state()
            opt.step()
            path.append(x.detach().numpy().copy())
    return [np.array(path) for path in out]


@pytest.mark.parametrize("name", WEIGHTINGS.available())
@pytest.mark.parametrize("problem_name", ["three_bowls", "convex_quadratic_form"])
def test_every_method_s_path_is_the_one_its_combine_trains(name, problem_name):
    problem = get_problem(problem_name)
    starts = problem.default_starts[:2]
    sim = Simulation(problem, [name], starts=starts, lr=0.05, steps=STEPS, optimizer="adam")
    paths = sim.run()
    shared = name in sim.batched and hasattr(sim.instances[name], "generator")  # one stream for every start
    wanted = trainer_paths_sharing_draws(problem, name, starts, 0.05, STEPS) if shared else None
    for i, start in enumerate(starts):
        if shared:
            want = wanted[i]
        else:
            want, want_w = trainer_path(problem, name, start, 0.05, STEPS)
            # the weights the run would log: IMTL's scaled by its learnt exp(s_t), a multiplier's by its weight
            np.testing.assert_allclose(paths.weights[0, i], want_w, rtol=1e-4, atol=1e-5, err_msg=f"{name} start {i}")
        # the trainer's combine works in float32 (it casts the per-task gradients): agree to its precision
        np.testing.assert_allclose(paths.positions[0, i], want, rtol=1e-4, atol=1e-4, err_msg=f"{name} start {i}")


def test_every_registered_method_steps_every_start_at_once():
    sim = Simulation(get_problem("cagrad_toy"), WEIGHTINGS.available(), steps=1)
    assert sim.batched == WEIGHTINGS.available() and not sim.runs


# deterministic, and with each kind of batched hook: learnable parameters (UW, IMTL), an own prepare
# (IMTL, DB-MTL), state across steps (DB-MTL, GradNorm), the shared layer read (GradNorm), a solver
@pytest.mark.parametrize("name", ["mgda", "uw", "imtl", "db_mtl", "gradnorm", "fairgrad"])
def test_a_method_without_a_batched_form_steps_through_combine_to_the_same_path(name, monkeypatch):
    from mtl_core.playground import simulate

    problem = get_problem("cagrad_toy")
    # not from (0, 0): on the toy's mirror line, where Adam turns a round-off-sized sideways gradient
    # (float64 here, the trainer's float32 there) into a step of its own
    starts = problem.starts["CAGrad paper's three"]
    batched = Simulation(problem, [name], starts=starts, steps=40).run()
    monkeypatch.setattr(simulate, "uses_batched_form", lambda method: False)
    sim = Simulation(problem, [name], starts=starts, steps=40)
    assert not sim.batched and len(sim.runs[name]) == len(starts)
    looped = sim.run()
    np.testing.assert_allclose(looped.positions, batched.positions, rtol=1e-4, atol=1e-4)
    # (the looped runs' combine casts the gradients to float32; DB-MTL's weights, ratios of norms, to 1e-4)
    np.testing.assert_allclose(looped.weights, batched.weights, rtol=1e-3, atol=1e-5)


def test_a_loss_scale_turns_ew_s_update_but_not_imtl_g_s_direction():
    problem = get_problem("convex_quadratic_form")
    plain = Simulation(problem, ["ew", "imtl_g"], steps=1, optimizer="sgd", lr=0.01).run()
    scaled = Simulation(problem, ["ew", "imtl_g"], steps=1, optimizer="sgd", lr=0.01, scales=[10.0, 1.0]).run()

    def cos(a, b):
        return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)

    assert cos(plain.updates[0, :, 0], scaled.updates[0, :, 0]).min() < 0.99  # EW follows the bigger loss
    # IMTL-G: equal projections on the unit gradients, whatever their lengths: the same direction
    np.testing.assert_allclose(cos(plain.updates[1, :, 0], scaled.updates[1, :, 0]), 1.0, atol=1e-9)


def test_paths_start_at_the_starts_and_ew_reports_weight_one():
    problem = get_problem("three_bowls")
    paths = Simulation(problem, ["ew", "mgda"], steps=5).run()
    assert paths.positions.shape == (2, 5, 6, 2) and paths.weights.shape == (2, 5, 5, 3)
    np.testing.assert_array_equal(paths.positions[:, :, 0], np.broadcast_to(paths.starts, (2, 5, 2)))
    assert (paths.weights[0] == 1).all()
    np.testing.assert_allclose(paths.weights[1].sum(-1), 1.0)  # MGDA: simplex weights


def test_a_method_that_takes_the_log_of_negative_losses_is_reported_diverged():
    problem = get_problem("cagrad_toy")  # losses reach about -20
    paths = Simulation(problem, ["famo", "ew"], steps=300).run()
    rows = analysis.endpoints(problem, paths, analysis.reference(problem))
    famo = [r for r in rows if r["method"] == "famo"]
    assert any(r["diverged"] for r in famo) and not any(r["diverged"] for r in rows if r["method"] == "ew")


@pytest.mark.parametrize("kwargs, field", [
    ({"methods": []}, "playground.methods"), ({"methods": ["nope"]}, "playground.methods"),
    ({"lr": -1.0}, "playground.lr"), ({"steps": 0}, "playground.steps"),
    ({"starts": [(0, 0)] * 13}, "playground.starts"), ({"optimizer": "lbfgs"}, "playground.optimizer"),
    ({"scales": [1.0]}, "playground.scales"), ({"scales": [1.0, -1.0]}, "playground.scales"),
])
def test_bad_settings_are_refused_naming_the_field(kwargs, field):
    args = {"methods": ["ew"], **kwargs}
    with pytest.raises(ConfigError) as err:
        Simulation(get_problem("cagrad_toy"), args.pop("methods"), **args)
    assert err.value.field == field


def test_paths_grow_chunk_by_chunk_to_the_same_end():
    problem = get_problem("three_bowls")
    whole = Simulation(problem, ["mgda", "uw"], steps=60).run()
    sim = Simulation(problem, ["mgda", "uw"], steps=60)
    for n in (1, 10, 60):
        assert sim.advance(n - sim.done) == n and sim.paths().steps == n
    np.testing.assert_array_equal(sim.paths().positions, whole.positions)
