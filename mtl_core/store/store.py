"""The run store: the runs' rows, the contract between training and UI (on the SQLite file or the
PostgreSQL server of :mod:`mtl_core.store.database`).

Training writes config, status, a heartbeat, per-step metrics, per-task weights, gradient
statistics, events and checkpoint paths; pages read them and send commands (pause, resume, stop,
weights) that the trainer reads each step. Every statement is parameterised (no SQL is built from
user text) and run ids are checked before they become paths.
"""
from __future__ import annotations

import json
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

from mtl_core.protocols.selection import pick_checkpoint, use_of
from mtl_core.scores import finite_or_none
from mtl_core.store.commands import Commands
from mtl_core.store.database import Database, retry_every_method
from mtl_core.store.ids import check_run_id, new_run_id
from mtl_core.store.listing import Listing
from mtl_core.store.liveness import HEARTBEAT_STALE_S, queued_reason, why_dead
from mtl_core.store.status import ACTIVE, STATUSES


class RunStore(Database, Commands, Listing):
    """Thread-safe access to the run store: ``<runs_dir>/runs.sqlite``, or the PostgreSQL database
    that ``url`` (default ``$MTL_RUNS_DB``) names; one connection per thread (see
    :class:`~mtl_core.store.database.Database`). Checkpoints are files under ``runs_dir`` either way."""

    def run_dir(self, run_id: str) -> Path:
        return self.root / check_run_id(run_id)

    # -- runs ---------------------------------------------------------------------
    def create_run(self, config: dict[str, Any], name: str = "", source: str = "dashboard",
                   total_steps: int = 0, status: str = "queued", run_id: str | None = None,
                   owner: str | None = None, plan_key: str | None = None, tags: dict[str, Any] | None = None) -> str:
        """Record a run; ``owner`` is the id of the RunManager that queued it (see
        :meth:`register_owner`): its queued runs stay queued while that owner is alive.
        ``plan_key`` identifies its config (a study finds a run to reuse by it); ``tags`` say what
        it is in a study (its study, factor values, seed)."""
        run_id = check_run_id(run_id or new_run_id())
        now = time.time()
        with self._tx() as c:
            c.execute(
                "INSERT INTO runs (id, name, status, config, created, updated, total_steps, source, owner, plan_key,"
                " tags) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (run_id, name or run_id, status, json.dumps(config), now, now, int(total_steps), source, owner,
                 plan_key, json.dumps(tags or {})),
            )
        self.run_dir(run_id).mkdir(parents=True, exist_ok=True)
        return run_id

    def set_status(self, run_id: str, status: str, error: str | None = None, traceback: str | None = None) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        now = time.time()
        with self._tx() as c:
            c.execute(
                # a run queued or started again (a resume) forgets why it ended before
                "UPDATE runs SET status=?, updated=?,"
                " error=CASE WHEN ? IN ('queued','running') THEN ? ELSE COALESCE(?, error) END,"
                " traceback=CASE WHEN ? IN ('queued','running') THEN ? ELSE COALESCE(?, traceback) END,"
                " started=CASE WHEN ?='running' AND started IS NULL THEN ? ELSE started END,"
                " finished=CASE WHEN ? IN ('finished','failed','stopped','interrupted') THEN ? ELSE NULL END WHERE id=?",
                (status, now, status, error, error, status, traceback, traceback, status, now, status, now, run_id),
            )

    def update_progress(self, run_id: str, step: int, info: dict[str, Any] | None = None,
                        device: str | None = None) -> None:
        with self._tx() as c:
            c.execute(
                "UPDATE runs SET step=?, updated=?, info=COALESCE(?, info), device=COALESCE(?, device) WHERE id=?",
                (int(step), time.time(), json.dumps(info) if info is not None else None, device, run_id),
            )

    def heartbeat(self, run_id: str, host: str | None = None, pid: int | None = None) -> None:
        """The run's trainer is alive now (call it every HEARTBEAT_SECONDS while running or
        paused); ``host`` and ``pid`` say where it trains, when given."""
        with self._tx() as c:
            c.execute("UPDATE runs SET heartbeat=?, host=COALESCE(?, host), pid=COALESCE(?, pid) WHERE id=?",
                      (time.time(), host, None if pid is None else int(pid), run_id))

    def set_owner(self, run_id: str, owner: str | None) -> None:
        with self._tx() as c:
            c.execute("UPDATE runs SET owner=? WHERE id=?", (owner, run_id))

    def rename(self, run_id: str, name: str) -> None:
        with self._tx() as c:
            c.execute("UPDATE runs SET name=? WHERE id=?", (name[:200], run_id))

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        row = self._conn().execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        return _run_dict(row) if row else None

    def list_runs(self, limit: int | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM runs ORDER BY created DESC"
        rows = self._conn().execute(sql + (" LIMIT ?" if limit else ""), (limit,) if limit else ()).fetchall()
        return [_run_dict(r) for r in rows]

    def delete_run(self, run_id: str) -> None:
        """Remove the run's rows and its directory, and nothing else."""
        check_run_id(run_id)
        with self._tx() as c:
            c.execute("DELETE FROM metrics WHERE run_id=?", (run_id,))
            c.execute("DELETE FROM events WHERE run_id=?", (run_id,))
            c.execute("DELETE FROM checkpoints WHERE run_id=?", (run_id,))
            c.execute("DELETE FROM commands WHERE run_id=?", (run_id,))
            c.execute("UPDATE study_runs SET run_id=NULL WHERE run_id=?", (run_id,))  # a study plans it again
            c.execute("DELETE FROM runs WHERE id=?", (run_id,))
        d = self.run_dir(run_id)
        if d.is_dir() and d.resolve().parent == self.root.resolve():
            shutil.rmtree(d, ignore_errors=True)

    # -- liveness -----------------------------------------------------------------
    def register_owner(self, owner_id: str, host: str, pid: int) -> None:
        """A RunManager announces itself (and then calls :meth:`owner_heartbeat` every
        HEARTBEAT_SECONDS): the runs it queues are left alone while it is alive."""
        with self._tx() as c:
            c.execute("INSERT INTO owners (id, host, pid, heartbeat) VALUES (?,?,?,?) ON CONFLICT(id) DO UPDATE"
                      " SET host=excluded.host, pid=excluded.pid, heartbeat=excluded.heartbeat",
                      (owner_id, host, int(pid), time.time()))

    def owner_heartbeat(self, owner_id: str) -> None:
        with self._tx() as c:
            c.execute("UPDATE owners SET heartbeat=? WHERE id=?", (time.time(), owner_id))

    def remove_owner(self, owner_id: str) -> None:
        with self._tx() as c:
            c.execute("DELETE FROM owners WHERE id=?", (owner_id,))

    def owners(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._conn().execute("SELECT id, host, pid, heartbeat FROM owners ORDER BY id")]

    def run_alive(self, run: str | dict[str, Any], stale_after: float = HEARTBEAT_STALE_S) -> bool:
        """Whether a queued, running or paused run is still looked after by someone: the rules
        of :meth:`mark_interrupted`. A run that has ended is not alive."""
        row = self.get_run(run) if isinstance(run, str) else run
        if row is None or row["status"] not in ACTIVE:
            return False
        return why_dead(row, self._owner_row(row.get("owner")), time.time(), stale_after) is None

    def _owner_row(self, owner: str | None) -> dict[str, Any] | None:
        if owner is None:
            return None
        row = self._conn().execute("SELECT id, host, pid, heartbeat FROM owners WHERE id=?", (owner,)).fetchone()
        return dict(row) if row else None

    def mark_interrupted(self, stale_after: float = HEARTBEAT_STALE_S, owner: str | None = None) -> list[str]:
        """Runs nobody looks after any more become 'interrupted'; returns their ids.

        - running or paused: not heard from (heartbeat, or status/progress write, whichever is
          later; rows from before heartbeats have only the latter) for ``stale_after`` seconds;
        - queued: its owner (the RunManager that queued it) is not registered or its heartbeat is
          stale, so another live dashboard's queue is left alone. A queued run with no owner
          (queued by a process without one) is judged by its own last write, as a running one;
        - ``owner``: queued runs of this owner id are not kept whatever its heartbeat (a manager
          taking over under the id of its dead predecessor).

        The error says when the run was last heard from, from which host and pid, its last step,
        and how to resume it."""
        now = time.time()
        ids = []
        with self._tx() as c:
            owners = {r["id"]: dict(r) for r in c.execute("SELECT id, host, pid, heartbeat FROM owners")}
            rows = c.execute("SELECT * FROM runs WHERE status IN ('running','paused','queued')").fetchall()
            for row in rows:
                run = _run_dict(row)
                if owner is not None and run["status"] == "queued" and run.get("owner") == owner:
                    reason = queued_reason(run, owners.get(owner), now, f"owner {owner} took over its queue")
                else:
                    reason = why_dead(run, owners.get(run.get("owner") or ""), now, stale_after)
                if reason is None:
                    continue
                ck = c.execute("SELECT MAX(step) FROM checkpoints WHERE run_id=?", (run["id"],)).fetchone()[0]
                how = (f"resume it from its last checkpoint (step {ck})" if ck is not None
                       else "it has no checkpoint: start it anew")
                c.execute("UPDATE runs SET status='interrupted', updated=?, finished=?, error=? WHERE id=?",
                          (now, now, f"{reason}; {how}", run["id"]))
                ids.append(run["id"])
        return ids

    # -- metrics, events, checkpoints --------------------------------------------------
    def log_metrics(self, run_id: str, rows: list[tuple[int, str, str, float, float]]) -> None:
        """``rows``: ``(step, split, key, value, wall)``; written in one transaction."""
        if not rows:
            return
        with self._tx() as c:
            c.executemany("INSERT INTO metrics (run_id, step, split, key, value, wall) VALUES (?,?,?,?,?,?)",
                          [(run_id, int(s), sp, k, finite_or_none(v), w) for s, sp, k, v, w in rows])

    def metrics(self, run_id: str, split: str | None = None, key_prefix: str | None = None,
                since_step: int = -1, key: str | None = None) -> list[tuple[int, str, str, float, float]]:
        """Rows ``(step, split, key, value, wall)`` past ``since_step``, by step (rows of one step
        in the order written). ``key``: that series only (served in step order by its index)."""
        # a split (a few keys, or val's few rows) is read from metrics_by_run and sorted, which
        # beats walking the whole run in step order (10x for 'val' at 200,000 rows); a whole run
        # is read in step order from metrics_by_step, with no sort
        index = "metrics_by_run" if split else "metrics_by_step"
        sql = f"SELECT step, split, key, value, wall FROM metrics INDEXED BY {index} WHERE run_id=? AND step>?"
        args: list[Any] = [run_id, since_step]
        if split:
            sql += " AND split=?"
            args.append(split)
        if key is not None:
            sql += " AND key=?"
            args.append(key)
        if key_prefix and self.url:  # a range under a server's collation is not a prefix
            sql += " AND starts_with(key, ?)"
            args.append(key_prefix)
        elif key_prefix:
            sql += " AND key >= ? AND key < ?"
            args += [key_prefix, key_prefix + "\U0010ffff"]
        cur = self._conn().cursor()
        cur.row_factory = None  # plain tuples: several times faster than Row for 20k-point reads
        return cur.execute(sql + " ORDER BY step, rowid", args).fetchall()

    def metrics_after(self, run_id: str, after_id: int = 0,
                      limit: int | None = None) -> tuple[list[tuple[int, str, str, float, float]], int]:
        """The run's rows written after row ``after_id``, in the order written, and the id of the
        last one (``after_id`` when none): poll with the id it returned to get only new rows. An
        index range scan (metrics_by_rowid), so a poll costs the same at any run length. Rows are
        only ever removed by :meth:`truncate_metrics`, which bumps :meth:`metrics_history`."""
        sql = "SELECT rowid, step, split, key, value, wall FROM metrics WHERE run_id=? AND rowid>? ORDER BY rowid"
        args: tuple = (run_id, int(after_id))
        if limit is not None:
            sql, args = sql + " LIMIT ?", (*args, int(limit))
        cur = self._conn().cursor()
        cur.row_factory = None
        rows = cur.execute(sql, args).fetchall()
        if not rows:
            return [], int(after_id)
        last = rows[-1][0]
        return [r[1:] for r in rows], last

    def metrics_history(self, run_id: str) -> int:
        """How many times rows were removed from the run's metrics: a reader that caches rows
        starts over when it changes. 0 for a run that does not exist."""
        row = self._conn().execute("SELECT history FROM runs WHERE id=?", (run_id,)).fetchone()
        return int(row[0]) if row else 0

    def truncate_metrics(self, run_id: str, after_step: int) -> None:
        """Forget metrics past ``after_step`` (a resumed run redoes those steps from its checkpoint)."""
        with self._tx() as c:
            if c.execute("DELETE FROM metrics WHERE run_id=? AND step>?", (run_id, int(after_step))).rowcount:
                c.execute("UPDATE runs SET history=history+1 WHERE id=?", (run_id,))

    def truncate_events(self, run_id: str, after_step: int, after_wall: float | None = None) -> None:
        """Forget events past ``after_step`` (and those at that step recorded after ``after_wall``,
        the time its checkpoint was written): on a resume they no longer happened, and a weight
        change among them is no longer in force."""
        with self._tx() as c:
            # the resumes and the starts on a node stay: the run's history of interruptions is worth keeping
            c.execute("DELETE FROM events WHERE run_id=? AND kind NOT IN ('resumed_from_checkpoint', 'attempt')"
                      " AND (step>? OR (step=? AND wall>?))",
                      (run_id, int(after_step), int(after_step), float("inf") if after_wall is None else after_wall))

    def metric_count(self, run_id: str) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM metrics WHERE run_id=?", (run_id,)).fetchone()[0]

    def add_event(self, run_id: str, step: int, kind: str, payload: dict[str, Any] | None = None) -> None:
        with self._tx() as c:
            c.execute("INSERT INTO events (run_id, step, wall, kind, payload) VALUES (?,?,?,?,?)",
                      (run_id, int(step), time.time(), kind, json.dumps(payload or {})))

    def events(self, run_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT step, wall, kind, payload FROM events WHERE run_id=?" + (" AND kind=?" if kind else "")
        rows = self._conn().execute(sql + " ORDER BY step, wall", (run_id, kind) if kind else (run_id,)).fetchall()
        return [{"step": r["step"], "wall": r["wall"], "kind": r["kind"], "payload": json.loads(r["payload"] or "{}")}
                for r in rows]

    def add_checkpoint(self, run_id: str, step: int, path: str, kind: str = "periodic") -> None:
        """One row per file: saving ``last.pt`` again moves its row to the new step."""
        with self._tx() as c:
            c.execute("INSERT INTO checkpoints (run_id, step, path, kind, wall) VALUES (?,?,?,?,?)"
                      " ON CONFLICT(run_id, path) DO UPDATE SET step=excluded.step, kind=excluded.kind,"
                      " wall=excluded.wall", (run_id, int(step), str(path), kind, time.time()))

    def checkpoints(self, run_id: str) -> list[dict[str, Any]]:
        """The run's checkpoints by step, each at the file of its name in the run's folder here
        when there is one: rows keep the absolute path they were written with, and a runs
        directory copied or moved elsewhere must read its own files, not the original's."""
        rows = self._conn().execute("SELECT step, path, kind, wall FROM checkpoints WHERE run_id=? ORDER BY step, wall",
                                    (run_id,)).fetchall()
        out = [dict(r) for r in rows]
        for ck in out:
            here = self.run_dir(run_id) / Path(ck["path"]).name
            if here.exists():
                ck["path"] = str(here)
        return out

    def latest_checkpoint(self, run_id: str, kind: str | None = None) -> dict[str, Any] | None:
        """The run's latest checkpoint of ``kind``; with no kind, the latest of its training (the
        best-on-validation model is not where training goes on from: ask for ``"best"``)."""
        cks = [c for c in self.checkpoints(run_id) if (c["kind"] == kind if kind else c["kind"] != "best")
               and Path(c["path"]).exists()]
        return cks[-1] if cks else None

    def chosen_checkpoint(self, run_id: str, use: str = "") -> dict[str, Any] | None:
        """The checkpoint to predict, inspect or export with: by ``use`` (``best``, ``last``,
        ``mean_last``), else the run's ``select.use`` (see :func:`mtl_core.protocols.selection.pick_checkpoint`);
        ``"chosen"`` says which it is. ``None`` before the first is written."""
        run = self.get_run(run_id)
        use, _ = use_of(run["config"] if run else None, use)
        return pick_checkpoint([c for c in self.checkpoints(run_id) if Path(c["path"]).exists()], use)


retry_every_method(RunStore, exempt={"run_dir"})


def _run_dict(row: sqlite3.Row) -> dict[str, Any]:
    d = dict(row)
    d["config"] = json.loads(d["config"])
    d["info"] = json.loads(d["info"] or "{}")
    d["tags"] = json.loads(d.get("tags") or "{}")
    d["labels"] = json.loads(d.get("labels") or "[]")  # a person's own tags (``tags``: what it is in a study)
    return d

