"""Multi-label classification: which classes are present in the image (any number of them).

One independent sigmoid per class with binary cross-entropy (the standard multi-label set-up,
e.g. Wang et al., "CNN-RNN: A Unified Framework for Multi-label Image Classification", CVPR
2016, and its baselines); mean average precision over classes as in the PASCAL VOC
classification challenge (Everingham et al., IJCV 2010), with scikit-learn's non-interpolated
``average_precision_score`` definition.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl_core.data.base import DatasetInfo
from mtl_core.measures.stats import confusion_from_pairs, labelled, per_sample, pr_curve
from mtl_core.measures.types import COUNT, FLAG, Confusion, Curve, ErrorColumn
from mtl_core.tasks.base import Task, register_task, top_probabilities
from mtl_core.tasks.classification import as_batch, pooled_head
from mtl_core.tasks.drawing import HIT, MISSED, WRONG, colour_for, hex_colour, legend

DECISION_THRESHOLD = 0.5  # probability above which a class counts as present (decode, exact_match, f1)


def average_precision(scores: Tensor, labels: Tensor) -> float:
    """Non-interpolated AP of one class: ``sum_n (R_n - R_{n-1}) P_n`` over the distinct score
    thresholds, highest first (tied scores form one threshold). NaN when there is no positive."""
    positives = float(labels.sum())
    if positives == 0:
        return float("nan")
    order = scores.argsort(descending=True, stable=True)
    s, y = scores[order], labels[order].double()  # (N,)
    tp, fp = y.cumsum(0), (1 - y).cumsum(0)
    last = torch.ones_like(s, dtype=torch.bool)
    last[:-1] = s[1:] != s[:-1]  # the last row of each run of equal scores is a threshold
    tp, fp = tp[last], fp[last]
    precision, recall = tp / (tp + fp), tp / positives
    previous = torch.cat([recall.new_zeros(1), recall[:-1]])
    return float(((recall - previous) * precision).sum())


@register_task("multilabel")
class MultiLabel(Task):
    """Presence of each of ``K`` classes; metrics over the whole set:

    - ``map`` (primary): mean over classes of :func:`average_precision`, over the classes with at
      least one positive in the set (AP is undefined without one);
    - ``exact_match``: fraction of images whose every class decision (probability >= 0.5) is right;
    - ``f1``: micro-averaged F1 of those decisions over all (image, class) pairs.

    All are 0.0 on an empty set; ``map`` is 0.0 when no class has a positive, and ``f1`` is 0.0
    when there is no positive label and no positive decision (scikit-learn's default).
    """

    primary = "map"
    higher_is_better = True
    title = "Multi-label"
    description = "which classes appear anywhere in the image"
    draw_order = 30
    fusion = "sigmoid"

    def __init__(self, info: DatasetInfo) -> None:
        super().__init__(info)
        self.num_classes = max(info.num_classes, 1)

    def head(self, channels: int, stride: int = 1) -> nn.Module:
        return pooled_head(channels, self.num_classes)

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        logits = as_batch(output).float()  # (B, K)
        return F.binary_cross_entropy_with_logits(logits, target.reshape(logits.shape).float())

    def metrics(self, outputs: Tensor, targets: Tensor) -> dict[str, float]:
        logits = as_batch(outputs).float()  # (N, K)
        truth = targets.reshape(logits.shape) > 0.5  # (N, K)
        if logits.shape[0] == 0:
            return {"map": 0.0, "exact_match": 0.0, "f1": 0.0}
        aps = torch.tensor([average_precision(logits[:, k], truth[:, k]) for k in range(logits.shape[1])])
        aps = aps[~aps.isnan()]
        decided = logits.sigmoid() >= DECISION_THRESHOLD  # (N, K)
        tp = float((decided & truth).sum())
        wrong = float((decided ^ truth).sum())  # false positives + false negatives
        return {
            "map": float(aps.mean()) if len(aps) else 0.0,
            "exact_match": float((decided == truth).all(dim=1).float().mean()),
            "f1": 2 * tp / (2 * tp + wrong) if tp + wrong > 0 else 0.0,
        }

    # ---- inspection ----------------------------------------------------------------------
    error_columns = (
        ErrorColumn("failed", "any class wrong", FLAG, help="a class decided present or absent wrongly"),
        ErrorColumn("wrong_classes", "wrong classes", COUNT),
        ErrorColumn("missed", "classes missed", COUNT, help="present but decided absent"),
        ErrorColumn("false", "false classes", COUNT, help="decided present but absent"),
    )

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
        for k in range(self.num_classes):
            pairs = [(0 if k in truths[i]["labels"] else 1, 0 if k in predictions[i]["labels"] else 1, i, 1) for i in idx]
            matrix = confusion_from_pairs(f"Multi-label: {self.class_name(k)}", ["present", "absent"],
                                          ["decided present", "decided absent"], pairs)
            for samples in matrix.samples.values():  # the most confidently wrong (or right) first
                samples.sort(key=lambda i: -abs(float(predictions[i]["probs"][k]) - 0.5))
            matrices.append(matrix)
        return matrices

    def curves(self, predictions, truths, score_threshold: float = 0.3) -> list[Curve]:
        """Precision-recall per class over the set's images; AP as the run's ``map`` computes it."""
        idx = labelled(truths)
        curves = []
        for k in range(self.num_classes):
            scores = [float(predictions[i]["probs"][k]) for i in idx]
            hits = [k in truths[i]["labels"] for i in idx]
            if sum(hits) == 0:
                continue
            ap = average_precision(torch.tensor(scores), torch.tensor(hits))
            curves.append(pr_curve(self.class_name(k), scores, hits, sum(hits), DECISION_THRESHOLD, ap, "AP"))
        return curves

    def decode(self, output: Tensor, image_size: tuple[int, int] | None = None) -> list[dict[str, Any]]:
        """``[{"labels": [present classes, most likely first], "probs": [K floats]}]`` per image."""
        probs = as_batch(output).detach().float().sigmoid().cpu()  # (B, K)
        preds = []
        for p in probs:
            order = p.argsort(descending=True, stable=True).tolist()
            preds.append({"labels": [k for k in order if p[k] >= DECISION_THRESHOLD], "probs": p.tolist()})
        return preds

    image_level = True

    @staticmethod
    def is_truth(prediction: dict[str, Any]) -> bool:
        """A ground truth (:meth:`target_to_prediction`: ``"truth": True``) or a prediction without
        probabilities: its classes are shown without numbers."""
        return bool(prediction.get("truth")) or "probs" not in prediction

    def chips(self, prediction: dict[str, Any], score_threshold: float = 0.3) -> list[tuple[str, tuple[int, int, int]]]:
        """A chip per class with probability >= ``score_threshold``, most likely first ("circle 0.87");
        a ground truth's classes by name alone ("circle")."""
        if self.is_truth(prediction):
            return [(self.class_name(int(k)), colour_for(int(k))) for k in prediction["labels"]]
        probs = [float(p) for p in prediction["probs"]]
        shown = sorted((k for k, p in enumerate(probs) if p >= score_threshold), key=lambda k: -probs[k])
        return [(f"{self.class_name(k)} {probs[k]:.2f}", colour_for(k)) for k in shown]

    def draw(self, image: Tensor, prediction: dict[str, Any], opacity: float = 0.5,
             score_threshold: float = 0.3) -> Tensor:
        """:meth:`chips` stacked at the bottom-left (the most likely at the bottom); ``opacity``
        does not apply."""
        return legend(image, self.chips(prediction, score_threshold), corner="bottom-left")

    def summarize(self, prediction: dict[str, Any], score_threshold: float = 0.3) -> str:
        """The classes decided present (probability >= 0.5), with their probabilities; a ground
        truth's by name ("circle, triangle")."""
        if self.is_truth(prediction):
            return ", ".join(self.class_name(int(k)) for k in prediction["labels"]) or "nothing present"
        probs = torch.as_tensor(prediction["probs"]).reshape(-1).tolist()
        on = [(self.class_name(k), p) for k, p in enumerate(probs) if p >= DECISION_THRESHOLD]
        return ", ".join(f"{n} {p:.2f}" for n, p in on) or "nothing present"

    def target_to_prediction(self, target: Any) -> dict[str, Any]:
        """``{"labels", "probs"}`` (0 or 1) marked ``"truth": True``, so it is drawn without numbers."""
        present = torch.as_tensor(target).reshape(-1).float()
        return {"labels": [k for k, v in enumerate(present.tolist()) if v > 0.5],
                "probs": (present > 0.5).float().tolist(), "truth": True}

    def top_k(self, prediction: dict[str, Any], k: int = 3) -> list[tuple[str, float]]:
        names = [self.class_name(i) for i in range(self.num_classes)]
        return top_probabilities(prediction.get("probs"), names, k)

    def error_chips(self, prediction: dict[str, Any], truth: dict[str, Any],
                    score_threshold: float = 0.3) -> list[tuple[str, tuple[int, int, int]]]:
        """Each class decided present (probability >= 0.5) or truly present: green when both
        ("circle 0.87"), red when only predicted, amber "missed star 0.12" when only true."""
        probs = [float(p) for p in prediction.get("probs") or []]
        if not probs:  # a prediction without probabilities: its labels are its decisions
            probs = [1.0 if k in set(prediction.get("labels", [])) else 0.0 for k in range(self.num_classes)]
        true = {int(k) for k in truth["labels"]}
        hits, false, missed = [], [], []
        for k, p in sorted(enumerate(probs), key=lambda kp: -kp[1]):
            name = f"{self.class_name(k)} {p:.2f}"
            if p >= DECISION_THRESHOLD:
                (hits if k in true else false).append((name, HIT if k in true else WRONG))
            elif k in true:
                missed.append((f"missed {name}", MISSED))
        return hits + false + missed

    def draw_errors(self, image: Tensor, prediction: dict[str, Any], truth: dict[str, Any],
                    score_threshold: float = 0.3) -> Tensor:
        """:meth:`error_chips` stacked at the bottom-left, where :meth:`draw` puts the chips."""
        return legend(image, self.error_chips(prediction, truth), corner="bottom-left")  # (3, H, W)

    def error_legend(self) -> list[tuple[str, str]]:
        return [("hit", hex_colour(HIT)), ("false positive", hex_colour(WRONG)), ("missed", hex_colour(MISSED))]
