"""Object counting as classification over ``0 .. max_objects``.

Treating a small count range as classes (softmax cross-entropy) rather than regressing a
number follows the "counting as classification" baselines of Chattopadhyay et al., "Counting
Everyday Objects in Everyday Scenes" (CVPR 2017); the mean absolute error is reported beside
accuracy because being off by one is better than being off by three.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl_core.data.base import DatasetInfo
from mtl_core.measures.stats import confusion_from_pairs, labelled, reliability, single_label_errors
from mtl_core.measures.types import COUNT, FLAG, FRACTION, TEXT, Confusion, Curve, ErrorColumn
from mtl_core.tasks.base import Task, register_task, top_probabilities, verdict
from mtl_core.tasks.classification import as_batch, pooled_head, topk_accuracy
from mtl_core.tasks.drawing import HIT, WRONG, hex_colour, label_text

COUNT_COLOUR = (40, 40, 40)


@register_task("count")
class Count(Task):
    """How many objects are visible, ``0 .. max_objects``; metrics ``accuracy`` (primary) and
    ``mae`` (mean absolute error of the most likely count, in objects). Counts above
    ``max_objects`` in a target are treated as ``max_objects``. Both metrics are 0.0 on an
    empty set."""

    primary = "accuracy"
    higher_is_better = True
    title = "Object count"
    description = "how many objects are visible"
    draw_order = 40
    fusion = "softmax"

    def __init__(self, info: DatasetInfo) -> None:
        super().__init__(info)
        self.max_count = max(int(info.max_objects), 1)

    @property
    def num_outputs(self) -> int:
        return self.max_count + 1

    def head(self, channels: int, stride: int = 1) -> nn.Module:
        return pooled_head(channels, self.num_outputs)

    def _counts(self, target: Tensor) -> Tensor:
        return target.reshape(-1).long().clamp(0, self.max_count)  # (B,)

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(as_batch(output).float(), self._counts(target))

    def metrics(self, outputs: Tensor, targets: Tensor) -> dict[str, float]:
        logits, counts = as_batch(outputs).float(), self._counts(targets)  # (N, K+1), (N,)
        if logits.shape[0] == 0:
            return {"accuracy": 0.0, "mae": 0.0}
        error = (logits.argmax(dim=1) - counts).abs().float()
        return {"accuracy": topk_accuracy(logits, counts, 1), "mae": float(error.mean())}

    # ---- inspection ----------------------------------------------------------------------
    error_columns = (
        ErrorColumn("failed", "wrong count", FLAG),
        ErrorColumn("error", "count error", COUNT, help="objects too many or too few"),
        ErrorColumn("confidence", "confidence", FRACTION, worse=""),
        ErrorColumn("truth", "true count", TEXT, worse=""),
        ErrorColumn("predicted", "predicted count", TEXT, worse=""),
    )

    def _name(self, n: int) -> str:
        return str(int(n))

    def sample_errors(self, predictions, truths, score_threshold: float = 0.3) -> dict[str, list]:
        clipped = [None if t is None else {**t, "count": min(max(int(t["count"]), 0), self.max_count)} for t in truths]
        out = single_label_errors(predictions, clipped, "count", self._name)
        out["error"] = [float("nan") if t is None else float(abs(int(p["count"]) - int(t["count"])))
                        for p, t in zip(predictions, clipped, strict=True)]
        del out["true_prob"]
        return {c.name: out[c.name] for c in self.error_columns}

    def confusions(self, predictions, truths, score_threshold: float = 0.3) -> list[Confusion]:
        names = [self._name(n) for n in range(self.num_outputs)]
        pairs = [(min(max(int(truths[i]["count"]), 0), self.max_count), int(predictions[i]["count"]), i, 1)
                 for i in labelled(truths)]
        matrix = confusion_from_pairs("Object count", names, names, pairs)
        for samples in matrix.samples.values():  # the most confident first, as classification's
            samples.sort(key=lambda i: -float(predictions[i].get("score", 0.0)))
        return [matrix]

    def curves(self, predictions, truths, score_threshold: float = 0.3) -> list[Curve]:
        idx = labelled(truths)
        return [reliability("Object count", [float(predictions[i]["score"]) for i in idx],
                            [int(predictions[i]["count"]) == min(int(truths[i]["count"]), self.max_count) for i in idx])]

    def decode(self, output: Tensor, image_size: tuple[int, int] | None = None) -> list[dict[str, Any]]:
        """``[{"count": int, "score": its probability, "probs": [max_objects + 1 floats]}]`` per image."""
        probs = as_batch(output).detach().float().softmax(dim=1).cpu()  # (B, K+1)
        score, count = probs.max(dim=1)
        return [{"count": int(count[i]), "score": float(score[i]), "probs": probs[i].tolist()}
                for i in range(probs.shape[0])]

    image_level = True

    @staticmethod
    def count_name(n: int) -> str:
        """"1 object", "3 objects"."""
        return f"{n} object{'' if n == 1 else 's'}"

    def chips(self, prediction: dict[str, Any], score_threshold: float = 0.3) -> list[tuple[str, tuple[int, int, int]]]:
        """"3 objects 0.81"; "3 objects" for a ground truth (no ``score``)."""
        score = prediction.get("score")
        text = self.count_name(int(prediction["count"])) + ("" if score is None else f" {float(score):.2f}")
        return [(text, COUNT_COLOUR)]

    def draw(self, image: Tensor, prediction: dict[str, Any], opacity: float = 0.5,
             score_threshold: float = 0.3) -> Tensor:
        """:meth:`chips` at the top-right; always shown (the count is the answer, however unsure)."""
        ((text, colour),) = self.chips(prediction)
        return label_text(image, text, colour, corner="top-right")

    def summarize(self, prediction: dict[str, Any], score_threshold: float = 0.3) -> str:
        return f"{float(prediction['count']):.1f}".rstrip("0").rstrip(".") + " objects"

    def caption(self, prediction: dict[str, Any]) -> str:
        return self.count_name(int(prediction["count"]))

    def target_to_prediction(self, target: Any) -> dict[str, Any]:
        """``{"count", "probs"}`` (one-hot) and no ``score``: a ground truth is drawn without one."""
        n = int(torch.as_tensor(target).reshape(-1)[0])
        probs = [0.0] * self.num_outputs
        probs[min(max(n, 0), self.max_count)] = 1.0
        return {"count": n, "probs": probs}

    def top_k(self, prediction: dict[str, Any], k: int = 3) -> list[tuple[str, float]]:
        """The most likely counts: ``[("2 objects", 0.7), ("1 object", 0.2), ...]``."""
        return top_probabilities(prediction.get("probs"), [self.count_name(n) for n in range(self.num_outputs)], k)

    def error_chips(self, prediction: dict[str, Any], truth: dict[str, Any],
                    score_threshold: float = 0.3) -> list[tuple[str, tuple[int, int, int]]]:
        """"3 objects ✓ 81%" in green, or "2 objects ✗ 55% (truth: 3 objects)" in red."""
        score = prediction.get("score")
        return [verdict(self.count_name(int(prediction["count"])), None if score is None else float(score),
                        self.count_name(int(truth["count"])))]

    def draw_errors(self, image: Tensor, prediction: dict[str, Any], truth: dict[str, Any],
                    score_threshold: float = 0.3) -> Tensor:
        """:meth:`error_chips` at the top-right, where :meth:`draw` puts the count."""
        ((text, colour),) = self.error_chips(prediction, truth)
        return label_text(image, text, colour, corner="top-right")  # (3, H, W)

    def error_legend(self) -> list[tuple[str, str]]:
        return [("right", hex_colour(HIT)), ("wrong", hex_colour(WRONG))]
