"""COCO mAP on hand-made cases whose answer is worked out in the comments, plus a cross-check
against a line-by-line port of pycocotools' evaluateImg/accumulate on random boxes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mtl_core.measures.map_metric import COCO_IOU_THRESHOLDS, mean_average_precision


def gt(boxes, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "labels": torch.tensor(labels, dtype=torch.long)}


def det(boxes, labels, scores):
    d = gt(boxes, labels)
    d["scores"] = torch.tensor(scores, dtype=torch.float32)
    return d


BOX = [10.0, 10.0, 20.0, 20.0]


def shifted(dx):
    return [BOX[0] + dx, BOX[1], BOX[2] + dx, BOX[3]]


def test_perfect_prediction_scores_one():
    targets = [gt([BOX, [30, 30, 50, 45]], [0, 1]), gt([[0, 0, 8, 8]], [1])]
    preds = [det(t["boxes"].tolist(), t["labels"].tolist(), [0.9] * len(t["labels"])) for t in targets]
    r = mean_average_precision(preds, targets)
    assert r["map50"] == pytest.approx(1.0)
    assert r["map"] == pytest.approx(1.0)
    assert all(v == pytest.approx(1.0) for v in r["per_threshold"].values())
    assert len(r["per_threshold"]) == 10


def test_no_predictions_scores_zero():
    targets = [gt([BOX], [0])]
    r = mean_average_precision([det([], [], [])], targets)
    assert r["map50"] == 0.0 and r["map"] == 0.0


def test_wrong_class_scores_zero():
    # class 1 has a prediction but no GT: ignored; class 0 has a GT and no prediction: AP 0
    r = mean_average_precision([det([BOX], [1], [0.9])], [gt([BOX], [0])])
    assert r["map50"] == 0.0 and r["map"] == 0.0
    assert r["per_class"] == {0: 0.0}


def test_shift_between_thresholds():
    # 10x10 boxes shifted by 2.4 px: IoU = 7.6*10 / (200 - 76) = 76/124 = 0.6129;
    # matches at 0.5, 0.55, 0.6 (AP 1 each), not at 0.65 ... 0.95 (AP 0): map = 3/10
    r = mean_average_precision([det([shifted(2.4)], [0], [0.8])], [gt([BOX], [0])])
    assert r["map50"] == pytest.approx(1.0)
    assert r["map"] == pytest.approx(0.3)
    assert [r["per_threshold"][t] for t in (0.55, 0.6, 0.65)] == pytest.approx([1.0, 1.0, 0.0])


def test_iou_exactly_on_a_threshold_counts_as_a_match():
    # shift 2.5: IoU = 75/125 = 0.6 exactly; COCO matches IoU >= threshold, so 0.6 passes: 3/10
    r = mean_average_precision([det([shifted(2.5)], [0], [0.8])], [gt([BOX], [0])])
    assert r["map"] == pytest.approx(0.3)
    # a box covering half the GT: IoU 50/100 = 0.5 (exact in binary): only AP50 = 1, map = 1/10
    r = mean_average_precision([det([[10, 10, 15, 20]], [0], [0.8])], [gt([BOX], [0])])
    assert r["map50"] == pytest.approx(1.0)
    assert r["map"] == pytest.approx(0.1)


def test_duplicate_detection_is_a_false_positive():
    # GTs A and B; detections A (0.9), A again (0.8), B (0.7): TP, FP, TP.
    # recall 0.5, 0.5, 1.0; precision 1, 1/2, 2/3 -> envelope 1, 2/3, 2/3.
    # recall points 0.00..0.50 (51 of them) read precision 1, 0.51..1.00 (50) read 2/3:
    # AP = (51 + 50 * 2/3) / 101 = 253/303 = 0.83498
    a, b = BOX, [40.0, 40.0, 55.0, 55.0]
    targets = [gt([a, b], [0, 0])]
    r = mean_average_precision([det([a, a, b], [0, 0, 0], [0.9, 0.8, 0.7])], targets)
    assert r["map50"] == pytest.approx(253 / 303)
    assert r["map"] == pytest.approx(253 / 303)
    # the same detections without the duplicate: AP 1
    assert mean_average_precision([det([a, b], [0, 0], [0.9, 0.7])], targets)["map50"] == pytest.approx(1.0)
    # a duplicate scored below every true positive costs nothing (recall 1 is reached at precision 1)
    r = mean_average_precision([det([a, b, a], [0, 0, 0], [0.9, 0.8, 0.7])], targets)
    assert r["map50"] == pytest.approx(1.0)


def test_two_classes_average_and_images_pool():
    # class 0 found in both images (AP 1), class 1 missed (AP 0), class 2 predicted but absent (ignored)
    targets = [gt([BOX, [30, 30, 40, 40]], [0, 1]), gt([[5, 5, 25, 25]], [0])]
    preds = [det([BOX, [50, 50, 60, 60]], [0, 2], [0.9, 0.95]), det([[5, 5, 25, 25]], [0], [0.6])]
    r = mean_average_precision(preds, targets)
    assert r["per_class"] == {0: pytest.approx(1.0), 1: pytest.approx(0.0)}
    assert r["map50"] == pytest.approx(0.5)
    assert r["map"] == pytest.approx(0.5)


def test_greedy_matching_follows_score_not_iou():
    # one GT; a loose box (10 x 17.5: IoU 100/175 = 0.571) scored 0.9 and an exact box scored 0.8.
    # at 0.5 and 0.55 the loose box takes the GT first: TP, FP -> AP 1;
    # at 0.6..0.95 the loose box misses: FP, TP -> precision 1/2 at recall 1 -> AP 0.5.
    # map = (2 * 1 + 8 * 0.5) / 10 = 0.6
    loose = [10.0, 10.0, 20.0, 27.5]
    r = mean_average_precision([det([loose, BOX], [0, 0], [0.9, 0.8])], [gt([BOX], [0])])
    assert r["per_threshold"][0.5] == pytest.approx(1.0)
    assert r["per_threshold"][0.6] == pytest.approx(0.5)
    assert r["map"] == pytest.approx(0.6)


def test_no_ground_truth_anywhere_is_zero_not_an_error():
    r = mean_average_precision([det([BOX], [0], [0.9]), det([], [], [])], [gt([], []), gt([], [])])
    assert r["map"] == 0.0 and r["map50"] == 0.0
    assert mean_average_precision([], [])["map"] == 0.0
    with pytest.raises(ValueError, match="one of each per image"):
        mean_average_precision([det([BOX], [0], [0.9])], [])


def _reference_coco(preds, targets, num_classes):
    """pycocotools' evaluateImg + accumulate (area 'all', no crowd), transcribed with loops."""
    iou_thrs = np.linspace(0.5, 0.95, 10)
    rec_thrs = np.linspace(0.0, 1.0, 101)
    aps = []
    for c in range(num_classes):
        scores, matches, npig = [], [], 0
        for p, t in zip(preds, targets):
            g = t["boxes"][t["labels"] == c].double().numpy()
            keep = (p["labels"] == c).numpy()
            d, s = p["boxes"][keep].double().numpy(), p["scores"][keep].double().numpy()
            order = np.argsort(-s, kind="mergesort")[:100]
            d, s = d[order], s[order]
            npig += len(g)
            dtm = np.zeros((10, len(d)))
            gtm = np.zeros((10, len(g)))
            for ti, thr in enumerate(iou_thrs):
                for di, db in enumerate(d):
                    iou, m = min(thr, 1 - 1e-10), -1
                    for gi, gb in enumerate(g):
                        if gtm[ti, gi] > 0:
                            continue
                        iw = max(0.0, min(db[2], gb[2]) - max(db[0], gb[0]))
                        ih = max(0.0, min(db[3], gb[3]) - max(db[1], gb[1]))
                        inter = iw * ih
                        o = inter / ((db[2] - db[0]) * (db[3] - db[1]) + (gb[2] - gb[0]) * (gb[3] - gb[1]) - inter)
                        if o < iou:
                            continue
                        iou, m = o, gi
                    if m > -1:
                        dtm[ti, di], gtm[ti, m] = 1, 1
            scores.append(s)
            matches.append(dtm)
        if npig == 0:
            continue
        s = np.concatenate(scores)
        inds = np.argsort(-s, kind="mergesort")
        dtm = np.concatenate(matches, axis=1)[:, inds]
        ap = []
        for ti in range(10):
            tp = np.cumsum(dtm[ti]).astype(float)
            fp = np.cumsum(1 - dtm[ti]).astype(float)
            rc = tp / npig
            pr = (tp / (fp + tp + np.spacing(1))).tolist()
            for i in range(len(tp) - 1, 0, -1):
                pr[i - 1] = max(pr[i - 1], pr[i])
            q = np.zeros(101)
            idx = np.searchsorted(rc, rec_thrs, side="left")
            for ri, pi in enumerate(idx):
                if pi < len(pr):
                    q[ri] = pr[pi]
            ap.append(q.mean())
        aps.append(ap)
    aps = np.array(aps)
    return aps[:, 0].mean(), aps.mean()


