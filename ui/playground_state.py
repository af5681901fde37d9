"""The playground's state as it lives in the URL, read and written without Streamlit (tested as
plain functions), so a link reproduces what a student saw:

``?problem=cagrad_toy&methods=ew,mgda,pcgrad,cagrad&starts=-8.5,7.5;9,9&lr=0.01&steps=1000&opt=adam&scales=1,2``

A typed problem travels as ``problem=typed&expr1=...&expr2=...&box=-5,5,-5,5``. Each piece that
does not parse, or names what does not exist, is reported and falls back to its default, so a
damaged link still opens the playground.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mtl_core.playground.problems import PROBLEMS, Problem, get_problem, typed_problem
from mtl_core.playground.simulate import MAX_STARTS, OPTIMIZERS

DEFAULT_METHODS = ("ew", "mgda", "pcgrad", "cagrad")
TYPED = "typed"
DEFAULT_EXPRESSIONS = ("(x - 2)**2 + 0.5*y**2", "(x + 2)**2 + 2*(y - 1)**2")
PAGE_MAX_STEPS = 100_000
DEFAULT_BOX = (-5.0, 5.0, -5.0, 5.0)


@dataclass
class PlaygroundState:
    problem: str = "cagrad_toy"
    methods: tuple[str, ...] = DEFAULT_METHODS
    starts: tuple[tuple[float, float], ...] | None = None  # None: the problem's (first) set
    lr: float | None = None  # None: the problem's paper's
    steps: int | None = None
    optimizer: str | None = None
    scales: tuple[float, ...] | None = None
    expressions: tuple[str, ...] = DEFAULT_EXPRESSIONS
    box: tuple[float, float, float, float] = DEFAULT_BOX
    step: int | None = None  # the step whose gradients are drawn as arrows
    extra: dict[str, str] = field(default_factory=dict)

    def params(self) -> dict[str, str]:
        """The query parameters that hold this state (only what differs from the defaults)."""
        out = {"problem": self.problem}
        if tuple(self.methods) != DEFAULT_METHODS:
            out["methods"] = ",".join(self.methods)
        if self.starts is not None:
            out["starts"] = ";".join(f"{_num(x)},{_num(y)}" for x, y in self.starts)
        for key, value in (("lr", self.lr), ("steps", self.steps), ("opt", self.optimizer), ("step", self.step)):
            if value is not None:
                out[key] = _num(value) if not isinstance(value, str) else value
        if self.scales is not None:
            out["scales"] = ",".join(_num(v) for v in self.scales)
        if self.problem == TYPED:
            for i, e in enumerate(self.expressions):
                out[f"expr{i + 1}"] = e
            if tuple(self.box) != DEFAULT_BOX:
                out["box"] = ",".join(_num(v) for v in self.box)
        return out

    def build_problem(self) -> Problem:
        if self.problem == TYPED:
            return typed_problem(self.expressions, box=self.box)
        return get_problem(self.problem)


def _num(v: float) -> str:
    return f"{float(v):g}"


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def read(params: Mapping[str, str], methods_known: Sequence[str]) -> tuple[PlaygroundState, list[str]]:
    """The state a URL's query parameters hold, and what was wrong with them (each piece that is
    wrong falls back to its default)."""
    problems: list[str] = []
    state = PlaygroundState()
    name = params.get("problem", state.problem)
    if name != TYPED and name not in PROBLEMS:
        problems.append(f"There is no problem {name!r} (problems: {', '.join(PROBLEMS.available())}, or typed); "
                        "showing CAGrad's toy.")
        name = state.problem
    state.problem = name
    if "methods" in params:
        chosen = [m.strip() for m in params["methods"].split(",") if m.strip()]
        unknown = [m for m in chosen if m not in methods_known]
        if unknown:
            problems.append(f"No such method: {', '.join(unknown)}; left out.")
        state.methods = tuple(m for m in dict.fromkeys(chosen) if m in methods_known) or DEFAULT_METHODS
    if "starts" in params:
        try:
            pts = [tuple(_floats(p)) for p in params["starts"].split(";") if p.strip()]
            if not pts or any(len(p) != 2 for p in pts) or len(pts) > MAX_STARTS:
                raise ValueError
            state.starts = tuple((float(x), float(y)) for x, y in pts)
        except ValueError:
            problems.append(f"starts={params['starts']!r} is not 1 to {MAX_STARTS} points x,y;x,y; "
                            "using the paper's starting points.")
    for key, cast, ok, what in (("lr", float, lambda v: 0 < v <= 10, "a step size between 0 and 10"),
                                ("steps", int, lambda v: 1 <= v <= PAGE_MAX_STEPS, f"1 to {PAGE_MAX_STEPS} steps"),
                                ("step", int, lambda v: v >= 0, "a step number")):
        if key in params:
            try:
                value = cast(float(params[key]))
                if not ok(value):
                    raise ValueError
                setattr(state, key, value)
            except ValueError:
                problems.append(f"{key}={params[key]!r} is not {what}; using the default.")
    if "opt" in params:
        if params["opt"] in OPTIMIZERS:
            state.optimizer = params["opt"]
        else:
            problems.append(f"opt={params['opt']!r} is not one of {', '.join(OPTIMIZERS)}; using the paper's.")
    if "scales" in params:
        try:
            scales = _floats(params["scales"])
            if not scales or any(not 0 < v <= 1000 for v in scales):
                raise ValueError
            state.scales = tuple(scales)
        except ValueError:
            problems.append(f"scales={params['scales']!r} are not positive numbers; using 1 for every task.")
    if name == TYPED:
        exprs = tuple(params[k] for k in ("expr1", "expr2", "expr3") if params.get(k, "").strip())
        state.expressions = exprs if len(exprs) >= 2 else DEFAULT_EXPRESSIONS
        if "box" in params:
            try:
                box = _floats(params["box"])
                if len(box) != 4 or not (box[0] < box[1] and box[2] < box[3]):
                    raise ValueError
                state.box = tuple(box)
            except ValueError:
                problems.append(f"box={params['box']!r} is not xmin,xmax,ymin,ymax; using {DEFAULT_BOX}.")
    return state, problems
