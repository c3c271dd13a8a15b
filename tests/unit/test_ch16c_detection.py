"""IoU, NMS and mAP of notebooks/16c_detection.ipynb (nndl_helpers.chapters.ch16c) against brute-force references."""
import itertools

import numpy as np
import pytest

from nndl_helpers.chapters.ch16c import (average_precision, batched_nms, box_iou, check_boxes, decode_boxes,
                                         detection_targets, encode_boxes, evaluate_detections, make_anchors,
                                         match_anchors, match_detections, nms, postprocess)


def random_int_boxes(rng, n, size=20):
    """Boxes with integer corners on a size x size grid (x2 > x1, y2 > y1, some may touch or nest)."""
    x = np.sort(rng.integers(0, size + 1, size=(n, 2)), axis=1)
    y = np.sort(rng.integers(0, size + 1, size=(n, 2)), axis=1)
    x[:, 1] += x[:, 0] == x[:, 1]
    y[:, 1] += y[:, 0] == y[:, 1]
    return np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1).astype(np.float64)


def pixel_iou(a, b, size=22):
    """IoU by counting unit pixels: the brute-force reference."""
    def mask(box):
        m = np.zeros((size, size), bool)
        for yy in range(size):
            for xx in range(size):
                m[yy, xx] = box[0] <= xx < box[2] and box[1] <= yy < box[3]
        return m
    ma, mb = mask(a), mask(b)
    union = (ma | mb).sum()
    return (ma & mb).sum() / union if union else 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_box_iou_matches_pixel_counting(seed):
    rng = np.random.default_rng(seed)
    a, b = random_int_boxes(rng, 6), random_int_boxes(rng, 5)
    iou = box_iou(a, b)
    assert iou.shape == (6, 5)
    ref = np.array([[pixel_iou(p, q) for q in b] for p in a])
    np.testing.assert_allclose(iou, ref, atol=1e-12)
    np.testing.assert_allclose(box_iou(b, a), iou.T)
    np.testing.assert_allclose(np.diag(box_iou(a, a)), 1.0)


def test_box_iou_hand_case_and_degenerate_boxes():
    iou = box_iou([[0, 0, 2, 2]], [[1, 1, 3, 3], [2, 0, 4, 2], [5, 5, 5, 5]])
    np.testing.assert_allclose(iou, [[1 / 7, 0.0, 0.0]])
    assert box_iou(np.zeros((0, 4)), [[0, 0, 1, 1]]).shape == (0, 1)