def test_matches_a_port_of_pycocotools_on_random_boxes():
    g = torch.Generator().manual_seed(0)
    targets, preds = [], []
    for _ in range(12):
        m = int(torch.randint(0, 5, (1,), generator=g))
        xy = torch.rand(m, 2, generator=g) * 40
        wh = 4 + torch.rand(m, 2, generator=g) * 20
        boxes = torch.cat([xy, xy + wh], 1)
        labels = torch.randint(0, 3, (m,), generator=g)
        targets.append({"boxes": boxes, "labels": labels})
        # predictions: jittered copies (some duplicated, some relabelled) plus clutter
        n_extra = int(torch.randint(0, 4, (1,), generator=g))
        jit = boxes.repeat(2, 1) + torch.randn(2 * m, 4, generator=g) * 2.5
        jlab = labels.repeat(2)
        flip = torch.rand(2 * m, generator=g) < 0.15
        jlab = torch.where(flip, (jlab + 1) % 3, jlab)
        exy = torch.rand(n_extra, 2, generator=g) * 40
        extra = torch.cat([exy, exy + 5 + torch.rand(n_extra, 2, generator=g) * 15], 1)
        pb = torch.cat([jit, extra])
        pb = torch.cat([torch.minimum(pb[:, :2], pb[:, 2:]), torch.maximum(pb[:, :2], pb[:, 2:])], 1)
        plab = torch.cat([jlab, torch.randint(0, 3, (n_extra,), generator=g)])
        # scores on a coarse grid so ties across images exercise the stable ordering
        pscore = torch.randint(1, 8, (len(plab),), generator=g).float() / 8
        preds.append({"boxes": pb, "labels": plab, "scores": pscore})
    ref50, ref = _reference_coco(preds, targets, 3)
    r = mean_average_precision(preds, targets)
    assert 0.1 < ref < 0.95  # the case is neither trivial nor hopeless
    assert r["map50"] == pytest.approx(ref50, abs=1e-9)
    assert r["map"] == pytest.approx(ref, abs=1e-9)


def test_thresholds_are_cocos():
    assert COCO_IOU_THRESHOLDS.tolist() == np.linspace(0.5, 0.95, 10).tolist()
    r = mean_average_precision([det([shifted(2.4)], [0], [0.8])], [gt([BOX], [0])], iou_thresholds=[0.7])
    assert r["map"] == 0.0 and list(r["per_threshold"]) == [0.7]
