"""Commands to a run's trainer, kept in the run store: the one control path every run obeys,
wherever it trains. A page, the CLI or a test sends one (:meth:`Commands.send_command`); the
trainer reads the run's pending ones at each step and marks each applied (at the step it took
effect) or rejected (saying why). :class:`~mtl_core.store.store.RunStore` has these methods."""
from __future__ import annotations

import json
import time
from typing import Any

from mtl_core.errors import ConfigError
from mtl_core.store.ids import check_run_id
from mtl_core.store.status import TERMINAL

COMMAND_KINDS = ("pause", "resume", "stop", "weights")
COMMAND_STATES = ("pending", "applied", "rejected")


class Commands:
    """The run store's commands table (mixed into RunStore, whose connection and transactions it uses)."""

    root: Any

    def send_command(self, run_id: str, kind: str, payload: dict[str, Any] | None = None) -> int:
        """Queue a command for the run's trainer (it reads :meth:`pending_commands` each step);
        returns its id. Refused, naming the run, when it does not exist or has ended."""
        if kind not in COMMAND_KINDS:
            raise ConfigError("kind", f"unknown command {kind!r}; one of {', '.join(COMMAND_KINDS)}")
        if payload is not None and not isinstance(payload, dict):
            raise ConfigError("payload", f"a command's payload is a dict, not {type(payload).__name__}")
        check_run_id(run_id)
        with self._tx() as c:
            run = c.execute("SELECT status, step FROM runs WHERE id=?", (run_id,)).fetchone()
            if run is None:
                raise ConfigError("run_id", f"no run {run_id!r} in {self.root}; {_nothing_to(kind)}")
            if run["status"] in TERMINAL:
                hint = ("" if run["status"] == "finished"
                        else "; resume it from its last checkpoint to train it again")
                raise ConfigError("run_id", f"run {run_id} has ended ({run['status']} at step {run['step']}); "
                                  f"{_nothing_to(kind)}{hint}")
            cur = c.execute("INSERT INTO commands (run_id, kind, payload, created) VALUES (?,?,?,?) RETURNING id",
                            (run_id, kind, json.dumps(payload) if payload is not None else None, time.time()))
            return int(cur.fetchone()[0])

    def pending_commands(self, run_id: str) -> list[dict[str, Any]]:
        """The run's commands not yet applied or rejected, oldest first: ``id, kind, payload,
        created``. One index range (commands_by_run): cheap enough to call every step."""
        rows = self._conn().execute("SELECT id, kind, payload, created FROM commands WHERE run_id=? AND state='pending'"
                                    " ORDER BY id", (run_id,)).fetchall()
        return [{"id": r[0], "kind": r[1], "payload": json_or_none(r[2]), "created": r[3]} for r in rows]

    def mark_command(self, command_id: int, state: str, step: int | None = None, message: str | None = None) -> None:
        """The trainer applied (at ``step``) or rejected (saying why in ``message``) a command."""
        if state not in COMMAND_STATES[1:]:
            raise ConfigError("state", f"a command is marked 'applied' or 'rejected', not {state!r}")
        with self._tx() as c:
            c.execute("UPDATE commands SET state=?, step=?, message=? WHERE id=?",
                      (state, None if step is None else int(step), message, int(command_id)))

    def commands(self, run_id: str) -> list[dict[str, Any]]:
        """Every command sent to the run, oldest first, with its state, step and message."""
        rows = self._conn().execute("SELECT id, kind, payload, created, state, step, message FROM commands"
                                    " WHERE run_id=? ORDER BY id", (run_id,)).fetchall()
        return [{**dict(r), "payload": json_or_none(r["payload"])} for r in rows]


def _nothing_to(kind: str) -> str:
    return {"pause": "nothing to pause", "resume": "nothing to unpause", "stop": "nothing to stop",
            "weights": "its task weights can no longer change"}[kind]



def json_or_none(text: str | None) -> Any:
    """A stored JSON column's value (None where it is empty)."""
    return json.loads(text) if text else None
