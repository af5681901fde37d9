"""Showing one answer per image: a class (kind ``classification``) or a number of objects (kind
``count``). The answer is drawn as a chip in a corner ("star 0.93"), inspected as right or wrong
with its confidence, in a confusion matrix, and in a reliability diagram (Guo et al., "On
Calibration of Modern Neural Networks", ICML 2017).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mtl_core.measures.stats import confusion_from_pairs, labelled, reliability, single_label_errors
from mtl_core.measures.types import COUNT, FLAG, FRACTION, TEXT, Confusion, Curve, ErrorColumn
from mtl_core.tasks.base import Display, register_display, top_probabilities, verdict
from mtl_core.tasks.drawing import HIT, WRONG, Colour, colour_for, hex_colour, label_text

COUNT_COLOUR: Colour = (40, 40, 40)


@register_display("classification")
class ClassDisplay(Display):
    """One class per image: ``{"label": int, "score": its probability, "probs": [K floats]}``; a
    ground truth is ``{"label", "probs"}`` (one-hot) without a score. The classes are the task's
    ``class_names``. Drawn as "star 0.93" on the class colour at the top-left."""

    key = "label"  # where the prediction holds its answer
    draw_order = 50
    fusion = "softmax"
    image_level = True
    error_columns = (
        ErrorColumn("failed", "wrong", FLAG, help="the most likely class is not the true one"),
        ErrorColumn("confidence", "confidence", FRACTION, worse="", help="probability of the predicted class"),
        ErrorColumn("true_prob", "probability of the truth", FRACTION, worse="low"),
        ErrorColumn("truth", "true class", TEXT, worse=""),
        ErrorColumn("predicted", "predicted class", TEXT, worse=""),
    )

    # ---- what differs between the kinds of answer ----------------------------------------
    def size(self) -> int:
        """How many answers there are (the length of ``probs``)."""
        return max(len(self.task.class_names), 1)

    def answer_name(self, answer: int) -> str:
        """An answer in words, as drawn ("star")."""
        return self.task.class_name(answer)

    def table_name(self, answer: int) -> str:
        """An answer as the error table and the confusion matrix name it."""
        return self.answer_name(answer)

    def colour(self, answer: int) -> Colour:
        return colour_for(answer)

    def truth_index(self, answer: int) -> int | None:
        """Where a true answer falls among the :meth:`size` answers (``None``: outside them)."""
        return answer if 0 <= answer < self.size() else None

    # ---- drawing ---------------------------------------------------------------------------
    def chips(self, prediction: dict[str, Any], score_threshold: float = 0.3) -> list[tuple[str, Colour]]:
        """"star 0.93" on the answer's colour; "star" for a ground truth (no ``score``)."""
        answer = int(prediction[self.key])
        score = prediction.get("score")
        return [(self.whose(self.answer_name(answer)) + ("" if score is None else f" {float(score):.2f}"),
                 self.colour(answer))]

    def whose(self, text: str) -> str:
        """An answer as drawn on the image: a built-in task's alone ("star"); a label table's column
        says whose it is ("Left: 2"), since two tasks of one kind (a left and a right digit, forty
        attributes) would otherwise read alike. Words printed after the task's title (summarize)
        do not need it."""
        return text if getattr(self.task, "preset", True) else f"{self.title}: {text}"

    def draw(self, image: Tensor, prediction: dict[str, Any], opacity: float = 0.5,
             score_threshold: float = 0.3) -> Tensor:
        """:meth:`chips` in :attr:`corner`. The answer is always shown (however unsure);
        ``opacity`` and ``score_threshold`` do not apply."""
        ((text, colour),) = self.chips(prediction)
        return label_text(image, text, colour, corner=self.corner)

    def summarize(self, prediction: dict[str, Any], score_threshold: float = 0.3) -> str:
        """"star (93%)"; "star" for a ground truth."""
        score = prediction.get("score")
        name = self.answer_name(int(prediction[self.key]))
        return name if score is None else f"{name} ({float(score):.0%})"

    def caption(self, prediction: dict[str, Any]) -> str:
        return self.whose(self.answer_name(int(prediction[self.key])))

    def target_to_prediction(self, target: Any) -> dict[str, Any]:
        """The answer and its one-hot ``probs``, no ``score``: a ground truth is drawn without one."""
        answer = int(torch.as_tensor(self.task.labels(torch.as_tensor(target))).reshape(-1)[0])
        probs = [0.0] * self.size()
        if (i := self.truth_index(answer)) is not None:
            probs[i] = 1.0
        return {self.key: answer, "probs": probs}

    def top_k(self, prediction: dict[str, Any], k: int = 3) -> list[tuple[str, float]]:
        return top_probabilities(prediction.get("probs"), [self.answer_name(i) for i in range(self.size())], k)

    def error_chips(self, prediction: dict[str, Any], truth: dict[str, Any],
                    score_threshold: float = 0.3) -> list[tuple[str, Colour]]:
        """"star ✓ 93%" in green, or "circle ✗ 62% (truth: star)" in red."""
        score = prediction.get("score")
        text, colour = verdict(self.answer_name(int(prediction[self.key])), None if score is None else float(score),
                               self.answer_name(int(truth[self.key])))
        return [(self.whose(text), colour)]

    def draw_errors(self, image: Tensor, prediction: dict[str, Any], truth: dict[str, Any],
                    score_threshold: float = 0.3) -> Tensor:
        """:meth:`error_chips` in :attr:`corner`, where :meth:`draw` puts the answer."""
        ((text, colour),) = self.error_chips(prediction, truth)
        return label_text(image, text, colour, corner=self.corner)  # (3, H, W)

    def error_legend(self) -> list[tuple[str, str]]:
        return [("right", hex_colour(HIT)), ("wrong", hex_colour(WRONG))]

    # ---- inspection ----------------------------------------------------------------------
    def sample_errors(self, predictions, truths, score_threshold: float = 0.3) -> dict[str, list]:
        return single_label_errors(predictions, truths, self.key, self.table_name)

    def confusions(self, predictions, truths, score_threshold: float = 0.3) -> list[Confusion]:
        """Rows the true answer, columns the predicted; a cell's samples most confident first."""
        names = [self.table_name(k) for k in range(self.size())]
        pairs = [(j, int(predictions[i][self.key]), i, 1) for i in labelled(truths)
                 if (j := self.truth_index(int(truths[i][self.key]))) is not None]
        matrix = confusion_from_pairs(self.title, names, names, pairs)
        for samples in matrix.samples.values():
            samples.sort(key=lambda i: -float(predictions[i].get("score", 0.0)))
        return [matrix]

    def curves(self, predictions, truths, score_threshold: float = 0.3) -> list[Curve]:
        idx = labelled(truths)
        return [reliability(self.title, [float(predictions[i]["score"]) for i in idx],
                            [int(predictions[i][self.key]) == self.truth_index(int(truths[i][self.key])) for i in idx])]


