"""NumPy code taught in notebooks/16c_detection.ipynb, reused by later notebooks.

Generated from the notebook's ``#@save`` cells by ``python -m nndl_helpers.nbtools export``.
Do not edit by hand: change the notebook and export again (a test checks they agree).
"""
import numpy as np


def check_boxes(boxes, name="boxes"):
    """The boxes as a float64 array (N, 4) of [x1, y1, x2, y2], or a ValueError saying what is wrong.

    A box needs x1 <= x2 and y1 <= y2 (a zero-width box is allowed: it has area 0); the message names
    the first box that breaks this by its index, so it can be found in the data.
    """
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name}: expected boxes of shape (N, 4) as [x1, y1, x2, y2], got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: box {int(np.argwhere(~np.isfinite(arr))[0, 0])} has a non-finite coordinate")
    bad = np.flatnonzero((arr[:, 2] < arr[:, 0]) | (arr[:, 3] < arr[:, 1]))
    if len(bad):
        i = int(bad[0])
        raise ValueError(f"{name}: box {i} = {arr[i].tolist()} has x2 < x1 or y2 < y1 "
                         f"({len(bad)} such box{'es' if len(bad) > 1 else ''}); boxes are [x1, y1, x2, y2]")
    return arr


def box_area(boxes):
    """Areas (N,) of boxes (N, 4) [x1, y1, x2, y2]: (x2 - x1) * (y2 - y1)."""
    b = check_boxes(boxes)
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


