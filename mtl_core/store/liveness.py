"""Liveness by heartbeat: a live trainer (or RunManager) refreshes a time stamp in the run store
every few seconds from a thread of its own, so a long step or evaluation never makes it look
dead; a run not heard from for :data:`HEARTBEAT_STALE_S` seconds is shown as interrupted, with
when, where and at which step it was last heard from. Unlike a pid, a time stamp cannot be
reused by another process and means the same on any host."""
from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

# A live trainer (running or paused) refreshes its run's heartbeat, and a live RunManager its
# owner row, every HEARTBEAT_SECONDS; one not heard from for HEARTBEAT_STALE_S is taken for dead
# (fifteen missed beats: a busy disk or a long evaluation step must not kill a healthy run).
HEARTBEAT_SECONDS = 2.0
HEARTBEAT_STALE_S = 30.0
STALE_ENV = "MTL_HEARTBEAT_STALE_S"


def stale_seconds() -> float:
    """How long a RunManager waits without a heartbeat before it calls a run interrupted:
    ``MTL_HEARTBEAT_STALE_S`` (default :data:`HEARTBEAT_STALE_S`; never under three beats)."""
    try:
        return max(3 * HEARTBEAT_SECONDS, float(os.environ.get(STALE_ENV, HEARTBEAT_STALE_S)))
    except ValueError:
        return HEARTBEAT_STALE_S


def host_and_pid() -> tuple[str, int]:
    return socket.gethostname(), os.getpid()


class Heartbeat:
    """Calls ``beat()`` now and then every ``seconds`` until stopped; a failing beat (a locked
    database, say) is retried at the next tick, never raised into the training thread."""

    def __init__(self, beat: Callable[[], None], seconds: float, name: str = "heartbeat") -> None:
        self._beat, self.seconds = beat, float(seconds)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> Heartbeat:
        self._safe_beat()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _safe_beat(self) -> None:
        try:
            self._beat()
        except Exception:  # the next tick tries again; a run must not fail for a missed beat
            pass

    def _loop(self) -> None:
        while not self._stop.wait(self.seconds):
            self._safe_beat()


def last_seen(run: dict[str, Any]) -> float:
    """When the run was last heard from: its heartbeat or its last status/progress write,
    whichever is later (rows from before heartbeats have only the latter)."""
    return max(float(run.get("heartbeat") or 0.0), float(run.get("updated") or 0.0))


def is_stale(run: dict[str, Any], stale_after: float = HEARTBEAT_STALE_S, now: float | None = None) -> bool:
    """Whether the run (a :meth:`RunStore.get_run` dict) was not heard from for ``stale_after``
    seconds. Says nothing of a queued run's owner: :meth:`RunStore.run_alive` does."""
    return (time.time() if now is None else now) - last_seen(run) > stale_after


def why_dead(run: dict[str, Any], owner: dict[str, Any] | None, now: float, stale_after: float) -> str | None:
    """Why an active run is taken for dead (the start of its interruption message), or None."""
    if run["status"] == "queued" and run.get("owner"):
        if owner is None:
            return queued_reason(run, None, now, f"the dashboard that queued it ({run['owner']}) is gone")
        if now - float(owner.get("heartbeat") or 0.0) > stale_after:
            return queued_reason(run, owner, now, f"the dashboard that queued it ({run['owner']}) stopped")
        return None
    if not is_stale(run, stale_after, now):
        return None
    where = _where(run.get("host"), run.get("pid") or run["info"].get("pid"))
    if run.get("heartbeat") and float(run["heartbeat"]) >= float(run.get("updated") or 0.0):
        seen = f"last heartbeat {_when(float(run['heartbeat']), now)}{where}"
    else:
        seen = f"last status or progress write {_when(last_seen(run), now)}{where}"
    who = "the process that queued it" if run["status"] == "queued" else "the process training it"
    return f"{who} stopped: {seen}, {_at_step(run)}"


def queued_reason(run: dict[str, Any], owner: dict[str, Any] | None, now: float, what: str) -> str:
    if owner is not None and owner.get("heartbeat"):
        what += f" (last heartbeat {_when(float(owner['heartbeat']), now)}{_where(owner.get('host'), owner.get('pid'))})"
    return f"{what} while the run waited in its queue, {_at_step(run)}"


def _at_step(run: dict[str, Any]) -> str:
    return f"at step {run['step']}" if run["step"] else "before its first step"


def _when(t: float, now: float) -> str:
    ago = max(0.0, now - t)
    span = f"{ago:.0f} s" if ago < 120 else f"{ago / 60:.0f} min" if ago < 7200 else f"{ago / 3600:.1f} h"
    return f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(t))} ({span} before this check)"


def _where(host: str | None, pid: int | None) -> str:
    parts = ([f"host {host}"] if host else []) + ([f"pid {pid}"] if pid else [])
    return f" from {', '.join(parts)}" if parts else ""