def count_name(n: int) -> str:
    """"1 object", "3 objects"."""
    return f"{n} object{'' if n == 1 else 's'}"


@register_display("count")
class CountDisplay(ClassDisplay):
    """How many objects, ``0 .. task.max_count``: ``{"count": int, "score", "probs": [max_count + 1]}``;
    a truth above ``max_count`` counts as ``max_count``. Drawn as "3 objects 0.81" at the top-right;
    its errors add how many objects it was off by."""

    key = "count"
    corner = "top-right"
    draw_order = 40
    error_columns = (
        ErrorColumn("failed", "wrong count", FLAG),
        ErrorColumn("error", "count error", COUNT, help="objects too many or too few"),
        ErrorColumn("confidence", "confidence", FRACTION, worse=""),
        ErrorColumn("truth", "true count", TEXT, worse=""),
        ErrorColumn("predicted", "predicted count", TEXT, worse=""),
    )

    def size(self) -> int:
        return self.task.max_count + 1

    def answer_name(self, answer: int) -> str:
        return count_name(answer)

    def table_name(self, answer: int) -> str:
        return str(int(answer))

    def colour(self, answer: int) -> Colour:
        return COUNT_COLOUR

    def truth_index(self, answer: int) -> int | None:
        return min(max(answer, 0), self.task.max_count)

    def summarize(self, prediction: dict[str, Any], score_threshold: float = 0.3) -> str:
        return f"{float(prediction['count']):.1f}".rstrip("0").rstrip(".") + " objects"

    def sample_errors(self, predictions, truths, score_threshold: float = 0.3) -> dict[str, list]:
        clipped = [None if t is None else {**t, "count": self.truth_index(int(t["count"]))} for t in truths]
        out = single_label_errors(predictions, clipped, "count", self.table_name)
        out["error"] = [float("nan") if t is None else float(abs(int(p["count"]) - int(t["count"])))
                        for p, t in zip(predictions, clipped, strict=True)]
        del out["true_prob"]
        return {c.name: out[c.name] for c in self.error_columns}


@register_display("binary")
class BinaryDisplay(ClassDisplay):
    """A yes/no attribute: the ``classification`` format over the task's two classes ("no",
    "yes" unless named). Drawn with the task's title, "Smiling: yes 0.93", as every label table
    column is (a face has many such attributes); fused across an ensemble as the mean of the
    sigmoid probabilities."""

    fusion = "sigmoid"
