"""What each browser predicted, per question: one answer each (a changed mind replaces it), a tally."""
from __future__ import annotations

from ui.predictions import MAX_QUESTIONS, Predictions


def test_one_prediction_per_browser_and_question_and_the_tally():
    book = Predictions()
    book.predict("q", "a", "ew")
    book.predict("q", "b", "mgda")
    book.predict("q", "a", "cagrad")  # a changed mind
    book.predict("other", "a", "ew")
    assert book.mine("q", "a") == "cagrad" and book.mine("q", "c") is None
    assert book.tally("q") == {"cagrad": 1, "mgda": 1} and book.tally("none") == {}
    book.forget("q", "a")
    assert book.mine("q", "a") is None and book.tally("q") == {"mgda": 1}


def test_the_oldest_questions_go_first_past_the_limit():
    book = Predictions()
    for i in range(MAX_QUESTIONS + 3):
        book.predict(f"q{i}", "a", "x")
    assert book.mine("q0", "a") is None and book.mine(f"q{MAX_QUESTIONS + 2}", "a") == "x"
