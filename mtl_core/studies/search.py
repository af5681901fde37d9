"""Search instead of a grid: Optuna (Akiba, Sano, Yanase, Ohta and Koyama, "Optuna: A
Next-generation Hyperparameter Optimization Framework", KDD 2019) proposes the factor values of
each trial, with one objective per task (its primary metric on the validation split, averaged
over the trial's seeds), so a multi-objective sampler such as NSGA-II (Deb, Pratap, Agarwal and
Meyarivan, IEEE TEC 2002) searches for the Pareto set of the tasks' trade-off.

A spec's ``search`` is ``{"trials": N, "space": {factor: range or list}, "sampler": "nsga2" |
"tpe" | "random", "seed": 0, "batch": k}``: a factor as in a grid (``weighting.weights.<task>``,
``optim.lr``, ``weighting.params.<name>``, ``weighting.method`` ...), ``{"log": [lo, hi]}`` or
``{"linear": [lo, hi]}`` for a continuous one, a list for a categorical one. Trials are ordinary
runs of the study; ``batch`` trials are asked at once (default: as many as train side by side).

Models are chosen on validation only: the objectives are validation metrics; the study's table
still reports the test split of each trial's final model. Nothing is stored by Optuna itself:
carrying a study on replays its finished trials into a fresh Optuna study, so the search goes on
where it was after any restart.
"""
from __future__ import annotations

import copy
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mtl_core.config import ExperimentConfig
from mtl_core.errors import ConfigError
from mtl_core.studies.factors import config_fields, show

SAMPLERS = ("nsga2", "tpe", "random")
SEARCH_KEYS = ("trials", "space", "sampler", "seed", "batch")


@dataclass(frozen=True)
class Dimension:
    path: str
    kind: str  # "float", "int" or "categorical"
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: tuple = ()


def parse_search(search: dict, max_runs: int, n_seeds: int, n_baselines: int) -> tuple[int, list[Dimension]]:
    """``(trials, dimensions)`` of a spec's ``search``, or a ConfigError naming the key or factor."""
    if not isinstance(search, dict):
        raise ConfigError("search", f"expected an object with keys {', '.join(SEARCH_KEYS)}, got {type(search).__name__}")
    unknown = [k for k in search if k not in SEARCH_KEYS]
    if unknown:
        raise ConfigError(f"search.{unknown[0]}", f"unknown key; allowed keys: {', '.join(SEARCH_KEYS)}")
    trials = search.get("trials")
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ConfigError("search.trials", f"expected a positive number of trials, got {trials!r}")
    if search.get("sampler", "nsga2") not in SAMPLERS:
        raise ConfigError("search.sampler", f"{search.get('sampler')!r} is not a sampler; choose one of: {', '.join(SAMPLERS)}")
    runs = trials * n_seeds + n_baselines
    if runs > max_runs:
        raise ConfigError("max_runs", f"this search has {trials} trials x {n_seeds} seeds + {n_baselines} baselines = "
                          f"{runs} runs, more than the limit of {max_runs}; ask for fewer trials or seeds")
    space = search.get("space")
    if not isinstance(space, dict) or not space:
        raise ConfigError("search.space", 'expected an object of factor: range, e.g. {"optim.lr": {"log": [1e-4, 1e-2]}}')
    fields = config_fields_by_path()
    dims = []
    for path, raw in space.items():
        where = f"search.space.{path}"
        if path.startswith(("weighting.weights.", "weighting.params.")):
            tp: Any = float
        elif path in fields and fields[path] in (int, float, str, bool):
            tp = fields[path]
        else:
            raise ConfigError(where, f"{path} is not a config field to search; search a numeric field (optim.lr), a "
                              "task's weight (weighting.weights.<task>), a method's hyperparameter "
                              "(weighting.params.<name>), or list the choices of a categorical one")
        if isinstance(raw, list):
            if not raw:
                raise ConfigError(where, "no choices; list at least one")
            dims.append(Dimension(path, "categorical", choices=tuple(raw)))
            continue
        if tp not in (int, float) or not isinstance(raw, dict) or len(raw) != 1 or next(iter(raw)) not in ("log", "linear"):
            raise ConfigError(where, f'expected {{"log": [lo, hi]}} or {{"linear": [lo, hi]}} for a numeric factor, or a '
                              f"list of choices, got {show(raw)}")
        scale, ends = next(iter(raw.items()))
        if not (isinstance(ends, list) and len(ends) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                                 and math.isfinite(x) for x in ends)) or not ends[0] < ends[1]:
            raise ConfigError(where, f"range {show(raw)}: needs two numbers lo < hi")
        if scale == "log" and ends[0] <= 0:
            raise ConfigError(where, f"range {show(raw)}: a log range needs lo > 0")
        dims.append(Dimension(path, "int" if tp is int else "float", float(ends[0]), float(ends[1]), scale == "log"))
    return trials, dims


