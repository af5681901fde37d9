"""Output-level fusion: an ensemble of several finished runs, each with a weight.

Averaging the predicted probabilities of independently trained networks is the deep ensemble of
Lakshminarayanan, Pritzel and Blundell, "Simple and Scalable Predictive Uncertainty Estimation
using Deep Ensembles" (NeurIPS 2017); a (weighted) majority vote over the members' classes is
the older alternative (Kittler et al., "On Combining Classifiers", TPAMI 1998). Per task:

- classification / count: weighted mean of the softmax probabilities (or, with
  ``class_fusion="vote"``, a weighted majority vote, ties broken by the mean probability);
- multilabel: weighted mean of the sigmoid probabilities;
- segmentation: per-pixel weighted mean of the softmax probabilities, every member's logits
  resampled (bilinear) to one common size first;
- depth: weighted mean of the depth maps at that size;
- normals: weighted mean of the normal maps at that size, made unit length again by the task's
  ``decode`` (and its metrics): the direction with the largest weighted sum of cosines to the members'
  (the one their loss, 1 - cos, would choose);
- detection: the members' decoded boxes merged with weighted boxes fusion (Solovyev, Wang and
  Gabruseva, "Weighted boxes fusion: Ensembling boxes from different object detection models",
  Image and Vision Computing 107, 2021) or with class-wise NMS over all members' boxes.

Members may differ in architecture, weighting method and input size (each sees the image at its
own training height x width, brought there as its run's data was, and its outputs come back to the
image's pixels before they are fused); they must share the tasks and the dataset's classes.
"""
from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import batched_nms, box_iou

from mtl_core.data import build_dataset
from mtl_core.data.base import cat_batches, select, unpad_detection
from mtl_core.errors import ConfigError
from mtl_core.inference.predictor import INFER_LOCK, Predictor, outputs_in_photo
from mtl_core.measures.map_metric import mean_average_precision
from mtl_core.tasks.drawing import draw_all
from mtl_core.training.evaluation import iterate_batches

WBF_IOU = 0.55  # Solovyev et al.'s default for fusing boxes across models
NMS_IOU = 0.5
CLASS_FUSIONS = ("average", "vote")
BOX_FUSIONS = ("wbf", "nms")
# how each task's outputs are fused is its display's ``fusion`` (mtl_core.tasks.base): the kind of
# output a head of its kind gives, one of these
FUSION_KINDS = ("softmax", "sigmoid", "dense_softmax", "dense_mean", "boxes")
EPS = 1e-12
# Two zero-area boxes (a barely trained detector emits zero-height ones) have IoU 0/0 = NaN, so
# neither NMS nor WBF would ever merge two copies of one; equal boxes are treated as IoU 1 instead.
SAME_BOX_PX = 1e-4


# -- boxes --------------------------------------------------------------------------------
def weighted_boxes_fusion(boxes: Sequence[Tensor], scores: Sequence[Tensor], labels: Sequence[Tensor],
                          weights: Sequence[float] | None = None, iou_threshold: float = WBF_IOU,
                          skip_threshold: float = 0.0) -> dict[str, Tensor]:
    """Weighted boxes fusion (Solovyev et al. 2021) of one image's boxes from several models.

    ``boxes[m]`` ``(n_m, 4)`` xyxy, ``scores[m]`` ``(n_m,)``, ``labels[m]`` ``(n_m,)`` for model ``m``.
    Each score is multiplied by its model's weight; per class, boxes are taken in descending
    weighted score and each joins the fused box it overlaps most if that IoU exceeds
    ``iou_threshold``, else starts a new one. A fused box's coordinates are the weighted-score
    weighted mean of its members; its score is their weighted-score sum divided by the sum of
    the model weights (the mean over models, a model that missed the object counting as 0;
    the paper's ``C * min(T, N) / N`` with weights). Returns ``{"boxes", "scores", "labels"}``
    sorted by descending score.
    """
    n_models = len(boxes)
    w = [1.0] * n_models if weights is None else [float(x) for x in weights]
    if len(w) != n_models or n_models == 0:
        raise ValueError(f"got {len(w)} weights for {n_models} models")
    all_boxes = torch.cat([b.reshape(-1, 4).float() for b in boxes])  # (N, 4)
    all_scores = torch.cat([s.reshape(-1).float() * wm for s, wm in zip(scores, w, strict=True)])  # (N,) weighted
    raw_scores = torch.cat([s.reshape(-1).float() for s in scores])
    all_labels = torch.cat([lb.reshape(-1).long() for lb in labels])
    keep = (raw_scores >= skip_threshold) & (all_scores > 0)  # a zero weight adds no evidence (and no 0/0)
    all_boxes, all_scores, all_labels = all_boxes[keep], all_scores[keep], all_labels[keep]
    out_boxes, out_scores, out_labels = [], [], []
    total_weight = sum(w)
    for c in torch.unique(all_labels).tolist():
        sel = all_labels == c
        b, s = all_boxes[sel], all_scores[sel]
        order = torch.sort(s, descending=True, stable=True).indices
        b, s = b[order], s[order]
        coord_sum: list[Tensor] = []  # per fused box: sum of score * coordinates
        conf_sum: list[Tensor] = []  # per fused box: sum of scores
        fused: list[Tensor] = []  # per fused box: current coordinates, matched against
        for j in range(b.shape[0]):  # sequential by design: each box sees the clusters before it
            if fused:
                stacked = torch.stack(fused)  # (F, 4)
                iou = box_iou(b[j:j + 1], stacked)[0]  # (F,)
                iou = torch.where(iou.isnan(), _same_box(b[j:j + 1], stacked)[0].float(), iou)
                best = int(iou.argmax())
                if float(iou[best]) > iou_threshold:
                    coord_sum[best] = coord_sum[best] + s[j] * b[j]
                    conf_sum[best] = conf_sum[best] + s[j]
                    fused[best] = coord_sum[best] / conf_sum[best]
                    continue
            coord_sum.append(s[j] * b[j])
            conf_sum.append(s[j])
            fused.append(b[j])
        if fused:
            out_boxes.append(torch.stack(fused))
            out_scores.append(torch.stack(conf_sum) / total_weight)
            out_labels.append(torch.full((len(fused),), c, dtype=torch.long))
    return _sorted(out_boxes, out_scores, out_labels)


