"""Per-sample errors, confusion matrices and per-class curves of every task, on hand-made cases:
what the error browser shows for one image, and what the matrices and curves add up to."""
from __future__ import annotations

import math

import pytest
import torch

from mtl_core.data.base import DatasetInfo
from mtl_core.measures.map_metric import mean_average_precision
from mtl_core.measures.types import FLAG, TEXT
from mtl_core.tasks import TASKS, build_task

NAMES = ("circle", "square", "triangle")
INFO = DatasetInfo(name="toy", class_names=NAMES, image_size=64, tasks=tuple(TASKS.available()),
                   max_objects=3, depth_max=10.0)
NAN = float("nan")


def isnan(v) -> bool:
    return isinstance(v, float) and math.isnan(v)


def boxes(rows, labels, scores=None) -> dict:
    out = {"boxes": torch.tensor(rows, dtype=torch.float32).reshape(-1, 4), "labels": torch.tensor(labels, dtype=torch.long)}
    if scores is not None:
        out["scores"] = torch.tensor(scores, dtype=torch.float32)
    return out


def one_label(label: int, score: float, k: int = 3, key: str = "label") -> dict:
    """A prediction whose top answer ``label`` has probability ``score``, the rest shared out."""
    probs = [(1 - score) / (k - 1)] * k
    probs[label] = score
    return {key: label, "score": score, "probs": probs}


# ---- detection ---------------------------------------------------------------------------
def test_detection_hit_false_positive_and_miss():
    task = build_task("detection", INFO)
    truth = boxes([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 2])
    pred = boxes([[0, 0, 10, 10], [40, 40, 50, 50], [20, 20, 30, 30]], [0, 1, 2], [0.9, 0.8, 0.1])
    e = task.display.sample_errors([pred], [truth], score_threshold=0.3)
    # the triangle's box scores 0.1: below the threshold it finds nothing, so the triangle is missed
    assert (e["hits"], e["false_positives"], e["misses"], e["failed"], e["objects"]) == ([1.0], [1.0], [1.0], [1.0], [2.0])
    low = task.display.sample_errors([pred], [truth], score_threshold=0.05)
    assert (low["hits"], low["misses"], low["false_positives"], low["failed"]) == ([2.0], [0.0], [1.0], [1.0])


def test_detection_all_found_is_not_failed_and_unlabelled_is_nan():
    task = build_task("detection", INFO)
    truth = boxes([[0, 0, 10, 10]], [1])
    pred = boxes([[1, 0, 10, 10]], [1], [0.6])  # IoU 0.9
    e = task.display.sample_errors([pred, pred], [truth, None])
    assert e["failed"][0] == 0.0 and e["hits"][0] == 1.0
    assert all(isnan(v[1]) for v in e.values())


def test_detection_wrong_class_is_a_false_box_and_a_miss_and_sits_off_the_diagonal():
    task = build_task("detection", INFO)
    # image 0: a right box with the wrong class (truth circle, said square) and a hit triangle;
    # image 1: a box where there is nothing, an object no box found, and a box under the threshold
    truths = [boxes([[0, 0, 10, 10], [30, 30, 50, 50]], [0, 2]), boxes([[5, 5, 20, 20]], [1])]
    preds = [boxes([[0, 0, 10, 10], [30, 30, 50, 50]], [1, 2], [0.9, 0.7]),
             boxes([[40, 40, 60, 60], [5, 5, 20, 20]], [0, 1], [0.8, 0.2])]
    e = task.display.sample_errors(preds, truths)
    assert e["false_positives"] == [1.0, 1.0] and e["misses"] == [1.0, 1.0] and e["hits"] == [1.0, 0.0]

    (m,) = task.display.confusions(preds, truths)
    bg = len(NAMES)
    assert m.rows == [*NAMES, "background"] and m.cols[:3] == list(NAMES) and len(m.cols) == 4
    expected = [[0] * 4 for _ in range(4)]
    expected[0][1] = 1  # truth circle, predicted square
    expected[2][2] = 1  # the triangle found
    expected[bg][0] = 1  # a circle box where no object is: background row
    expected[1][bg] = 1  # the square nobody found: background column
    assert m.counts == expected and m.unit == "boxes"
    assert m.samples[(0, 1)] == [0] and m.samples[(bg, 0)] == [1] and m.samples[(1, bg)] == [1]


