"""Who may do what on a shared dashboard (classroom mode): the policy alone, no Streamlit, no torch.

On a dashboard that only its own machine can reach (the default) everyone is the owner, as
before. In shared mode (``MTL_STUDIO_SHARED=1``) a person is a *viewer* until they unlock control
with the owner's secret: viewers watch runs, studies and lessons, browse data and predictions and
upload their own images to Predict; every action in :data:`CONTROLS` is the owner's, except that
the owner may let viewers start lesson studies within a quota, and compute Inspect's outputs a few
at a time (:class:`Classroom`). What a viewer's session holds of the RunManager: ``ui.read_only``.
"""
from __future__ import annotations

import binascii
import dataclasses
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from mtl_core.errors import MTLError

LOG = logging.getLogger(__name__)

SHARED_ENV = "MTL_STUDIO_SHARED"  # 1 / true / yes: shared (classroom) mode
TOKEN_ENV = "MTL_STUDIO_OWNER_TOKEN"  # the owner's secret; a random one is made (and logged) when unset
OWNERS_ENV = "MTL_STUDIO_OWNERS"  # comma-separated e-mails that are owners once signed in with st.login
TOKEN_PARAM = "owner"  # ?owner=<secret>: the owner's link, read once and taken out of the URL
MIN_TOKEN_CHARS = 12
OWNER, VIEWER = "owner", "viewer"
SHARED_UPLOAD_MB = 10  # per file, for every upload of a shared dashboard (Predict, Inspect); the server's own: 20

# every action a viewer may not take, with the words a refusal uses for it
CONTROLS: dict[str, str] = {
    "run.start": "start runs",
    "run.pause": "pause or resume runs",
    "run.stop": "stop runs",
    "run.continue": "continue runs from their checkpoints",
    "run.retune": "change a run's task weights",
    "run.delete": "delete runs",
    "run.annotate": "tag runs and write notes on them",
    "run.baselines": "train single-task baselines",
    "ensemble.evaluate": "evaluate ensembles (a long computation on the shared server)",
    "study.start": "start studies",
    "study.steer": "pause, resume, stop, extend or carry on studies",
    "lesson.start": "run a lesson's study",
    "model.compress": "compress, prune or export models",
    "classroom.settings": "change the classroom settings",
}


class AccessError(MTLError, PermissionError):
    """A viewer asked for an owner's action; the message says so and what to do."""