def nms_fusion(boxes: Sequence[Tensor], scores: Sequence[Tensor], labels: Sequence[Tensor],
               weights: Sequence[float] | None = None, iou_threshold: float = NMS_IOU) -> dict[str, Tensor]:
    """All models' boxes pooled, each score times its model's weight over the largest weight, then
    class-wise NMS (``torchvision.ops.batched_nms``): the best box of each overlapping group wins."""
    n_models = len(boxes)
    w = [1.0] * n_models if weights is None else [float(x) for x in weights]
    top = max(w)
    all_boxes = torch.cat([b.reshape(-1, 4).float() for b in boxes])  # (N, 4)
    all_scores = torch.cat([s.reshape(-1).float() * (wm / top) for s, wm in zip(scores, w, strict=True)])  # (N,)
    all_labels = torch.cat([lb.reshape(-1).long() for lb in labels])
    keep = batched_nms(all_boxes, all_scores, all_labels, iou_threshold)  # sorted by descending score
    kb, kl = all_boxes[keep], all_labels[keep]
    same = _same_box(kb, kb) & (kl[:, None] == kl[None, :])  # (K, K)
    duplicate = (same & torch.ones_like(same).tril(-1)).any(dim=1)  # equal to a better box of its class
    keep = keep[~duplicate & (all_scores[keep] > 0)]
    return {"boxes": all_boxes[keep], "scores": all_scores[keep], "labels": all_labels[keep]}


def _same_box(a: Tensor, b: Tensor) -> Tensor:
    """``(N, M)`` True where box ``a[i]`` equals ``b[j]`` to 1e-4 px."""
    return (a[:, None, :] - b[None, :, :]).abs().amax(dim=-1) <= SAME_BOX_PX


def _sorted(boxes: list[Tensor], scores: list[Tensor], labels: list[Tensor]) -> dict[str, Tensor]:
    if not boxes:
        return {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}
    b, s, lb = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
    order = torch.sort(s, descending=True, stable=True).indices
    return {"boxes": b[order], "scores": s[order], "labels": lb[order]}


