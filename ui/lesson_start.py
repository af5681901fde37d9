"""Starting a lesson's study: at once for the owner, within the classroom's quota for a viewer.

The one thing a viewer's session may start, and the one place it reaches the RunManager itself:
:meth:`ui.access.Classroom.start_lesson` checks the quota and takes the browser's place in it in
one step before the study is recorded. No Streamlit, so it is tested with threads.
"""
from __future__ import annotations

from typing import Any

from mtl_core.store.status import ACTIVE
from mtl_core.studies.runner import StudyRunner
from mtl_core.studies.spec import StudySpec, expand
from mtl_core.studies.store import StudyStore
from ui.access import Classroom


def study_active(store: Any, study_id: str) -> bool:
    """Whether a study still has runs queued or training (it holds its viewer's place in the quota)."""
    return any(row["run"] is not None and row["run"]["status"] in ACTIVE for row in StudyStore(store).plan(study_id))


def start_lesson_study(room: Classroom, manager: Any, spec: StudySpec, role: str, browser: str) -> str:
    """Start ``spec`` (a lesson's study) with ``manager`` for ``role`` in ``browser``; returns the
    study's id. Raises :class:`ui.access.AccessError` naming the limit a viewer reached, before
    anything is written."""
    return room.start_lesson(role, browser, len(expand(spec)), lambda: len(manager.queue()),
                             lambda study_id: study_active(manager.store, study_id),
                             lambda: StudyRunner(manager).start(spec))
