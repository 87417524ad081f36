"""Classic per-image mask AP (VOC-style, all-point interpolated, at one IoU threshold).

These are the evaluation helpers of the classic ``mrcnn.utils`` module, with the classic
semantics kept so that numbers computed with the classic package can be reproduced:

* :func:`compute_matches` greedily matches the predictions of **one image** to its ground
  truth by **mask** IoU.
* :func:`compute_ap` turns those matches into a precision/recall curve and the Pascal VOC
  (2010+) **all-point interpolated** average precision at **one** IoU threshold.
* :func:`compute_ap_range` averages :func:`compute_ap` over several IoU thresholds
  (default 0.50, 0.55, ..., 0.95) for **one image**.
* :func:`compute_recall` is the box recall of a set of proposals.

Averaging the per-image AP of :func:`compute_ap` over the images of a dataset gives what the
classic notebooks call "mAP @ IoU=50". **That number is not COCO AP**: COCO AP pools all
detections of the whole dataset per category, averages ten IoU thresholds (0.50:0.95) and uses
101-point interpolation. For COCO box/mask AP use :mod:`mrcnn.eval.coco_eval`. See
``docs/evaluation.md``.

Conventions: boxes are pixel ``(y1, x1, y2, x2)`` rows; masks are ``[H, W, N]`` bool (one
channel per instance); lists may be zero-padded at the end (all-zero box rows), the padding is
trimmed with :func:`mrcnn.ops.boxes.trim_zeros` as the classic code does.
"""
import logging

import numpy as np

from mrcnn.ops.boxes import compute_overlaps, trim_zeros
from mrcnn.ops.masks import compute_overlaps_masks

__all__ = ["compute_matches", "compute_ap", "compute_ap_range", "compute_recall"]

logger = logging.getLogger(__name__)


def _as_masks(masks, name, count):
    """Check an ``[H, W, N]`` mask stack holds at least ``count`` instances; return its first ``count``."""
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"{name} must be [H, W, N] masks, got shape {masks.shape}")
    if masks.shape[-1] < count:
        raise ValueError(
            f"{name} has {masks.shape[-1]} instances (shape {masks.shape}) but the boxes have "
            f"{count} non-padding rows")
    return masks[..., :count]


def _as_vector(values, name, count):
    """Check a per-instance vector holds at least ``count`` entries; return its first ``count``."""
    values = np.asarray(values).reshape(-1)
    if values.shape[0] < count:
        raise ValueError(
            f"{name} has {values.shape[0]} entries but the boxes have {count} non-padding rows")
    return values[:count]


def _as_boxes(boxes, name):
    boxes = np.asarray(boxes)
    if boxes.size == 0:
        return boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must be [N, (y1, x1, y2, x2)], got shape {boxes.shape}")
    return boxes


