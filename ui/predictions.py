"""Predict, then reveal: what each browser predicted before it saw the answer, per question.

A question is a key (the playground's problem and settings, a lesson and its variation) and a set
of answers; each browser has one prediction per question (a changed mind replaces the first).
In shared (classroom) mode the owner sees how the class predicted (:meth:`Predictions.tally`)
beside the answer. Kept by the dashboard's process, for as long as it runs: a class's predictions
are a moment of a lesson, not a record.
"""
from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

MAX_QUESTIONS = 500


@dataclass
class Predictions:
    _answers: dict[str, dict[str, str]] = field(default_factory=dict)  # question -> browser -> answer
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def predict(self, question: str, browser: str, answer: str) -> None:
        with self._lock:
            self._answers.setdefault(question, {})[browser] = answer
            while len(self._answers) > MAX_QUESTIONS:  # the oldest question first
                self._answers.pop(next(iter(self._answers)))

    def mine(self, question: str, browser: str) -> str | None:
        with self._lock:
            return self._answers.get(question, {}).get(browser)

    def forget(self, question: str, browser: str) -> None:
        with self._lock:
            self._answers.get(question, {}).pop(browser, None)

    def tally(self, question: str) -> Counter:
        """How many browsers predicted each answer."""
        with self._lock:
            return Counter(self._answers.get(question, {}).values())
