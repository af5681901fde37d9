"""Launching and steering a study: its planned runs become ordinary runs of the RunManager's queue.

A study's plan (:func:`mtl_core.studies.spec.expand`) is recorded first, so that whatever
happens next (a closed browser, a killed process, a restarted machine) :meth:`StudyRunner.carry_on`
can pick it up: a planned run served by a finished run is done; one whose run is alive is left
to it; one whose run stopped, failed or was interrupted resumes from its last checkpoint, or
starts anew without one; one with no run yet starts, unless it is a baseline that a finished run
of the same config (an earlier study's) already answers. No finished run is ever trained again.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

from mtl_core.errors import ConfigError
from mtl_core.runs.manager import RunManager
from mtl_core.store import postgres
from mtl_core.store.liveness import HEARTBEAT_SECONDS, HEARTBEAT_STALE_S, Heartbeat, host_and_pid
from mtl_core.store.status import ACTIVE, RESUMABLE, RunStatus
from mtl_core.studies.search import SearchDriver, parse_search
from mtl_core.studies.spec import Planned, StudySpec, expand, plan_trial, planned_runs
from mtl_core.studies.store import StudyStore, level_key, plan_counts, trials_asked
from mtl_core.tasks import task_meta
from mtl_core.training.validation import resolve_tasks

_SEARCHES: dict[tuple[str, str], tuple[Any, threading.Thread]] = {}
_SEARCHES_LOCK = threading.Lock()


def search_owner(study_id: str) -> str:
    """The owner row a running search keeps beating in the store."""
    return f"search:{study_id}"


def plan_rows(planned: list[Planned]) -> list[dict[str, Any]]:
    return [{"key": p.key, "role": p.role, "level": p.level, "seed": p.seed, "task": p.task} for p in planned]


class StudyRunner:
    """Start, carry on, pause, resume, stop and extend studies through one RunManager."""

    def __init__(self, manager: RunManager) -> None:
        self.manager = manager
        self.studies = StudyStore(manager.store)
        # one search thread per study in this process, whichever runner started it (a page makes a
        # runner at each rerun): (runs directory, study) -> (SearchDriver, its thread)
        self._searches = _SEARCHES
        self._lock = _SEARCHES_LOCK

    # -- starting ----------------------------------------------------------------------
    def start(self, spec: StudySpec) -> str:
        """Check and expand ``spec`` (a ConfigError naming the factor and value before any run
        exists), record the study, and queue its runs; returns the study's id."""
        planned = expand(spec)
        study_id = self.studies.create(spec.name, spec.to_dict(), plan_rows(planned))
        self._launch(study_id, planned)
        if spec.search:
            self._search(study_id, spec)
        return study_id

    def carry_on(self, study_id: str) -> dict[str, int]:
        """Pick the study up where it is (after a restart, a stop, a failure): returns how many
        planned runs were already done, left running, resumed, started and reused."""
        study = self.studies.require(study_id)
        spec = StudySpec.from_dict(study["spec"])
        self.studies.set_state(study_id, "active")
        counts = self._launch(study_id, planned_runs(spec, self.studies.plan(study_id)))
        if spec.search:
            self._search(study_id, spec)
        return counts

    def extend(self, study_id: str, seeds: int) -> int:
        """More seeds (1..``seeds``) for every level and baseline; returns how many runs were added."""
        study = self.studies.require(study_id)
        spec = StudySpec.from_dict(study["spec"])
        if spec.search:
            raise ConfigError("seeds", "a search study is extended with more trials, not seeds; start a new study")
        if seeds <= len(spec.seed_list()):
            raise ConfigError("seeds", f"the study already has {len(spec.seed_list())} seeds; ask for more than that")
        spec = dataclasses.replace(spec, seeds=int(seeds))
        planned = expand(spec)
        added = self.studies.extend(study_id, spec.to_dict(), plan_rows(planned))
        self.studies.set_state(study_id, "active")
        self._launch(study_id, planned)
        return added

    def _launch(self, study_id: str, planned: list[Planned]) -> dict[str, int]:
        by_key = {row["key"]: row for row in self.studies.plan(study_id)}
        counts = {"done": 0, "running": 0, "resumed": 0, "started": 0, "reused": 0}
        for p in planned:
            row = by_key.get(p.key)
            if row is None:
                continue
            run = row["run"]
            if run is not None and run["status"] == RunStatus.FINISHED:
                counts["done"] += 1
            elif run is not None and run["status"] in ACTIVE and self.manager.is_active(run["id"]):
                counts["running"] += 1
            elif run is not None and run["status"] in RESUMABLE and self.manager.store.latest_checkpoint(run["id"]):
                self.manager.resume_run(run["id"])
                counts["resumed"] += 1
            elif p.role == "baseline" and (done := self.studies.finished_run_with_key(p.key)) is not None:
                self.studies.attach(study_id, p.key, done["id"])
                counts["reused"] += 1
            else:
                self._start_one(study_id, p)
                counts["started"] += 1
        return counts

    def _start_one(self, study_id: str, p: Planned) -> str:
        tags = {"study": study_id, "role": p.role, "level": p.level, "seed": p.seed, "task": p.task, "label": p.label}
        run_id = self.manager.start(p.config, source="study", plan_key=p.key, tags=tags)
        self.studies.attach(study_id, p.key, run_id)
        return run_id

    # -- search ------------------------------------------------------------------------
    def _search(self, study_id: str, spec: StudySpec) -> None:
        """Run the study's Optuna search in a thread of its own: finished trials are replayed,
        trials in flight waited for, new ones asked until the spec's number of trials."""
        with self._lock:
            running = self._searches.get(self._search_key(study_id))
            if running is not None and running[1].is_alive():
                return
        store = self.manager.store
        owner = search_owner(study_id)
        elsewhere = next((o for o in store.owners() if o["id"] == owner), None)
        if elsewhere is not None and time.time() - float(elsewhere["heartbeat"] or 0) < HEARTBEAT_STALE_S:
            raise ConfigError("study", f"study {study_id}'s search is going on in another process (host "
                              f"{elsewhere['host']}, pid {elsewhere['pid']}); carry it on there, or stop it first")
        seeds = spec.seed_list()
        base = spec.base_config()
        trials, dims = parse_search(spec.search, spec.max_runs, len(seeds), 0)
        meta = task_meta(base.tasks, resolve_tasks(base).task_specs)
        directions = ["maximize" if meta[t]["higher_is_better"] else "minimize" for t in base.tasks]

        def objectives(run_ids: list[str]) -> list[float] | None:
            runs = [store.get_run(r) for r in run_ids]
            if any(r is None or r["status"] != RunStatus.FINISHED for r in runs):
                return None
            values = []
            for t in base.tasks:  # the validation metric of the final model: chosen on validation, never test
                per_run = [rows[-1][3] for r in run_ids
                           if (rows := store.metrics(r, split="val", key=f"{t}/{meta[t]['primary']}"))]
                if len(per_run) != len(run_ids) or any(v is None for v in per_run):
                    return None
                values.append(sum(per_run) / len(per_run))
            return values

        def train(level: dict) -> list[str]:
            plans = [plan_trial(spec, level, s) for s in seeds]
            self.studies.extend(study_id, spec.to_dict(), plan_rows(plans))
            return [self._start_one(study_id, p) for p in plans]

        def wait(run_ids: list[str]) -> None:
            for r in run_ids:
                self.manager.wait(r)

        storage = postgres.optuna_storage_url(store._conn(), store.url) if store.url else None
        driver = SearchDriver(spec.search, dims, directions, trials, train, wait, objectives,
                              batch=self.manager.max_concurrent, storage=storage, study_name=study_id)
        by_level: dict[str, tuple[dict, list[str]]] = {}
        for row in self.studies.plan(study_id):
            if row["role"] == "trial" and row["run_id"]:
                level, ids = by_level.setdefault(level_key(row["level"]), (row["level"], []))
                ids.append(row["run_id"])
        finished, pending = [], []
        for level, ids in by_level.values():
            statuses = [store.get_run(r)["status"] for r in ids]
            if all(s in (RunStatus.FINISHED, RunStatus.FAILED) for s in statuses):
                finished.append((level, objectives(ids)))
            else:
                pending.append((level, ids))
        driver.replay(finished)
        host, pid = host_and_pid()
        store.register_owner(owner, host, pid)  # another process sees the search is alive, and does not start a second

        def search() -> None:
            beat = Heartbeat(lambda: store.owner_heartbeat(owner), HEARTBEAT_SECONDS, name=f"beat-{owner}").start()
            try:
                driver.run(pending)
            finally:
                beat.stop()
                store.remove_owner(owner)

        thread = threading.Thread(target=search, name=f"search-{study_id}", daemon=True)
        with self._lock:
            self._searches[self._search_key(study_id)] = (driver, thread)
        thread.start()

    def _search_key(self, study_id: str) -> tuple[str, str]:
        return str(self.manager.store.root.resolve()), study_id

    def searching(self, study_id: str) -> bool:
        """Whether the study's search is still asking for trials, here or in another process."""
        with self._lock:
            running = self._searches.get(self._search_key(study_id))
        if running is not None and running[1].is_alive():
            return True
        row = next((o for o in self.manager.store.owners() if o["id"] == search_owner(study_id)), None)
        return row is not None and time.time() - float(row["heartbeat"] or 0) < HEARTBEAT_STALE_S

    # -- steering ----------------------------------------------------------------------
    def _active_runs(self, study_id: str) -> list[str]:
        return [row["run_id"] for row in self.studies.plan(study_id)
                if row["run"] is not None and row["run"]["status"] in ACTIVE]

    def _each_active(self, study_id: str, command) -> None:
        """``command(run_id)`` for every queued or training run of the study."""
        for run_id in self._active_runs(study_id):
            try:
                command(run_id)
            except ConfigError:  # it ended meanwhile
                pass

    def pause(self, study_id: str) -> None:
        self.studies.require(study_id)
        self._each_active(study_id, self.manager.pause)
        self.studies.set_state(study_id, "paused")

    def resume(self, study_id: str) -> None:
        self.studies.require(study_id)
        self._each_active(study_id, self.manager.resume)
        self.studies.set_state(study_id, "active")

    def stop(self, study_id: str) -> None:
        """Stop every run of the study (each saves a checkpoint; :meth:`carry_on` resumes them)."""
        self.studies.require(study_id)
        stop_run = self.manager.stop  # a manager that may not stop runs refuses here, before the search is told
        with self._lock:
            running = self._searches.get(self._search_key(study_id))
        if running is not None:
            running[0].stop_event.set()  # ask for no more trials
        self._each_active(study_id, stop_run)
        self.studies.set_state(study_id, "stopped")

    def orphaned(self, study_id: str) -> set[str]:
        """The study's runs whose trainer was lost (status interrupted: not stopped, not failed)."""
        return {row["run_id"] for row in self.studies.plan(study_id)
                if row["run"] is not None and row["run"]["status"] == RunStatus.INTERRUPTED}

    def progress(self, study_id: str) -> dict[str, int]:
        """How many planned runs are in each status (``planned``: no run yet) and in all."""
        plan = self.studies.plan(study_id)
        counts = plan_counts(plan)
        study = self.studies.require(study_id)
        trials = int((study["spec"].get("search") or {}).get("trials", 0) or 0)
        if (study["state"] != "finished" and plan and counts.get(RunStatus.FINISHED, 0) == len(plan)
                and trials_asked(plan) >= trials and not self.searching(study_id)):
            self.studies.set_state(study_id, "finished")  # the last run of the study has just ended well
        return counts

    def wait(self, study_id: str, timeout: float | None = None) -> dict[str, int]:
        """Block until no run of the study is queued or training here, and its search (if any)
        has asked for its last trial (tests, CLI)."""
        with self._lock:
            running = self._searches.get(self._search_key(study_id))
        if running is not None:
            running[1].join(timeout)
        for row in self.studies.plan(study_id):
            if row["run_id"]:
                self.manager.wait(row["run_id"], timeout)
        return self.progress(study_id)