def shared_mode(env: Mapping[str, str] = os.environ) -> bool:
    """Whether the dashboard is shared (``MTL_STUDIO_SHARED`` set to 1, true, yes or on)."""
    return env.get(SHARED_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def owner_token(env: Mapping[str, str] = os.environ) -> tuple[str, bool]:
    """The owner's secret and whether it was generated (no ``MTL_STUDIO_OWNER_TOKEN``)."""
    given = env.get(TOKEN_ENV, "").strip()
    return (given, False) if given else (secrets.token_urlsafe(18), True)


def token_matches(given: str | None, secret: str) -> bool:
    """Constant-time comparison, so the time a wrong guess takes tells nothing about the secret."""
    return bool(given) and bool(secret) and hmac.compare_digest(str(given).encode(), secret.encode())


def owner_emails(env: Mapping[str, str] = os.environ) -> frozenset[str]:
    return frozenset(e.strip().lower() for e in env.get(OWNERS_ENV, "").split(",") if e.strip())


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""  # why not, in words a viewer can act on


@dataclass
class Settings:
    """What the owner lets viewers do; changed live from the owner's sidebar."""

    viewer_lessons: bool = False  # viewers may start lesson studies
    per_session: int = 1  # queued or training lesson studies per browser (its reloads and tabs included)
    max_viewer_studies: int = 3  # all viewers together
    max_queued_runs: int = 24  # a viewer's study is refused when the queue would hold more
    viewer_inspect: bool = False  # viewers may compute a run's Inspect outputs when none are kept yet
    max_inspect_builds: int = 1  # such computations at a time, all viewers together


def refusal(action: str) -> str:
    what = CONTROLS.get(action, action)
    return (f"View only: in shared mode only the dashboard's owner can {what}. "
            "Ask the person running this session, or unlock control with the owner's secret in the sidebar.")


@dataclass
class Classroom:
    """The process-wide state of a shared dashboard: its secret, the owner's settings, which
    viewer's browser started which lesson study (for the quota), the studies being started and the
    viewers' Inspect computations going on. Thread-safe: every browser session runs its scripts in
    a thread of its own. With a ``path``, the settings and the studies are kept there (see
    :meth:`load`), so a restarted server keeps the owner's choices and the quota."""

    secret: str
    settings: Settings = field(default_factory=Settings)
    owners: frozenset[str] = frozenset()
    path: Path | None = None
    _studies: dict[str, str] = field(default_factory=dict)  # study id -> the viewer's browser that started it
    _pending: dict[str, tuple[str, int]] = field(default_factory=dict)  # being started: ticket -> (browser, runs)
    _building: int = 0  # viewers' Inspect computations going on
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, secret: str, owners: frozenset[str], path: Path) -> Classroom:
        """The classroom kept at ``path`` (settings and studies; never the secret), or a new one
        when there is none. A file that cannot be read is logged and set aside, not fatal."""
        room = cls(secret, owners=owners, path=Path(path))
        try:
            kept = json.loads(room.path.read_text())
            defaults = Settings()
            room.settings = Settings(**{k: type(getattr(defaults, k))(v) for k, v in kept["settings"].items()
                                        if hasattr(defaults, k)})
            room._studies = {str(k): str(v) for k, v in kept.get("studies", {}).items()}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
            LOG.warning("classroom settings at %s unreadable (%s): starting from the defaults", room.path, e)
        return room

    def _save(self) -> None:
        """Write the settings and studies (under the lock; atomically: a crash leaves the old file)."""
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"settings": dataclasses.asdict(self.settings), "studies": self._studies}))
            os.replace(tmp, self.path)
        except OSError as e:  # a read-only runs directory: the classroom still works, for this process
            LOG.warning("could not keep the classroom settings at %s: %s", self.path, e)

    def decide(self, action: str, role: str) -> Decision:
        """Whether ``role`` may take ``action`` at all (quotas aside: :meth:`may_start_lesson`)."""
        if role == OWNER:
            return Decision(True)
        if action == "lesson.start" and self.settings.viewer_lessons:
            return Decision(True)
        return Decision(False, refusal(action))

    def may_start_lesson(self, role: str, session: str, runs: int, queued: int,
                         active: Callable[[str], bool]) -> Decision:
        """Whether a lesson study of ``runs`` runs may start now: always for the owner; for a viewer
        when the owner allows it and neither their own quota, all viewers' quota nor the queue
        (``queued`` runs waiting) is full. ``active(study_id)``: whether a study still has runs
        queued or training (finished studies free their place in the quota). What a button shows;
        :meth:`start_lesson` decides again as it starts."""
        first = self.decide("lesson.start", role)
        if role == OWNER or not first.allowed:
            return first
        with self._lock:
            return self._quota(session, runs, queued, active)

    def _quota(self, session: str, runs: int, queued: int, active: Callable[[str], bool]) -> Decision:
        """The viewers' quotas, counting the studies being started now (held by :meth:`start_lesson`).
        Called under ``_lock``."""
        s = self.settings
        mine = [sid for sid, who in self._studies.items() if who == session and active(sid)]
        everyone = [sid for sid in self._studies if active(sid)]
        for who, _ in self._pending.values():
            everyone.append("one being started")
            if who == session:
                mine.append("one being started")
        queued += sum(n for _, n in self._pending.values())
        if len(mine) >= s.per_session:
            return Decision(False, f"You already have {len(mine)} lesson stud{'y' if len(mine) == 1 else 'ies'} "
                                   f"queued or training ({', '.join(mine)}); each browser may run {s.per_session} "
                                   "at a time. Watch it finish, then start the next.")
        if len(everyone) >= s.max_viewer_studies:
            return Decision(False, f"The class has {len(everyone)} lesson studies queued or training, the most the "
                                   f"owner allows ({s.max_viewer_studies}); open one of them in Studies and watch "
                                   "it, or wait until one finishes.")
        if queued + runs > s.max_queued_runs:
            return Decision(False, f"The training queue holds {queued} runs; this lesson's {runs} more would pass "
                                   f"its limit of {s.max_queued_runs}. Wait for some to finish, or ask the owner.")
        return Decision(True)

    def start_lesson(self, role: str, session: str, runs: int, queued: Callable[[], int],
                     active: Callable[[str], bool], start: Callable[[], str]) -> str:
        """Start a lesson study of ``runs`` runs with ``start()`` (it returns the study's id) if
        ``role`` may. For a viewer the quota is checked and their place in it taken in one step,
        under the lock, before ``start()`` runs: eight tabs clicking at once start one study. A
        ``start()`` that fails gives the place back. Raises :class:`AccessError` saying which
        limit was reached."""
        first = self.decide("lesson.start", role)
        if not first.allowed:
            raise AccessError(first.reason)
        if role == OWNER:
            return start()
        ticket = secrets.token_hex(8)
        with self._lock:
            decision = self._quota(session, runs, queued(), active)
            if not decision.allowed:
                raise AccessError(decision.reason)
            self._pending[ticket] = (session, runs)
        try:
            study_id = start()
        except BaseException:
            with self._lock:
                self._pending.pop(ticket, None)
            raise
        with self._lock:  # the place taken becomes the study, with no moment where it is neither
            self._pending.pop(ticket, None)
            self._studies[study_id] = session
            self._save()
        return study_id

    @contextmanager
    def inspect_build(self, role: str, what: str) -> Iterator[None]:
        """Hold one of the class's places to compute Inspect outputs that nobody computed yet
        (``what``: which, as a refusal says it). The owner needs none; a viewer needs the owner's
        leave (``viewer_inspect``) and a free place (``max_inspect_builds``), else
        :class:`AccessError` says which is missing and what to do."""
        if role == OWNER:
            yield
            return
        s = self.settings
        with self._lock:
            if not s.viewer_inspect:
                raise AccessError(f"{what} have not been computed yet, and computing them takes the shared server "
                                  "about 13 s. The dashboard's owner computes them by opening this run on Inspect, "
                                  "or lets viewers compute them (Classroom settings); meanwhile Live, Compare and "
                                  "Predict show this run.")
            if self._building >= s.max_inspect_builds:
                raise AccessError(f"{what} have not been computed yet, and the class is already computing "
                                  f"{self._building} run{'s' if self._building != 1 else ''}' outputs, the most the "
                                  f"owner allows at a time ({s.max_inspect_builds}). Try again in a minute: once "
                                  "computed, they are kept for everyone.")
            self._building += 1
        try:
            yield
        finally:
            with self._lock:
                self._building -= 1

    def viewer_studies(self) -> dict[str, str]:
        with self._lock:
            return dict(self._studies)

    def update(self, **changes: object) -> None:
        with self._lock:
            for k, v in changes.items():
                if not hasattr(self.settings, k):
                    raise KeyError(f"no classroom setting {k!r}; one of {', '.join(vars(self.settings))}")
                setattr(self.settings, k, type(getattr(self.settings, k))(v))
            self._save()