def random_detections(n_images: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Truth boxes and noisy predictions of them, with extra boxes and some wrong labels."""
    g = torch.Generator().manual_seed(seed)
    preds, truths = [], []
    for _ in range(n_images):
        m = int(torch.randint(0, 5, (1,), generator=g))
        xy = torch.rand(m, 2, generator=g) * 40
        wh = 8 + torch.rand(m, 2, generator=g) * 16
        gt = torch.cat([xy, xy + wh], 1)
        labels = torch.randint(0, 3, (m,), generator=g)
        noisy = gt + torch.randn(m, 4, generator=g) * 2
        flip = torch.rand(m, generator=g) < 0.2
        plabels = torch.where(flip, (labels + 1) % 3, labels)
        extra = int(torch.randint(0, 3, (1,), generator=g))
        exy = torch.rand(extra, 2, generator=g) * 50
        pb = torch.cat([noisy, torch.cat([exy, exy + 10], 1)])
        pl = torch.cat([plabels, torch.randint(0, 3, (extra,), generator=g)])
        ps = torch.rand(m + extra, generator=g)
        order = ps.argsort(descending=True)
        truths.append({"boxes": gt, "labels": labels})
        preds.append({"boxes": pb[order], "scores": ps[order], "labels": pl[order]})
    return preds, truths


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_detection_pr_curve_ap_is_the_runs_per_class_ap50(seed):
    task = build_task("detection", INFO)
    preds, truths = random_detections(12, seed)
    want = mean_average_precision(preds, truths, iou_thresholds=[0.5])["per_class"]
    curves = task.display.curves(preds, truths)
    got = {NAMES.index(c.title): c.summary for c in curves}
    assert set(got) == set(want) and len(got) >= 2
    for c, ap in want.items():
        assert got[c] == pytest.approx(ap, abs=1e-9), NAMES[c]
    for c in curves:  # recall only grows and ends at the share of objects found
        assert all(b >= a for a, b in zip(c.x, c.x[1:])) and c.x[-1] <= 1.0


# ---- segmentation ------------------------------------------------------------------------
def two_squares() -> torch.Tensor:
    """8x8: background, a 4x4 circle (label 1) top-left, a 4x4 square (label 2) bottom-right."""
    m = torch.zeros(8, 8, dtype=torch.long)
    m[:4, :4] = 1
    m[4:, 4:] = 2
    return m


def test_segmentation_one_wrong_pixel():
    task = build_task("segmentation", INFO)
    truth = two_squares()
    pred = truth.clone()
    pred[0, 0] = 2  # one circle pixel called square
    e = task.display.sample_errors([{"mask": pred}], [{"mask": truth}])
    assert e["pixel_error"] == [pytest.approx(1 / 64)]
    # background 32/32, circle 15/16 (15 both, 16 labelled), square 16/17 (16 both, 17 said)
    assert e["iou"] == [pytest.approx((1 + 15 / 16 + 16 / 17) / 3)]
    assert e["failed"] == [0.0]


def test_segmentation_ignored_pixels_and_unlabelled_samples():
    task = build_task("segmentation", INFO)
    truth = two_squares()
    truth[:, 0] = 255  # a column nobody labelled
    pred = truth.clone()
    pred[:, 0] = 2  # anything there counts for nothing
    e = task.display.sample_errors([{"mask": pred}, {"mask": pred}], [{"mask": truth}, None])
    assert e["pixel_error"][0] == 0.0 and e["iou"][0] == pytest.approx(1.0) and e["failed"][0] == 0.0
    assert all(isnan(v[1]) for v in e.values())
    wrong = torch.full((8, 8), 2, dtype=torch.long)  # all square: IoU (0 + 0 + 16/64) / 3 < 0.5
    assert task.display.sample_errors([{"mask": wrong}], [{"mask": two_squares()}])["failed"] == [1.0]


def test_segmentation_pixel_confusion_matrix():
    task = build_task("segmentation", INFO)
    a_truth = two_squares()
    a_pred = a_truth.clone()
    a_pred[0, 0] = 2
    b_truth = torch.ones(8, 8, dtype=torch.long)  # all circle
    b_pred = b_truth.clone()
    b_pred[7, :3] = 2  # three circle pixels called square
    preds = [{"mask": a_pred}, {"mask": b_pred}, {"mask": b_pred}]
    (m,) = task.display.confusions(preds, [{"mask": a_truth}, {"mask": b_truth}, None])
    assert m.rows == ["background", *NAMES] and m.unit == "pixels"
    assert m.counts == [[32, 0, 0, 0], [0, 15 + 61, 1 + 3, 0], [0, 0, 16, 0], [0, 0, 0, 0]]
    assert m.total() == 128  # the unlabelled third sample adds nothing
    assert m.samples[(1, 2)] == [1, 0]  # sample 1 has 3 pixels in the cell, sample 0 one
    assert m.samples[(1, 1)] == [1, 0] and m.samples[(0, 0)] == [0]


# ---- depth -------------------------------------------------------------------------------
def test_depth_errors_over_labelled_pixels_only():
    task = build_task("depth", INFO)
    truth = torch.zeros(4, 4)
    pred = torch.full((4, 4), 9.0)  # far off where nothing is labelled: must not count
    for (r, c), d_star, d in zip([(0, 0), (1, 2), (2, 1), (3, 3)], [1.0, 2.0, 4.0, 5.0], [1.0, 2.4, 4.0, 2.0], strict=True):
        truth[r, c], pred[r, c] = d_star, d
    e = task.display.sample_errors([{"depth": pred}], [{"depth": truth}])
    assert e["abs_rel"] == [pytest.approx((0 + 0.4 / 2 + 0 + 3 / 5) / 4)]
    assert e["rmse"] == [pytest.approx(math.sqrt((0 + 0.16 + 0 + 9) / 4))]
    assert e["delta1"] == [pytest.approx(3 / 4)]  # 5 vs 2 is off by 2.5x
    assert e["failed"] == [1.0]  # fewer than 80% of pixels within 25%


def test_depth_with_no_labelled_pixel_is_nan():
    task = build_task("depth", INFO)
    e = task.display.sample_errors([{"depth": torch.ones(4, 4)}] * 2, [{"depth": torch.zeros(4, 4)}, None])
    assert all(isnan(v) for values in e.values() for v in values)


# ---- classification and count --------------------------------------------------------------
def test_classification_per_sample_answers():
    task = build_task("classification", INFO)
    preds = [one_label(0, 0.7), {"label": 1, "score": 0.6, "probs": [0.1, 0.6, 0.3]}, one_label(2, 0.5)]
    truths = [{"label": 0}, {"label": 2}, None]
    e = task.display.sample_errors(preds, truths)
    assert e["failed"][:2] == [0.0, 1.0]
    assert e["confidence"][:2] == [pytest.approx(0.7), pytest.approx(0.6)]
    assert e["true_prob"][:2] == [pytest.approx(0.7), pytest.approx(0.3)]
    assert e["truth"][:2] == ["circle", "triangle"] and e["predicted"][:2] == ["circle", "square"]
    # unlabelled: no error of any kind, so no mean or filter counts it
    assert isnan(e["failed"][2]) and isnan(e["confidence"][2]) and isnan(e["true_prob"][2])
    assert e["truth"][2] == "" and e["predicted"][2] == ""


def test_classification_confusion_of_five_samples():
    task = build_task("classification", INFO)
    said = [(0, 0.9), (0, 0.6), (1, 0.8), (2, 0.7), (0, 0.95)]
    preds = [one_label(c, s) for c, s in said]
    truths = [{"label": t} for t in (0, 1, 1, 1, 1)]
    (m,) = task.display.confusions(preds, truths)
    assert m.rows == list(NAMES) and m.cols == list(NAMES)
    assert m.counts == [[1, 0, 0], [2, 1, 1], [0, 0, 0]]
    assert m.samples[(1, 0)] == [4, 1]  # the most confidently wrong first


def test_count_errors_and_confusion():
    task = build_task("count", INFO)  # counts 0..3
    preds = [one_label(c, s, k=4, key="count") for c, s in [(2, 0.8), (3, 0.6), (0, 0.9), (1, 0.5), (3, 0.7)]]
    truths = [{"count": 2}, {"count": 1}, {"count": 3}, None, {"count": 5}]  # 5 is above the range: 3
    e = task.display.sample_errors(preds, truths)
    assert [c.name for c in task.display.error_columns] == list(e)
    assert e["failed"][:3] == [0.0, 1.0, 1.0] and e["failed"][4] == 0.0
    assert e["error"][:3] == [0.0, 2.0, 3.0] and e["error"][4] == 0.0
    assert e["truth"] == ["2", "1", "3", "", "3"] and e["predicted"][:3] == ["2", "3", "0"]
    assert isnan(e["failed"][3]) and isnan(e["error"][3]) and isnan(e["confidence"][3])
    (m,) = task.display.confusions(preds, truths)
    assert m.rows == ["0", "1", "2", "3"]
    expected = [[0] * 4 for _ in range(4)]
    expected[2][2] = expected[1][3] = expected[3][0] = expected[3][3] = 1
    assert m.counts == expected


def test_reliability_bins_and_ece():
    task = build_task("classification", INFO)
    # confidences 0.95 and 0.92 (one right), 0.65 and 0.61 (both right), 0.35 (wrong) and 0.5,
    # exactly on a bin edge: Guo et al.'s bins are (m-1)/M < conf <= m/M, so 0.5 is in (0.4, 0.5]
    said = [(0, 0.95, 0), (1, 0.92, 2), (2, 0.65, 2), (0, 0.61, 0), (1, 0.35, 0), (0, 0.5, 0)]
    preds = [one_label(c, s) for c, s, _ in said]
    truths = [{"label": t} for _, _, t in said]
    (curve,) = task.display.curves(preds, truths)
    assert curve.kind == "reliability" and curve.counts == [0, 0, 0, 1, 1, 0, 2, 0, 0, 2]
    assert curve.x[9] == pytest.approx(0.935) and curve.y[9] == pytest.approx(0.5)
    assert curve.x[6] == pytest.approx(0.63) and curve.y[6] == 1.0
    assert curve.x[4] == pytest.approx(0.5) and curve.y[4] == 1.0
    assert curve.x[3] == pytest.approx(0.35) and curve.y[3] == 0.0
    assert isnan(curve.y[0]) and curve.x[0] == pytest.approx(0.05)  # empty: its centre, no accuracy
    ece = (2 * abs(0.5 - 0.935) + 2 * abs(1 - 0.63) + 1 * abs(0 - 0.35) + 1 * abs(1 - 0.5)) / 6
    assert curve.summary == pytest.approx(ece)


# ---- multilabel -----------------------------------------------------------------------------
def test_multilabel_missed_and_false_classes_and_matrices():
    task = build_task("multilabel", INFO)
    preds = [{"labels": [0, 2], "probs": [0.9, 0.2, 0.7]}, {"labels": [1], "probs": [0.1, 0.8, 0.3]},
             {"labels": [], "probs": [0.1, 0.1, 0.1]}]
    truths = [{"labels": [0, 1]}, {"labels": [1]}, None]
    e = task.display.sample_errors(preds, truths)
    assert e["missed"][:2] == [1.0, 0.0] and e["false"][:2] == [1.0, 0.0]
    assert e["wrong_classes"][:2] == [2.0, 0.0] and e["failed"][:2] == [1.0, 0.0]
    assert all(isnan(v[2]) for v in e.values())
    circle, square, triangle = task.display.confusions(preds, truths)
    # rows present / absent, columns decided present / absent, over the two labelled samples
    assert circle.counts == [[1, 0], [0, 1]]
    assert square.counts == [[1, 1], [0, 0]] and square.samples[(0, 1)] == [0]
    assert triangle.counts == [[0, 0], [1, 1]] and triangle.samples[(1, 0)] == [0]


# ---- the contract, for every registered task ------------------------------------------------
def truths_from_scenes(task, n: int) -> list:
    from mtl_core.config import DataConfig
    from mtl_core.data import build_dataset

    ds = build_dataset(DataConfig(image_size=32, train_size=8, val_size=n, test_size=8), "val", 0)
    out = []
    for i in range(n):
        _, targets = ds[i]
        key = task.target_name()
        out.append(task.display.target_to_prediction(targets[key]) if key in targets else None)
    return out


@pytest.mark.parametrize("name", TASKS.available())
def test_every_task_reports_its_columns_per_sample(name):
    from mtl_core.config import DataConfig
    from mtl_core.data import build_dataset

    info = build_dataset(DataConfig(image_size=32, train_size=8, val_size=8, test_size=8), "val", 0).info
    task = build_task(name, info)
    cols = task.display.error_columns
    assert cols and cols[0].name == "failed" and cols[0].kind == FLAG, "every task needs a `failed` flag first"
    assert len({c.name for c in cols}) == len(cols)
    assert all(c.worse in ("high", "low", "") for c in cols) and all(c.worse == "" for c in cols if c.kind == TEXT)

    torch.manual_seed(0)
    head = task.head(8, 4).eval()
    with torch.no_grad():
        preds = task.decode(head(torch.randn(3, 8, 8, 8)), (32, 32))
    truths = truths_from_scenes(task, 3)
    truths[1] = None  # sample 1 is not labelled for this task
    e = task.display.sample_errors(preds, truths, 0.3)
    assert list(e) == [c.name for c in cols]
    assert all(len(v) == 3 for v in e.values())
    for c in cols:
        gap = e[c.name][1]
        assert (gap == "") if c.kind == TEXT else isnan(gap), (c.name, gap)
    if truths[0] is not None:
        assert e["failed"][0] in (0.0, 1.0) and e["failed"][2] in (0.0, 1.0)
