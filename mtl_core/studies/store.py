"""Studies in the run store: a study's spec and plan, beside the runs that serve it.

A study is a row of ``studies`` (its spec as JSON, its state) and one row of ``study_runs`` per
planned run: the planned config's key, its role (trial or baseline), factor values, seed, and the
run that serves it once one is started or reused. A run may serve several studies (a baseline an
earlier study trained on the same data, model and seed), and stays an ordinary run of the store.
"""
from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable, Mapping
from typing import Any

from mtl_core.errors import ConfigError
from mtl_core.store.ids import check_run_id
from mtl_core.store.status import RunStatus
from mtl_core.store.store import RunStore

STUDY_STATES = ("active", "paused", "stopped", "finished")


def new_study_id() -> str:
    return "study-" + time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


class StudyStore:
    """The studies of one runs directory, on top of its :class:`RunStore`."""

    def __init__(self, runs: RunStore) -> None:
        self.runs = runs

    def create(self, name: str, spec: Mapping[str, Any], plan: Iterable[Mapping[str, Any]]) -> str:
        """Record a study and its planned runs (``key, role, level, seed, task``, in order)."""
        study_id = new_study_id()
        now = time.time()
        with self.runs.transaction() as c:
            c.execute("INSERT INTO studies (id, name, spec, created, updated) VALUES (?,?,?,?,?)",
                      (study_id, name or study_id, json.dumps(dict(spec)), now, now))
            self._insert_plan(c, study_id, plan, 0)
        return study_id

    def extend(self, study_id: str, spec: Mapping[str, Any], plan: Iterable[Mapping[str, Any]]) -> int:
        """A new spec (more seeds, say) and the planned runs it adds; rows already planned stay
        as they are. Returns how many rows were added."""
        with self.runs.transaction() as c:
            start = c.execute("SELECT COALESCE(MAX(position) + 1, 0) FROM study_runs WHERE study=?",
                              (study_id,)).fetchone()[0]
            c.execute("UPDATE studies SET spec=?, updated=? WHERE id=?", (json.dumps(dict(spec)), time.time(), study_id))
            return self._insert_plan(c, study_id, plan, int(start))

    @staticmethod
    def _insert_plan(c, study_id: str, plan: Iterable[Mapping[str, Any]], start: int) -> int:
        added = 0
        for row in plan:
            cur = c.execute("INSERT INTO study_runs (study, key, role, level, seed, task, position)"
                            " VALUES (?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                            (study_id, row["key"], row["role"], json.dumps(row.get("level", {})), int(row["seed"]),
                             row.get("task", ""), start + added))
            added += cur.rowcount
        return added

    def get(self, study_id: str) -> dict[str, Any] | None:
        rows = self.runs.query("SELECT * FROM studies WHERE id=?", (study_id,))
        return _study_dict(rows[0]) if rows else None

    def require(self, study_id: str) -> dict[str, Any]:
        study = self.get(str(study_id))
        if study is None:
            known = ", ".join(s["id"] for s in self.list()[:5]) or "none yet"
            raise ConfigError("study", f"no study {study_id!r} in {self.runs.root}; studies: {known}")
        return study

    def list(self) -> list[dict[str, Any]]:
        return [_study_dict(r) for r in self.runs.query("SELECT * FROM studies ORDER BY created DESC")]

    def set_state(self, study_id: str, state: str) -> None:
        if state not in STUDY_STATES:
            raise ValueError(f"unknown study state {state!r}")
        with self.runs.transaction() as c:
            c.execute("UPDATE studies SET state=?, updated=? WHERE id=?", (state, time.time(), study_id))

    def plan(self, study_id: str) -> list[dict[str, Any]]:
        """Every planned run of the study in order, with the run serving it (``run``: the run's
        row, or None while none does)."""
        rows = self.runs.query("SELECT * FROM study_runs WHERE study=? ORDER BY position", (study_id,))
        out = []
        for r in rows:
            d = dict(r)
            d["level"] = json.loads(d["level"] or "{}")
            d["run"] = self.runs.get_run(d["run_id"]) if d["run_id"] else None
            out.append(d)
        return out

    def attach(self, study_id: str, key: str, run_id: str | None) -> None:
        """The run that serves a planned run from now on (None: none, it will be started again)."""
        if run_id is not None:
            check_run_id(run_id)
        with self.runs.transaction() as c:
            c.execute("UPDATE study_runs SET run_id=? WHERE study=? AND key=?", (run_id, study_id, key))
            c.execute("UPDATE studies SET updated=? WHERE id=?", (time.time(), study_id))

    def finished_run_with_key(self, key: str) -> dict[str, Any] | None:
        """The newest finished run whose config has this key (a baseline to reuse)."""
        rows = self.runs.query("SELECT id FROM runs WHERE plan_key=? AND status=? ORDER BY created DESC LIMIT 1",
                               (key, str(RunStatus.FINISHED)))
        return self.runs.get_run(rows[0]["id"]) if rows else None

    def studies_of_run(self, run_id: str) -> list[str]:
        return [r["study"] for r in self.runs.query("SELECT DISTINCT study FROM study_runs WHERE run_id=?", (run_id,))]


def level_key(level: Mapping[str, Any]) -> str:
    """One string per combination of factor values, whatever their order (a level's identity)."""
    return json.dumps(dict(level), sort_keys=True, default=str)


def plan_counts(plan: list[dict[str, Any]]) -> dict[str, int]:
    """How many of a study's planned runs are in each status (``planned``: no run yet), and ``total``."""
    counts: dict[str, int] = {"total": len(plan)}
    for row in plan:
        status = row["run"]["status"] if row["run"] is not None else "planned"
        counts[status] = counts.get(status, 0) + 1
    return counts


def trials_asked(plan: list[dict[str, Any]]) -> int:
    """How many trials (factor values, over their seeds) the study has: a search's grows as it asks."""
    return len({level_key(row["level"]) for row in plan if row["role"] == "trial"})


def _study_dict(row) -> dict[str, Any]:
    d = dict(row)
    d["spec"] = json.loads(d["spec"])
    return d