XSRF_COOKIE = "_streamlit_xsrf"  # set by Streamlit's server on every browser that loads the app


def browser_key(xsrf_cookie: str) -> str | None:
    """A stable, anonymous key for one browser, from Streamlit's XSRF cookie: the cookie is masked
    afresh on every page load (Tornado's v2 format ``2|mask|masked token|timestamp``), but the
    token under the mask stays until the browser's cookies are cleared. So a reload, a new tab or
    a second page of the same browser count as one browser for the lesson quota; a private window
    or another browser counts as another. None when the cookie is missing or not in that format."""
    value = (xsrf_cookie or "").strip("\"'")
    try:
        if value.startswith("2|"):
            _, mask_hex, masked_hex, _ = value.split("|")
            mask, masked = binascii.a2b_hex(mask_hex), binascii.a2b_hex(masked_hex)
            if len(mask) != 4:
                return None
            token = bytes(b ^ mask[i % 4] for i, b in enumerate(masked))
        else:
            token = binascii.a2b_hex(value)  # v1: the token itself
    except (binascii.Error, ValueError):
        return None
    return "browser-" + hashlib.sha256(token).hexdigest()[:16] if token else None


# the RunManager's commands, and the control each one is (a viewer's manager refuses them: ui/read_only.py)
MANAGER_COMMANDS: dict[str, str] = {
    "start": "run.start", "start_baselines": "run.baselines", "resume_run": "run.continue",
    "pause": "run.pause", "resume": "run.pause", "stop": "run.stop", "set_weights": "run.retune", "delete": "run.delete",
}