def compute_matches(gt_boxes, gt_class_ids, gt_masks,
                    pred_boxes, pred_class_ids, pred_scores, pred_masks,
                    iou_threshold=0.5, score_threshold=0.0):
    """Match the predictions of one image to its ground truth by mask IoU (classic semantics).

    Args:
        gt_boxes: ``[N_gt, (y1, x1, y2, x2)]`` pixel boxes, may be zero-padded at the end. Only
            used to count the real instances (padding rows are trimmed).
        gt_class_ids: ``[N_gt]`` int class ids (padding entries ignored).
        gt_masks: ``[H, W, N_gt]`` bool masks.
        pred_boxes: ``[N_pred, (y1, x1, y2, x2)]`` pixel boxes, may be zero-padded at the end.
        pred_class_ids: ``[N_pred]`` int class ids.
        pred_scores: ``[N_pred]`` float confidence scores.
        pred_masks: ``[H, W, N_pred]`` bool masks, same ``H, W`` as ``gt_masks``.
        iou_threshold: minimum mask IoU for a match.
        score_threshold: classic quirk, kept for reproducibility: despite its name it is compared
            with the **IoU** of each candidate ground truth (candidates with IoU below it are never
            considered), i.e. an extra IoU floor; it is *not* a confidence-score filter. The
            default 0.0 makes it a no-op.

    Predictions are sorted by score, highest first (``np.argsort(scores)[::-1]`` as the classic
    code, which fixes the order of ties). Each prediction in turn takes the unmatched ground truth
    of the same class with the highest IoU, if that IoU is >= ``iou_threshold``; a ground truth of
    another class with a higher IoU does not block it.

    Returns:
        gt_match: ``[N_gt']`` float64, for each (trimmed) ground truth the index of the matched
            prediction in the **score-sorted** order, or -1.
        pred_match: ``[N_pred']`` float64, for each score-sorted prediction the index of the matched
            ground truth, or -1.
        overlaps: ``[N_pred', N_gt']`` float mask IoUs, rows in score-sorted order.
    """
    gt_boxes = trim_zeros(_as_boxes(gt_boxes, "gt_boxes"))
    pred_boxes = trim_zeros(_as_boxes(pred_boxes, "pred_boxes"))
    n_gt, n_pred = gt_boxes.shape[0], pred_boxes.shape[0]
    gt_masks = _as_masks(gt_masks, "gt_masks", n_gt)
    pred_masks = _as_masks(pred_masks, "pred_masks", n_pred)
    if gt_masks.shape[:2] != pred_masks.shape[:2]:
        raise ValueError(
            f"pred_masks shape {pred_masks.shape} and gt_masks shape {gt_masks.shape} must have the "
            f"same height and width")
    gt_class_ids = _as_vector(gt_class_ids, "gt_class_ids", n_gt)
    pred_class_ids = _as_vector(pred_class_ids, "pred_class_ids", n_pred)
    pred_scores = _as_vector(pred_scores, "pred_scores", n_pred)

    order = np.argsort(pred_scores)[::-1]
    pred_class_ids = pred_class_ids[order]
    pred_masks = pred_masks[..., order]

    if n_pred == 0 or n_gt == 0:
        overlaps = np.zeros((n_pred, n_gt), dtype=np.float32)
    else:
        overlaps = compute_overlaps_masks(pred_masks, gt_masks)

    pred_match = -1 * np.ones([n_pred])
    gt_match = -1 * np.ones([n_gt])
    for i in range(n_pred):
        candidates = np.argsort(overlaps[i])[::-1]
        too_low = np.where(overlaps[i, candidates] < score_threshold)[0]
        if too_low.size > 0:
            candidates = candidates[:too_low[0]]
        for j in candidates:
            if gt_match[j] > -1:
                continue
            # Candidates are sorted by IoU, so nothing further down can pass the threshold.
            if overlaps[i, j] < iou_threshold:
                break
            if pred_class_ids[i] == gt_class_ids[j]:
                gt_match[j] = i
                pred_match[i] = j
                break
    return gt_match, pred_match, overlaps