def box_iou(a, b):
    """Intersection over union of every pair: a (N, 4), b (M, 4) -> (N, M) in [0, 1].

    IoU(A, B) = |A ∩ B| / |A ∪ B|; two boxes of area 0 (or that do not meet) have IoU 0.
    """
    a, b = check_boxes(a, "a"), check_boxes(b, "b")
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])          # (N, M, 2)
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(bottom_right - top_left, 0.0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def make_anchors(grid, stride, sizes, ratios):
    """Anchor boxes (H * W * A, 4) [x1, y1, x2, y2] on a feature map of `grid` = (H, W) cells.

    Cell (i, j) covers the input pixels [j * stride, (j + 1) * stride) x [i * stride, (i + 1) * stride);
    its A = len(sizes) * len(ratios) anchors are centred on the cell's centre, with width
    size * sqrt(ratio) and height size / sqrt(ratio) (ratio = width / height, the area stays size^2).
    Order: row i, then column j, then anchor a, the order of a head's output (N, H, W, A, ...) flattened.
    """
    h, w = grid
    if h < 1 or w < 1 or stride <= 0 or len(sizes) == 0 or len(ratios) == 0:
        raise ValueError(f"make_anchors: need a grid of at least 1 x 1, stride > 0 and some sizes and ratios, "
                         f"got grid={grid}, stride={stride}, sizes={sizes}, ratios={ratios}")
    sizes, ratios = np.asarray(sizes, np.float64), np.asarray(ratios, np.float64)
    aw = (sizes[:, None] * np.sqrt(ratios)[None, :]).ravel()       # (A,)
    ah = (sizes[:, None] / np.sqrt(ratios)[None, :]).ravel()
    cy, cx = np.meshgrid((np.arange(h) + 0.5) * stride, (np.arange(w) + 0.5) * stride, indexing="ij")
    cx, cy = cx[..., None], cy[..., None]                          # (H, W, 1)
    anchors = np.stack([cx - aw / 2, cy - ah / 2, cx + aw / 2, cy + ah / 2], axis=-1)   # (H, W, A, 4)
    return anchors.reshape(-1, 4)


def _centre_size(boxes):
    return ((boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2,
            boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])


BOX_VARIANCES = (0.1, 0.2)   # SSD's scaling of the centre and size offsets


def encode_boxes(boxes, anchors, variances=BOX_VARIANCES):
    """Regression targets (N, 4) [dx, dy, dw, dh] of boxes (N, 4) relative to their anchors (N, 4):

    dx = (cx - cx_a) / (w_a v_c), dy = (cy - cy_a) / (h_a v_c), dw = log(w / w_a) / v_s, dh = log(h / h_a) / v_s
    with (v_c, v_s) = variances. Boxes need a positive width and height.
    """
    boxes, anchors = check_boxes(boxes), check_boxes(anchors, "anchors")
    if boxes.shape != anchors.shape:
        raise ValueError(f"encode_boxes: boxes {boxes.shape} and anchors {anchors.shape} must pair up row by row")
    cx, cy, w, h = _centre_size(boxes)
    acx, acy, aw, ah = _centre_size(anchors)
    if (w <= 0).any() or (h <= 0).any() or (aw <= 0).any() or (ah <= 0).any():
        raise ValueError("encode_boxes: every box and anchor needs a positive width and height")
    vc, vs = variances
    return np.stack([(cx - acx) / (aw * vc), (cy - acy) / (ah * vc),
                     np.log(w / aw) / vs, np.log(h / ah) / vs], axis=1)


def decode_boxes(deltas, anchors, variances=BOX_VARIANCES, max_log_scale=np.log(1000 / 16)):
    """The inverse of encode_boxes: deltas (N, 4) and anchors (N, 4) -> boxes (N, 4) [x1, y1, x2, y2].

    log-scales are clipped at max_log_scale (as in torchvision) so that an untrained network's large
    outputs cannot overflow exp.
    """
    deltas, anchors = np.asarray(deltas, np.float64), check_boxes(anchors, "anchors")
    if deltas.shape != anchors.shape:
        raise ValueError(f"decode_boxes: deltas {deltas.shape} and anchors {anchors.shape} must both be (N, 4)")
    acx, acy, aw, ah = _centre_size(anchors)
    vc, vs = variances
    cx, cy = acx + deltas[:, 0] * vc * aw, acy + deltas[:, 1] * vc * ah
    w = aw * np.exp(np.minimum(deltas[:, 2] * vs, max_log_scale))
    h = ah * np.exp(np.minimum(deltas[:, 3] * vs, max_log_scale))
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def match_anchors(anchors, gt_boxes, *, pos_iou=0.5, neg_iou=0.4):
    """Assign each anchor to a ground-truth box: matches (A,) int64.

    matches[a] = g >= 0  anchor a is a positive for box g (its best box, IoU >= pos_iou);
               = -1      background (best IoU < neg_iou);
               = -2      ignored (neg_iou <= best IoU < pos_iou): neither pushed to a class nor to background.
    Every box also takes its own best anchor, whatever the IoU, so that no small or odd-shaped box is left
    without a positive (SSD's and RetinaNet's rule).
    """
    anchors, gt_boxes = check_boxes(anchors, "anchors"), check_boxes(gt_boxes, "gt_boxes")
    if not 0 <= neg_iou <= pos_iou <= 1:
        raise ValueError(f"match_anchors: need 0 <= neg_iou <= pos_iou <= 1, got {neg_iou}, {pos_iou}")
    matches = np.full(len(anchors), -1, np.int64)
    if len(gt_boxes) == 0:
        return matches
    iou = box_iou(anchors, gt_boxes)                    # (A, G)
    best_gt, best_iou = iou.argmax(1), iou.max(1)
    matches[best_iou >= neg_iou] = -2
    matches[best_iou >= pos_iou] = best_gt[best_iou >= pos_iou]
    best_anchor = iou.argmax(0)                         # (G,): each box's own best anchor
    matches[best_anchor] = np.arange(len(gt_boxes))
    return matches


def detection_targets(anchors, gt_boxes, gt_labels, num_classes, **match_kw):
    """Training targets for one image: (cls_target (A, C) one-hot float, 0 rows for background and ignored;
    box_target (A, 4) encoded offsets, 0 where not positive; matches (A,) as in match_anchors)."""
    gt_labels = np.asarray(gt_labels, np.int64)
    matches = match_anchors(anchors, gt_boxes, **match_kw)
    if gt_labels.shape != (len(np.asarray(gt_boxes).reshape(-1, 4)),):
        raise ValueError(f"detection_targets: gt_labels {gt_labels.shape} must have one label per box")
    pos = matches >= 0
    cls_target = np.zeros((len(anchors), num_classes))
    cls_target[np.flatnonzero(pos), gt_labels[matches[pos]]] = 1.0
    box_target = np.zeros((len(anchors), 4))
    if pos.any():
        box_target[pos] = encode_boxes(np.asarray(gt_boxes, np.float64)[matches[pos]], anchors[pos])
    return cls_target, box_target, matches


def _softplus(x):
    return np.logaddexp(0.0, x)


def focal_loss(logits, targets, *, alpha=0.25, gamma=2.0, normalizer=None):
    """Sigmoid focal loss (Lin et al., 2017), summed over all entries and divided by `normalizer`.

    logits, targets (A, C); targets in {0, 1} (one-hot rows; all-zero rows are background).
    With p = sigmoid(logit), p_t = p where t = 1 and 1 - p where t = 0, alpha_t likewise alpha / 1 - alpha:
        FL = -alpha_t (1 - p_t)^gamma log p_t          (gamma = 0, alpha = 0.5: half the cross-entropy)
        dFL/dlogit = alpha_t (2t - 1) (1 - p_t)^gamma (gamma p_t log p_t - (1 - p_t))
    normalizer: the number of positive anchors (default: the number of rows A), at least 1.
    Returns (loss, dlogits).
    """
    logits, targets = np.asarray(logits, np.float64), np.asarray(targets, np.float64)
    if logits.shape != targets.shape or logits.ndim != 2:
        raise ValueError(f"focal_loss: logits {logits.shape} and targets {targets.shape} must both be (A, C)")
    if not np.isin(targets, (0.0, 1.0)).all():
        raise ValueError("focal_loss: targets must be 0 or 1")
    norm = max(1.0, float(len(logits) if normalizer is None else normalizer))
    sign = 2 * targets - 1                                  # +1 for t = 1, -1 for t = 0
    log_pt = -_softplus(-sign * logits)                     # log p_t, stable for large |logit|
    pt = np.exp(log_pt)
    alpha_t = np.where(targets == 1, alpha, 1 - alpha)
    loss = -alpha_t * (1 - pt) ** gamma * log_pt
    dlogits = alpha_t * sign * (1 - pt) ** gamma * (gamma * pt * log_pt - (1 - pt))
    return float(loss.sum() / norm), dlogits / norm


def smooth_l1_loss(pred, target, *, beta=1.0, normalizer=None):
    """Smooth L1 (Huber-like) loss, summed over all entries and divided by `normalizer` (default: rows).

    per entry, d = pred - target:  0.5 d^2 / beta  if |d| < beta,  else |d| - 0.5 beta
    gradient:                      d / beta                             sign(d)
    Quadratic near 0 (smooth), linear far away (an outlier box does not dominate). Returns (loss, dpred).
    """
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    if pred.shape != target.shape:
        raise ValueError(f"smooth_l1_loss: pred {pred.shape} and target {target.shape} must have the same shape")
    if beta <= 0:
        raise ValueError(f"smooth_l1_loss: beta must be > 0, got {beta}")
    norm = max(1.0, float(len(pred) if normalizer is None else normalizer))
    d = pred - target
    small = np.abs(d) < beta
    loss = np.where(small, 0.5 * d * d / beta, np.abs(d) - 0.5 * beta)
    return float(loss.sum() / norm), np.where(small, d / beta, np.sign(d)) / norm


def nms(boxes, scores, iou_threshold=0.5):
    """Greedy non-maximum suppression: indices of the kept boxes, by decreasing score.

    Repeat: keep the highest-scoring box left, drop every remaining box whose IoU with it exceeds
    iou_threshold. Ties in score are broken by the lower index (a stable sort).
    """
    boxes, scores = check_boxes(boxes), np.asarray(scores, np.float64)
    if scores.shape != (len(boxes),):
        raise ValueError(f"nms: scores must have shape ({len(boxes)},), one per box, got {scores.shape}")
    order = np.argsort(-scores, kind="stable")
    keep = []
    while len(order):
        best, order = order[0], order[1:]
        keep.append(int(best))
        order = order[box_iou(boxes[best:best + 1], boxes[order])[0] <= iou_threshold]
    return np.array(keep, np.int64)


def batched_nms(boxes, scores, classes, iou_threshold=0.5):
    """NMS per class (a box only suppresses boxes of its own class): kept indices by decreasing score."""
    classes = np.asarray(classes)
    boxes, scores = check_boxes(boxes), np.asarray(scores, np.float64)
    if classes.shape != (len(boxes),) or scores.shape != (len(boxes),):
        raise ValueError(f"batched_nms: scores {scores.shape} and classes {classes.shape} need one entry "
                         f"per box ({len(boxes)},)")
    keep = [np.flatnonzero(classes == c)[nms(boxes[classes == c], scores[classes == c], iou_threshold)]
            for c in np.unique(classes)]
    keep = np.concatenate(keep) if keep else np.zeros(0, np.int64)
    return keep[np.argsort(-scores[keep], kind="stable")]


def postprocess(scores, deltas, anchors, *, score_threshold=0.3, iou_threshold=0.5, max_detections=20,
                pre_nms=200):
    """One image's network output -> detections (boxes (K, 4), scores (K,), labels (K,)).

    scores (A, C) class probabilities per anchor, deltas (A, 4) box offsets. Every (anchor, class)
    pair above score_threshold is a candidate (at most the pre_nms best); its box is decoded, NMS runs
    per class, and the max_detections best survivors are returned.
    """
    scores = np.asarray(scores, np.float64)
    if scores.ndim != 2 or len(scores) != len(anchors) or np.shape(deltas) != (len(anchors), 4):
        raise ValueError(f"postprocess: need scores (A, C) and deltas (A, 4) for A = {len(anchors)} anchors, "
                         f"got {scores.shape} and {np.shape(deltas)}")
    anchor_idx, labels = np.nonzero(scores > score_threshold)
    cand = scores[anchor_idx, labels]
    top = np.argsort(-cand, kind="stable")[:pre_nms]
    anchor_idx, labels, cand = anchor_idx[top], labels[top], cand[top]
    boxes = decode_boxes(np.asarray(deltas, np.float64)[anchor_idx], anchors[anchor_idx])
    keep = batched_nms(boxes, cand, labels, iou_threshold)[:max_detections]
    return boxes[keep], cand[keep], labels[keep]


def average_precision(recall, precision):
    """VOC all-point interpolated AP: the area under the precision envelope.

    recall, precision: the curve after each detection in score order (recall non-decreasing).
    AP = sum_k (r_k - r_{k-1}) p_interp(r_k),  p_interp(r) = max{p_j : r_j >= r},  r_0 = 0.
    """
    r = np.concatenate([[0.0], np.asarray(recall, np.float64), [1.0]])
    p = np.concatenate([[0.0], np.asarray(precision, np.float64), [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]           # the envelope: best precision at any higher recall
    step = np.flatnonzero(r[1:] != r[:-1]) + 1          # where recall moves
    return float(np.sum((r[step] - r[step - 1]) * p[step]))


def match_detections(det_boxes, det_scores, gt_boxes, iou_threshold=0.5):
    """One image, one class: is each detection a true positive? (K,) bool.

    Detections are taken by decreasing score; each takes the not-yet-taken ground-truth box with the
    highest IoU, if that IoU >= iou_threshold; otherwise (or for a duplicate) it is a false positive.
    """
    tp = np.zeros(len(det_scores), bool)
    if len(gt_boxes) == 0 or len(det_scores) == 0:
        return tp
    iou = box_iou(det_boxes, gt_boxes)
    taken = np.zeros(len(gt_boxes), bool)
    for k in np.argsort(-np.asarray(det_scores), kind="stable"):
        free = np.where(taken, -1.0, iou[k])
        g = int(free.argmax())
        if free[g] >= iou_threshold:
            tp[k], taken[g] = True, True
    return tp


def evaluate_detections(detections, ground_truth, num_classes, iou_threshold=0.5):
    """Mean average precision at an IoU threshold (mAP@0.5 with the default), VOC-style.

    detections    list over images of (boxes (K, 4), scores (K,), labels (K,));
    ground_truth  list over images of (boxes (G, 4), labels (G,)).
    Per class c: all detections of class c in all images, sorted by score, are true or false positives
    (match_detections, per image); precision and recall after each one; AP_c = average_precision.
    mAP = the mean of AP_c over the classes that have ground-truth boxes.
    Returns {"map", "ap" (C,) (nan for a class without boxes), "curves" {c: (recall, precision)}}.
    """
    if len(detections) != len(ground_truth):
        raise ValueError(f"evaluate_detections: {len(detections)} images of detections but "
                         f"{len(ground_truth)} of ground truth")
    ap, curves = np.full(num_classes, np.nan), {}
    for c in range(num_classes):
        scores, hits, n_gt = [], [], 0
        for i, ((db, ds, dl), (gb, gl)) in enumerate(zip(detections, ground_truth)):
            gb = check_boxes(gb, f"ground_truth[{i}] boxes")
            db = check_boxes(db, f"detections[{i}] boxes")
            d_c, g_c = np.asarray(dl) == c, np.asarray(gl) == c
            n_gt += int(g_c.sum())
            scores.append(np.asarray(ds, np.float64)[d_c])
            hits.append(match_detections(db[d_c], scores[-1], gb[g_c], iou_threshold))
        if n_gt == 0:
            continue
        scores, hits = np.concatenate(scores), np.concatenate(hits)
        order = np.argsort(-scores, kind="stable")
        tp = np.cumsum(hits[order])
        recall, precision = tp / n_gt, tp / np.arange(1, len(tp) + 1)
        ap[c], curves[c] = average_precision(recall, precision), (recall, precision)
    return {"map": float(np.nanmean(ap)), "ap": ap, "curves": curves}