def test_bad_boxes_are_named():
    with pytest.raises(ValueError, match=r"box 2 .* x2 < x1"):
        check_boxes([[0, 0, 1, 1], [0, 0, 2, 2], [5, 0, 3, 2]])
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        box_iou(np.zeros((3, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="non-finite"):
        check_boxes([[0, 0, np.nan, 1]])
    with pytest.raises(ValueError, match="one per box"):
        nms(np.zeros((3, 4)), np.zeros(2))
    with pytest.raises(ValueError, match=r"ground_truth\[1\] boxes: box 0"):
        evaluate_detections([(np.zeros((0, 4)), [], [])] * 2, [(np.zeros((0, 4)), []), ([[3, 0, 1, 1]], [0])], 1)


def brute_force_nms_check(boxes, scores, keep, thr):
    """Greedy NMS is characterised by: kept boxes never overlap above thr, and every dropped box
    overlaps above thr a kept box with a higher score (distinct scores)."""
    iou = box_iou(boxes, boxes)
    kept = set(keep.tolist())
    for i, j in itertools.combinations(kept, 2):
        assert iou[i, j] <= thr
    for i in set(range(len(boxes))) - kept:
        assert any(iou[i, k] > thr and scores[k] > scores[i] for k in kept), i
    assert list(keep) == sorted(keep, key=lambda k: -scores[k])


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("thr", [0.0, 0.3, 0.5, 0.9])
def test_nms_against_its_characterisation(seed, thr):
    rng = np.random.default_rng(seed)
    boxes, scores = random_int_boxes(rng, 25, size=12), rng.permutation(25) / 25.0
    brute_force_nms_check(boxes, scores, nms(boxes, scores, thr), thr)


def test_nms_hand_case_and_per_class():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    assert nms(boxes, scores, 0.5).tolist() == [3, 2]
    assert nms(boxes, scores, 0.95).tolist() == [3, 0, 1, 2]
    assert batched_nms(boxes, scores, np.array([0, 1, 0, 0]), 0.5).tolist() == [3, 1, 2]
    assert nms(np.zeros((0, 4)), np.zeros(0)).tolist() == []


def test_average_precision_hand_case():
    # 3 ground-truth boxes; detections by score: TP, FP, TP, FP, TP
    recall = np.array([1, 1, 2, 2, 3]) / 3
    precision = np.array([1, 1 / 2, 2 / 3, 2 / 4, 3 / 5])
    # envelope: 1 up to recall 1/3, 2/3 up to 2/3, 3/5 up to 1
    assert average_precision(recall, precision) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    assert average_precision([0.5, 0.5], [0.0, 0.0]) == 0.0
    assert average_precision([0.5, 1.0], [1.0, 1.0]) == pytest.approx(1.0)


def brute_force_ap(det, gts, c, thr):
    """AP by enumerating score thresholds: at each, match only the detections above it from scratch,
    then integrate the interpolated precision over every recall level reached."""
    all_scores = sorted({s for _, ds, dl in det for s, l in zip(ds, dl) if l == c}, reverse=True)
    n_gt = sum(int((np.asarray(gl) == c).sum()) for _, gl in gts)
    points = []
    for s in all_scores:
        tp = fp = 0
        for (db, ds, dl), (gb, gl) in zip(det, gts):
            sel = (np.asarray(dl) == c) & (np.asarray(ds) >= s)
            hits = match_detections(np.asarray(db)[sel], np.asarray(ds)[sel], np.asarray(gb)[np.asarray(gl) == c], thr)
            tp, fp = tp + hits.sum(), fp + (~hits).sum()
        points.append((tp / n_gt, tp / (tp + fp)))
    ap, prev = 0.0, 0.0
    for r in sorted({r for r, _ in points}):
        ap += (r - prev) * max(p for rr, p in points if rr >= r)
        prev = r
    return ap


@pytest.mark.parametrize("seed", range(5))
def test_map_against_threshold_enumeration(seed):
    rng = np.random.default_rng(seed)
    gts, det = [], []
    for _ in range(4):
        gb = random_int_boxes(rng, 3, size=30)
        gl = rng.integers(0, 2, 3)
        jitter = rng.integers(-2, 3, size=(5, 4)).astype(float)
        pick = rng.integers(0, 3, 5)
        db = gb[pick] + jitter
        db[:, 2:] = np.maximum(db[:, 2:], db[:, :2] + 1)
        gts.append((gb, gl))
        det.append((db, rng.uniform(size=5), np.where(rng.uniform(size=5) < 0.8, gl[pick], 1 - gl[pick])))
    res = evaluate_detections(det, gts, 3)
    assert np.isnan(res["ap"][2])
    for c in range(2):
        assert res["ap"][c] == pytest.approx(brute_force_ap(det, gts, c, 0.5), abs=1e-12)
    assert res["map"] == pytest.approx(np.mean(res["ap"][:2]))


def test_perfect_detections_score_one_and_duplicates_are_false_positives():
    gb = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)
    gts = [(gb, np.array([1, 1]))]
    assert evaluate_detections([(gb, np.array([0.9, 0.8]), np.array([1, 1]))], gts, 2)["map"] == 1.0
    dup = (np.concatenate([gb, gb[:1]]), np.array([0.9, 0.8, 0.85]), np.array([1, 1, 1]))
    tp = match_detections(dup[0], dup[1], gb)
    assert tp.tolist() == [True, True, False]
    assert evaluate_detections([dup], gts, 2)["ap"][1] == pytest.approx(1 / 2 + 1 / 2 * 2 / 3)


@pytest.mark.parametrize("seed", [0, 1])
def test_encode_decode_identity(seed):
    rng = np.random.default_rng(seed)
    anchors = make_anchors((4, 5), 8, [6, 12], [0.5, 1, 2])
    assert anchors.shape == (4 * 5 * 6, 4)
    boxes = random_int_boxes(rng, len(anchors), size=40)
    np.testing.assert_allclose(decode_boxes(encode_boxes(boxes, anchors), anchors), boxes, atol=1e-9)
    deltas = rng.standard_normal((len(anchors), 4))
    np.testing.assert_allclose(encode_boxes(decode_boxes(deltas, anchors), anchors), deltas, atol=1e-9)


def test_anchor_layout():
    anchors = make_anchors((2, 3), 4, [4], [1.0, 4.0])
    # row 0, column 1, second ratio: centre (6, 2), width 8, height 2
    np.testing.assert_allclose(anchors[(0 * 3 + 1) * 2 + 1], [2, 1, 10, 3])


def test_matching_gives_every_box_an_anchor():
    anchors = make_anchors((6, 6), 8, [10], [1.0])
    gt = np.array([[1, 1, 4, 4], [10, 10, 30, 30], [30, 2, 40, 12]], float)
    matches = match_anchors(anchors, gt)
    assert set(matches[matches >= 0].tolist()) == {0, 1, 2}
    iou_all = box_iou(anchors, gt)
    iou, forced = iou_all.max(1), np.zeros(len(anchors), bool)
    forced[iou_all.argmax(0)] = True                        # each box's own best anchor
    assert (matches[(iou < 0.4) & ~forced] == -1).all()
    assert (matches[(iou >= 0.4) & (iou < 0.5) & ~forced] == -2).all()
    assert (matches[iou >= 0.5] == iou_all.argmax(1)[iou >= 0.5]).all()
    cls, box, m = detection_targets(anchors, gt, [3, 1, 7], 10)
    assert cls.sum() == (m >= 0).sum() and (cls[m >= 0].argmax(1) == np.array([3, 1, 7])[m[m >= 0]]).all()
    np.testing.assert_allclose(decode_boxes(box[m >= 0], anchors[m >= 0]), gt[m[m >= 0]], atol=1e-9)
    assert (match_anchors(anchors, np.zeros((0, 4))) == -1).all()


def test_postprocess_decodes_and_suppresses():
    anchors = make_anchors((2, 2), 8, [8], [1.0])
    scores = np.zeros((4, 3))
    scores[0, 1], scores[1, 1], scores[3, 2] = 0.9, 0.6, 0.8
    deltas = np.zeros((4, 4))
    deltas[1, 0] = -8 / 8 / 0.1                     # anchor 1 moved onto anchor 0: suppressed
    boxes, s, labels = postprocess(scores, deltas, anchors, score_threshold=0.5, iou_threshold=0.5)
    np.testing.assert_allclose(boxes, anchors[[0, 3]])
    assert s.tolist() == [0.9, 0.8] and labels.tolist() == [1, 2]
    with pytest.raises(ValueError, match="deltas"):
        postprocess(scores, deltas[:3], anchors)