def compute_ap(gt_boxes, gt_class_ids, gt_masks,
               pred_boxes, pred_class_ids, pred_scores, pred_masks,
               iou_threshold=0.5):
    """Classic per-image mask AP at one IoU threshold (VOC-style, all-point interpolation).

    This is **not** COCO AP: it looks at one image, one IoU threshold and pools all classes
    together (a prediction is a true positive when it matches a ground truth of its own class).
    Averaged over images it gives the classic "mAP@0.5". For COCO AP see
    :func:`mrcnn.eval.coco_eval.evaluate_coco`.

    Args: as :func:`compute_matches` (pixel boxes, ``[H, W, N]`` bool masks, zero-padding trimmed).

    The precision after each score-sorted prediction is ``TP / (k + 1)``, the recall ``TP / N_gt``.
    Precisions are padded with 0 at both ends and recalls with 0 and 1, precisions are replaced by
    their running maximum from the end, and AP is the sum of ``(r[i] - r[i-1]) * p[i]`` over the
    points where the recall changes.

    Returns:
        mAP: float, the AP of this image. 0.0 when there are neither predictions nor ground
            truth; NaN when there is no ground truth but there are predictions (recall undefined,
            classic behaviour; skip such images or treat them separately).
        precisions: ``[N_pred' + 2]`` float, interpolated precisions (with the padding).
        recalls: ``[N_pred' + 2]`` float, recalls (with the padding).
        overlaps: ``[N_pred', N_gt']`` float mask IoUs (rows in score-sorted order).
    """
    gt_match, pred_match, overlaps = compute_matches(
        gt_boxes, gt_class_ids, gt_masks,
        pred_boxes, pred_class_ids, pred_scores, pred_masks,
        iou_threshold)

    true_positives = np.cumsum(pred_match > -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precisions = true_positives / (np.arange(len(pred_match)) + 1)
        recalls = true_positives.astype(np.float32) / len(gt_match)

    precisions = np.concatenate([[0], precisions, [0]])
    recalls = np.concatenate([[0], recalls, [1]])
    # Interpolate: each precision becomes the best precision at this or any higher recall.
    for i in range(len(precisions) - 2, -1, -1):
        precisions[i] = np.maximum(precisions[i], precisions[i + 1])

    steps = np.where(recalls[:-1] != recalls[1:])[0] + 1
    m_ap = np.sum((recalls[steps] - recalls[steps - 1]) * precisions[steps])
    return m_ap, precisions, recalls, overlaps


def compute_ap_range(gt_box, gt_class_id, gt_mask,
                     pred_box, pred_class_id, pred_score, pred_mask,
                     iou_thresholds=None, verbose=1):
    """Mean of the classic per-image :func:`compute_ap` over several IoU thresholds, one image.

    Args: as :func:`compute_ap`; ``iou_thresholds`` defaults to ``np.arange(0.5, 1.0, 0.05)``
    (0.50, 0.55, ..., 0.95). With ``verbose`` truthy, prints one line per threshold and one for
    the mean, as the classic code.

    This resembles COCO's IoU range but is still a per-image, all-point-interpolated,
    class-pooled number; it is not COCO AP.

    Returns:
        float: the mean AP over the thresholds.
    """
    if iou_thresholds is None:
        iou_thresholds = np.arange(0.5, 1.0, 0.05)
    iou_thresholds = np.asarray(iou_thresholds, dtype=np.float64).reshape(-1)
    if iou_thresholds.size == 0:
        raise ValueError("iou_thresholds is empty; give at least one IoU threshold")

    aps = []
    for iou_threshold in iou_thresholds:
        ap, _, _, _ = compute_ap(gt_box, gt_class_id, gt_mask,
                                 pred_box, pred_class_id, pred_score, pred_mask,
                                 iou_threshold=iou_threshold)
        if verbose:
            print("AP @{:.2f}:\t {:.3f}".format(iou_threshold, ap))
        aps.append(ap)
    mean_ap = np.array(aps).mean()
    if verbose:
        print("AP @{:.2f}-{:.2f}:\t {:.3f}".format(iou_thresholds[0], iou_thresholds[-1], mean_ap))
    return mean_ap


def compute_recall(pred_boxes, gt_boxes, iou):
    """Box recall of a set of predicted boxes (e.g. RPN proposals) at one IoU threshold.

    Args:
        pred_boxes: ``[N_pred, (y1, x1, y2, x2)]`` boxes (pixels or normalized, same frame as
            ``gt_boxes``). Not trimmed: zero rows count as (empty) boxes, as in the classic code.
        gt_boxes: ``[N_gt, (y1, x1, y2, x2)]`` boxes.
        iou: float, minimum box IoU for a prediction to count as finding its best ground truth.

    Each prediction is assigned to the ground truth it overlaps most; a ground truth is recalled
    when at least one prediction assigned to it has IoU >= ``iou``.

    Returns:
        recall: float, recalled ground truths / ``N_gt``. 0.0 when there are no predictions; NaN
            when there is no ground truth.
        positive_ids: ``[K]`` int64 indices of the predictions with IoU >= ``iou`` to their best
            ground truth.
    """
    pred_boxes = _as_boxes(pred_boxes, "pred_boxes")
    gt_boxes = _as_boxes(gt_boxes, "gt_boxes")
    if gt_boxes.shape[0] == 0:
        return float("nan"), np.zeros((0,), dtype=np.int64)
    if pred_boxes.shape[0] == 0:
        return 0.0, np.zeros((0,), dtype=np.int64)
    overlaps = compute_overlaps(pred_boxes, gt_boxes)
    iou_max = np.max(overlaps, axis=1)
    iou_argmax = np.argmax(overlaps, axis=1)
    positive_ids = np.where(iou_max >= iou)[0]
    matched_gt = iou_argmax[positive_ids]
    recall = len(set(matched_gt.tolist())) / gt_boxes.shape[0]
    return recall, positive_ids
