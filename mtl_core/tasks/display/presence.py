"""Showing which classes are present in an image (kind ``multilabel``): a chip per class present,
inspected per class as decided present or absent, against the truth.

Per-class precision-recall curves with the non-interpolated AP of the PASCAL VOC classification
challenge (Everingham et al., IJCV 2010), as the task's ``map`` metric computes it.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mtl_core.measures.stats import confusion_from_pairs, labelled, per_sample, pr_curve
from mtl_core.measures.types import COUNT, FLAG, Confusion, Curve, ErrorColumn
from mtl_core.tasks.base import Display, register_display, top_probabilities
from mtl_core.tasks.drawing import HIT, MISSED, WRONG, colour_for, hex_colour, legend
from mtl_core.tasks.multilabel import DECISION_THRESHOLD, average_precision


@register_display("multilabel")
class PresenceDisplay(Display):
    """Any number of the task's classes per image: ``{"labels": [classes decided present (probability
    >= 0.5), most likely first], "probs": [K floats]}``; a ground truth is marked ``"truth": True``
    and drawn without numbers. Drawn as chips stacked at the bottom-left."""

    draw_order = 30
    fusion = "sigmoid"
    image_level = True
    corner = "bottom-left"
    error_columns = (
        ErrorColumn("failed", "any class wrong", FLAG, help="a class decided present or absent wrongly"),
        ErrorColumn("wrong_classes", "wrong classes", COUNT),
        ErrorColumn("missed", "classes missed", COUNT, help="present but decided absent"),
        ErrorColumn("false", "false classes", COUNT, help="decided present but absent"),
    )

    def size(self) -> int:
        """How many classes (the length of ``probs``)."""
        return max(len(self.task.class_names), 1)

    def sample_errors(self, predictions, truths, score_threshold: float = 0.3) -> dict[str, list]:
        def measure(p, t):
            said, true = {int(k) for k in p["labels"]}, {int(k) for k in t["labels"]}
            missed, false = len(true - said), len(said - true)
            return {"failed": missed + false > 0, "wrong_classes": missed + false, "missed": missed, "false": false}

        return per_sample(self.error_columns, predictions, truths, measure)

    def confusions(self, predictions, truths, score_threshold: float = 0.3) -> list[Confusion]:
        """One 2 x 2 matrix per class: present or absent, against decided present or absent."""
        idx = labelled(truths)
        matrices = []
        for k in range(self.size()):
            pairs = [(0 if k in truths[i]["labels"] else 1, 0 if k in predictions[i]["labels"] else 1, i, 1) for i in idx]
            matrix = confusion_from_pairs(f"{self.title}: {self.task.class_name(k)}", ["present", "absent"],
                                          ["decided present", "decided absent"], pairs)
            for samples in matrix.samples.values():  # the most confidently wrong (or right) first
                samples.sort(key=lambda i: -abs(float(predictions[i]["probs"][k]) - 0.5))
            matrices.append(matrix)
        return matrices

    def curves(self, predictions, truths, score_threshold: float = 0.3) -> list[Curve]:
        """Precision-recall per class over the set's images; AP as the run's ``map`` computes it."""
        idx = labelled(truths)
        curves = []
        for k in range(self.size()):
            scores = [float(predictions[i]["probs"][k]) for i in idx]
            hits = [k in truths[i]["labels"] for i in idx]
            if sum(hits) == 0:
                continue
            ap = average_precision(torch.tensor(scores), torch.tensor(hits))
            curves.append(pr_curve(self.task.class_name(k), scores, hits, sum(hits), DECISION_THRESHOLD, ap, "AP"))
        return curves

    @staticmethod
    def is_truth(prediction: dict[str, Any]) -> bool:
        """A ground truth (:meth:`target_to_prediction`: ``"truth": True``) or a prediction without
        probabilities: its classes are shown without numbers."""
        return bool(prediction.get("truth")) or "probs" not in prediction

    def chips(self, prediction: dict[str, Any], score_threshold: float = 0.3) -> list[tuple[str, tuple[int, int, int]]]:
        """A chip per class with probability >= ``score_threshold``, most likely first ("circle 0.87");
        a ground truth's classes by name alone ("circle")."""
        if self.is_truth(prediction):
            return [(self.task.class_name(int(k)), colour_for(int(k))) for k in prediction["labels"]]
        probs = [float(p) for p in prediction["probs"]]
        shown = sorted((k for k, p in enumerate(probs) if p >= score_threshold), key=lambda k: -probs[k])
        return [(f"{self.task.class_name(k)} {probs[k]:.2f}", colour_for(k)) for k in shown]

    def draw(self, image: Tensor, prediction: dict[str, Any], opacity: float = 0.5,
             score_threshold: float = 0.3) -> Tensor:
        """:meth:`chips` stacked at the bottom-left (the most likely at the bottom); ``opacity``
        does not apply."""
        return legend(image, self.chips(prediction, score_threshold), corner=self.corner)

    def summarize(self, prediction: dict[str, Any], score_threshold: float = 0.3) -> str:
        """The classes decided present (probability >= 0.5), with their probabilities; a ground
        truth's by name ("circle, triangle")."""
        if self.is_truth(prediction):
            return ", ".join(self.task.class_name(int(k)) for k in prediction["labels"]) or "nothing present"
        probs = torch.as_tensor(prediction["probs"]).reshape(-1).tolist()
        on = [(self.task.class_name(k), p) for k, p in enumerate(probs) if p >= DECISION_THRESHOLD]
        return ", ".join(f"{n} {p:.2f}" for n, p in on) or "nothing present"

    def target_to_prediction(self, target: Any) -> dict[str, Any]:
        """``{"labels", "probs"}`` (0 or 1) marked ``"truth": True``, so it is drawn without numbers."""
        present = torch.as_tensor(self.task.labels(torch.as_tensor(target))).reshape(-1).float()
        return {"labels": [k for k, v in enumerate(present.tolist()) if v > 0.5],
                "probs": (present > 0.5).float().tolist(), "truth": True}

    def top_k(self, prediction: dict[str, Any], k: int = 3) -> list[tuple[str, float]]:
        names = [self.task.class_name(i) for i in range(self.size())]
        return top_probabilities(prediction.get("probs"), names, k)

    def error_chips(self, prediction: dict[str, Any], truth: dict[str, Any],
                    score_threshold: float = 0.3) -> list[tuple[str, tuple[int, int, int]]]:
        """Each class decided present (probability >= 0.5) or truly present: green when both
        ("circle 0.87"), red when only predicted, amber "missed star 0.12" when only true."""
        probs = [float(p) for p in prediction.get("probs") or []]
        if not probs:  # a prediction without probabilities: its labels are its decisions
            probs = [1.0 if k in set(prediction.get("labels", [])) else 0.0 for k in range(self.size())]
        true = {int(k) for k in truth["labels"]}
        hits, false, missed = [], [], []
        for k, p in sorted(enumerate(probs), key=lambda kp: -kp[1]):
            name = f"{self.task.class_name(k)} {p:.2f}"
            if p >= DECISION_THRESHOLD:
                (hits if k in true else false).append((name, HIT if k in true else WRONG))
            elif k in true:
                missed.append((f"missed {name}", MISSED))
        return hits + false + missed

    def draw_errors(self, image: Tensor, prediction: dict[str, Any], truth: dict[str, Any],
                    score_threshold: float = 0.3) -> Tensor:
        """:meth:`error_chips` stacked at the bottom-left, where :meth:`draw` puts the chips."""
        return legend(image, self.error_chips(prediction, truth), corner=self.corner)  # (3, H, W)

    def error_legend(self) -> list[tuple[str, str]]:
        return [("hit", hex_colour(HIT)), ("false positive", hex_colour(WRONG)), ("missed", hex_colour(MISSED))]