# -- the ensemble -------------------------------------------------------------------------
class Ensemble:
    """Several trained runs whose outputs are fused per task (see the module docstring).

    ``predict`` and ``overlay`` work like :class:`~mtl_core.inference.predictor.Predictor`'s; ``evaluate``
    scores the fused outputs with each task's own metrics (detection: COCO mAP of the fused boxes).
    """

    def __init__(self, predictors: Sequence[Any], weights: Sequence[float] | None = None,
                 names: Sequence[str] | None = None, class_fusion: str = "average", box_fusion: str = "wbf",
                 iou_threshold: float | None = None) -> None:
        if not predictors:
            raise ConfigError("ensemble.members", "an ensemble needs at least one run; pick two or more")
        weights = [1.0] * len(predictors) if weights is None else [float(w) for w in weights]
        if len(weights) != len(predictors):
            raise ConfigError("ensemble.weights", f"{len(weights)} weights for {len(predictors)} runs; give one per run")
        if any(not w >= 0 for w in weights) or sum(weights) <= 0:
            raise ConfigError("ensemble.weights", f"weights must be >= 0 with a positive sum, got {weights}")
        if class_fusion not in CLASS_FUSIONS:
            raise ConfigError("ensemble.class_fusion", f"unknown {class_fusion!r}; use one of: {', '.join(CLASS_FUSIONS)}")
        if box_fusion not in BOX_FUSIONS:
            raise ConfigError("ensemble.box_fusion", f"unknown {box_fusion!r}; use one of: {', '.join(BOX_FUSIONS)}")
        first = predictors[0]
        for i, p in enumerate(predictors[1:], 1):
            if set(p.tasks) != set(first.tasks):
                raise ConfigError("ensemble.members", f"run {i + 1} has tasks {sorted(p.tasks)}, run 1 has "
                                  f"{sorted(first.tasks)}; ensemble runs trained on the same tasks")
            if tuple(p.info.class_names) != tuple(first.info.class_names) or p.config.data.dataset != first.config.data.dataset:
                raise ConfigError("ensemble.members", f"run {i + 1} was trained on other data ({p.config.data.dataset}, "
                                  f"classes {list(p.info.class_names)}); ensemble runs of the same dataset")
        unknown = [t for t, task in first.tasks.items() if task.display.fusion not in FUSION_KINDS]
        if unknown:
            raise ConfigError("ensemble.members", f"no output fusion for task(s) {', '.join(unknown)}: an ensemble "
                              f"fuses tasks whose outputs are one of {', '.join(FUSION_KINDS)}")
        self.members = list(predictors)
        self.weights = weights
        self.names = list(names) if names is not None else [f"run {i + 1}" for i in range(len(predictors))]
        self.class_fusion = class_fusion
        self.box_fusion = box_fusion
        self.iou_threshold = iou_threshold if iou_threshold is not None else (WBF_IOU if box_fusion == "wbf" else NMS_IOU)
        self.tasks = first.tasks  # the first member's Task objects decode, score and draw the fused outputs
        self.config = first.config
        self.info = first.info

    @classmethod
    def from_checkpoints(cls, paths: Sequence[str | os.PathLike], weights: Sequence[float] | None = None,
                         names: Sequence[str] | None = None, device: str = "cpu", **options: Any) -> Ensemble:
        """One member per checkpoint; ``names`` default to each checkpoint's folder (the run id)."""
        predictors = [Predictor(p, device) for p in paths]
        names = names if names is not None else [Path(p).parent.name or Path(p).name for p in paths]
        return cls(predictors, weights, names, **options)

    @classmethod
    def from_runs(cls, store, run_ids: Sequence[str], weights: Sequence[float] | None = None,
                  device: str = "cpu", **options: Any) -> Ensemble:
        """One member per run of ``store`` (its chosen checkpoint, ``RunStore.chosen_checkpoint``),
        named by run id."""
        paths = []
        for rid in run_ids:
            ck = store.chosen_checkpoint(rid)
            if ck is None:
                raise ConfigError("ensemble.members", f"run {rid} has no checkpoint yet; wait until it has trained")
            paths.append(ck["path"])
        return cls.from_checkpoints(paths, weights, list(run_ids), device, **options)

    @property
    def description(self) -> str:
        return f"ensemble of {len(self.members)} ({self.class_fusion} classes, {self.box_fusion} boxes)"

    # -- forward and fusion -----------------------------------------------------------------
    @torch.no_grad()
    def member_outputs(self, images: Tensor) -> list[dict[str, Any]]:
        """Every member's outputs for float ``(B, 3, H, W)`` images, each member seeing them brought
        to its own input size as :class:`Predictor` does (its run's resize policy). Where a
        letterbox or crop moved the image, outputs come back over the images' frame
        (:func:`~mtl_core.inference.predictor.outputs_in_photo`): dense maps at ``(H, W)``, boxes
        decoded in the images' pixels (a list of predictions per image); otherwise raw."""
        outs = []
        for p in self.members:
            x = images.float()
            f = p.fit_for(x.shape)
            out = p.model(f.image(x).to(p.device))  # (B, 3, h, w) at the member's size
            outs.append(outputs_in_photo(p.tasks, out, f))
        return outs

    def fuse(self, outputs: Sequence[dict[str, Any]], size: tuple[int, int]) -> dict[str, Any]:
        """Fuse the members' raw outputs for a batch into one output per task, at image ``size = (H, W)``.

        softmax tasks: log of the fused probabilities ``(B, K)`` (voting: ``{"scores": (B, K) ranking
        by votes then mean probability, "probs": (B, K) mean probabilities}``); multilabel: logits
        of the mean probabilities;
        segmentation: log mean probabilities ``(B, K+1, H, W)``; depth: ``(B, 1, H, W)``; normals:
        ``(B, 3, H, W)``, not unit length until decoded;
        detection: a list of fused ``{"boxes", "scores", "labels"}``, one per image.
        Every tensor is on the CPU, so each task's ``decode`` and ``metrics`` take it as a head output.
        """
        w = torch.tensor(self.weights, dtype=torch.float32)
        w = w / w.sum()  # (M,)
        fused: dict[str, Any] = {}
        for t, task in self.tasks.items():
            kind = task.display.fusion
            outs = [o[t] for o in outputs]
            if kind == "boxes":  # decoded already where a member's letterbox moved them (see member_outputs)
                per_member = [o if isinstance(o, list) else task.decode({k: v.float().cpu() for k, v in o.items()}, size)
                              for o in outs]
                fuse = weighted_boxes_fusion if self.box_fusion == "wbf" else nms_fusion
                fused[t] = [fuse([m[i]["boxes"] for m in per_member], [m[i]["scores"] for m in per_member],
                                 [m[i]["labels"] for m in per_member], self.weights, self.iou_threshold)
                            for i in range(len(per_member[0]))]
            elif kind == "softmax":
                probs = torch.stack([o.float().cpu().softmax(dim=1) for o in outs])  # (M, B, K)
                mean = (w[:, None, None] * probs).sum(0)  # (B, K)
                if self.class_fusion == "vote":
                    fused[t] = {"scores": self._vote_scores(probs, mean), "probs": mean}
                else:
                    fused[t] = mean.clamp(min=EPS).log()
            elif kind == "sigmoid":
                probs = torch.stack([o.float().cpu().sigmoid() for o in outs])  # (M, B, K)
                fused[t] = torch.logit((w[:, None, None] * probs).sum(0), eps=1e-7)  # (B, K)
            elif kind == "dense_softmax":
                probs = torch.stack([_resize(o, size).softmax(dim=1) for o in outs])  # (M, B, K+1, H, W)
                fused[t] = torch.einsum("m,mbkhw->bkhw", w, probs).clamp(min=EPS).log()  # (B, K+1, H, W)
            else:  # dense_mean (depth, normals)
                depths = torch.stack([_resize(o if o.dim() == 4 else o[:, None], size) for o in outs])  # (M, B, 1, H, W)
                fused[t] = torch.einsum("m,mbchw->bchw", w, depths)  # (B, 1, H, W)
        return fused

    def _vote_scores(self, probs: Tensor, mean: Tensor) -> Tensor:
        """``(B, K)`` scores ranking classes by weighted votes, ties by mean probability, so that
        argmax is the vote winner and top-k follows the same order."""
        m, b, k = probs.shape
        winners = probs.argmax(dim=2)  # (M, B)
        votes = torch.zeros(b, k).index_put_((torch.arange(b).repeat(m), winners.reshape(-1)),
                                             torch.tensor(self.weights).repeat_interleave(b), accumulate=True)  # (B, K)
        by_prob = mean.argsort(dim=1, descending=True, stable=True)  # (B, K)
        order = by_prob.gather(1, votes.gather(1, by_prob).argsort(dim=1, descending=True, stable=True))
        scores = torch.empty(b, k)
        scores.scatter_(1, order, torch.arange(k, 0, -1, dtype=torch.float32).expand(b, k).contiguous())
        return scores  # (B, K): K for the winner ... 1 for the last

    def decode(self, fused: dict[str, Any], size: tuple[int, int]) -> list[dict[str, Any]]:
        """Per image ``{task: prediction}`` (from :meth:`fuse`'s output) in each task's ``decode`` format."""
        preds: dict[str, list[dict[str, Any]]] = {}
        for t, task in self.tasks.items():
            kind = task.display.fusion
            if kind == "boxes":
                preds[t] = fused[t]
            elif kind == "softmax" and self.class_fusion == "vote":
                # the label is the vote winner; score and probs stay the mean probabilities
                probs, winners = fused[t]["probs"], fused[t]["scores"].argmax(dim=1)  # (B, K), (B,)
                decoded = task.decode(probs.clamp(min=EPS).log(), size)
                for i, d in enumerate(decoded):
                    d["count" if "count" in d else "label"] = int(winners[i])
                    d["score"] = float(probs[i, winners[i]])
                preds[t] = decoded
            else:
                preds[t] = task.decode(fused[t], size)
        n = len(next(iter(preds.values())))
        return [{t: preds[t][i] for t in self.tasks} for i in range(n)]

    # -- the Predictor interface ---------------------------------------------------------------
    def predict(self, image: Tensor) -> tuple[dict[str, dict[str, Any]], float]:
        """uint8 or float ``(3, H, W)`` -> ``({task: fused prediction in image coordinates}, seconds)``."""
        h, w = image.shape[-2:]
        x = (image.float() / 255 if image.dtype == torch.uint8 else image.float())[None]  # (1, 3, H, W)
        with INFER_LOCK:
            t0 = time.perf_counter()
            outputs = self.member_outputs(x)
            fused = self.fuse(outputs, (h, w))
            preds = self.decode(fused, (h, w))[0]
            seconds = time.perf_counter() - t0
        return preds, seconds

    def overlay(self, image: Tensor, predictions: dict[str, dict[str, Any]], show: dict[str, bool] | None = None,
                opacity: float = 0.5, score_threshold: float = 0.3) -> Tensor:
        return draw_all(self.tasks, image, predictions, show, opacity, score_threshold)

    @torch.no_grad()
    def evaluate(self, dataset=None, split: str = "val", batch_size: int = 64, limit: int | None = None) -> dict[str, float]:
        """``{"<task>/<metric>": value}`` of the fused outputs on ``dataset`` (default: the first
        member's ``split``), each task scored by its own ``metrics``; detection by COCO mAP of the
        fused boxes (``map50``, ``map``). Fused at the dataset's label size."""
        if dataset is None:
            dataset = build_dataset(self.config, split, self.config.seed)
        outputs: dict[str, list[Any]] = {t: [] for t in self.tasks}
        targets: dict[str, list[Any]] = {t: [] for t in self.tasks}
        for images, batch_targets in iterate_batches(dataset, batch_size, limit):
            size = tuple(images.shape[-2:])
            fused = self.fuse(self.member_outputs(images), size)
            for t, task in self.tasks.items():
                out = fused[t]
                tgt, valid = task.target_of(batch_targets)
                if valid is not None:  # only the samples that have this task's label
                    if isinstance(out, list):  # fused boxes, one dict per image
                        out = [o for o, v in zip(out, valid.tolist(), strict=True) if v]
                    else:
                        out = select(out, valid)
                    tgt = select(tgt, valid)
                    if int(valid.sum()) == 0:
                        continue
                outputs[t].append(out)
                targets[t].append(tgt)
        result: dict[str, float] = {}
        for t, task in self.tasks.items():
            if not outputs[t]:
                continue
            if task.display.fusion == "boxes":  # fused boxes are already decoded: score them as DetectionTask does
                preds = [p for batch in outputs[t] for p in batch]
                gts = unpad_detection(cat_batches(targets[t]))
                m = mean_average_precision(preds, gts)
                metrics = {"map50": float(m["map50"]), "map": float(m["map"])}
            else:
                out = cat_batches(outputs[t])
                metrics = task.metrics(out["scores"] if isinstance(out, dict) else out, cat_batches(targets[t]))
            result.update({f"{t}/{k}": float(v) for k, v in metrics.items()})
        return result


def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """``(B, C, h, w)`` float32 on the CPU at ``size`` (bilinear; a no-op at that size)."""
    x = x.float().cpu()
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def evaluate_members_and_ensemble(ensemble: Ensemble, dataset=None, split: str = "val", batch_size: int = 64,
                                  limit: int | None = None) -> list[dict[str, Any]]:
    """A table for the compare page: one row per member and one for the ensemble, each
    ``{"model", "weight", "<task>/<metric>": value, ...}``, all on the same images and scored the
    same way (a member is scored as an ensemble of itself alone, so resizing and metrics match)."""
    if dataset is None:
        dataset = build_dataset(ensemble.config, split, ensemble.config.seed)
    total = sum(ensemble.weights)
    rows = []
    for p, name, w in zip(ensemble.members, ensemble.names, ensemble.weights, strict=True):
        alone = Ensemble([p], [1.0], [name], ensemble.class_fusion, ensemble.box_fusion, ensemble.iou_threshold)
        rows.append({"model": name, "weight": w / total, **alone.evaluate(dataset, batch_size=batch_size, limit=limit)})
    rows.append({"model": ensemble.description, "weight": 1.0,
                 **ensemble.evaluate(dataset, batch_size=batch_size, limit=limit)})
    return rows