def config_fields_by_path() -> dict[str, Any]:
    return config_fields(ExperimentConfig)


def distributions(dims: list[Dimension]) -> dict[str, Any]:
    import optuna

    out: dict[str, Any] = {}
    for d in dims:
        if d.kind == "categorical":
            out[d.path] = optuna.distributions.CategoricalDistribution(list(d.choices))
        elif d.kind == "int":
            out[d.path] = optuna.distributions.IntDistribution(int(d.low), int(d.high), log=d.log)
        else:
            out[d.path] = optuna.distributions.FloatDistribution(d.low, d.high, log=d.log)
    return out


def sampler(name: str, seed: int):
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.NSGAIISampler(seed=seed)


class SearchDriver:
    """Asks Optuna for trials, has the study's runner train them, tells it their objectives.

    ``train(level) -> list of run ids`` queues a trial's runs (one per seed);
    ``objectives(run_ids) -> list of values or None`` reads them back once they ended (None: a
    failed trial); ``wait(run_ids)`` blocks until they end. ``done`` lists the trials already
    finished (levels and their objectives), replayed into Optuna first.
    """

    def __init__(self, spec_search: dict, dims: list[Dimension], directions: list[str], trials: int,
                 train: Callable[[dict], list[str]], wait: Callable[[list[str]], None],
                 objectives: Callable[[list[str]], list[float] | None], batch: int = 1,
                 storage: str | None = None, study_name: str | None = None) -> None:
        """``storage``: an SQLAlchemy URL for Optuna's RDB storage (the run store's PostgreSQL
        database), so the trials are kept where every worker and dashboard reads them; the run
        store stays the record a carried-on search replays from, so its Optuna study is made anew."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.dims, self.trials, self.batch = dims, int(trials), max(1, int(spec_search.get("batch") or batch))
        self.train, self._wait, self.objectives = train, wait, objectives
        self.distributions = distributions(dims)
        chosen = sampler(spec_search.get("sampler", "nsga2"), int(spec_search.get("seed", 0)))
        if storage:
            storage = optuna.storages.RDBStorage(storage, engine_kwargs={"pool_pre_ping": True})
            if study_name in {s.study_name for s in optuna.get_all_study_summaries(storage)}:
                optuna.delete_study(study_name=study_name, storage=storage)
        self.study = optuna.create_study(directions=directions, sampler=chosen, storage=storage,
                                         study_name=study_name)
        self.stop_event = threading.Event()

    def replay(self, finished: list[tuple[dict, list[float] | None]]) -> None:
        """Trials that ran before (their levels and objectives) as completed (or failed) Optuna trials."""
        import optuna

        for level, values in finished:
            params = {k: v for k, v in level.items() if k in self.distributions}
            state = optuna.trial.TrialState.COMPLETE if values is not None else optuna.trial.TrialState.FAIL
            self.study.add_trial(optuna.trial.create_trial(params=params, distributions=self.distributions,
                                                           values=values, state=state))

    def run(self, pending: list[tuple[dict, list[str]]] | None = None) -> None:
        """Finish the trials in flight (``pending``: each one's level and run ids), then ask, train
        and tell until the study has ``trials`` trials or :attr:`stop_event` is set."""
        import optuna

        for level, run_ids in pending or []:
            self._wait(run_ids)
            if self.stop_event.is_set():
                return
            self.replay([(level, self.objectives(run_ids))])
        while len(self.study.trials) < self.trials and not self.stop_event.is_set():
            asked = [self.study.ask(self.distributions) for _ in range(min(self.batch, self.trials - len(self.study.trials)))]
            started = [(t, self.train(self._level(t))) for t in asked]
            for t, run_ids in started:
                self._wait(run_ids)
                if self.stop_event.is_set():
                    return  # the runs were stopped: carrying on replays what finished, retrains the rest
                values = self.objectives(run_ids)
                self.study.tell(t, values if values is not None else None,
                                state=None if values is not None else optuna.trial.TrialState.FAIL)

    def _level(self, trial) -> dict[str, Any]:
        """A trial's factor values, floats to 6 significant digits (readable labels, within bounds)."""
        level = {}
        for d in self.dims:
            v = trial.params[d.path]
            if d.kind == "float":
                v = min(d.high, max(d.low, float(f"{v:.6g}")))
            level[d.path] = int(v) if d.kind == "int" else copy.deepcopy(v)
        return level
