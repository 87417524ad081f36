"""RPN training targets for one image (NumPy, input side).

:func:`build_rpn_targets` labels every anchor positive / negative / neutral against the image's
ground-truth boxes and computes the regression targets of the positive anchors, with the classic
``mrcnn.model.build_rpn_targets`` rules:

1. Anchors whose IoU with any *crowd* box (negative class id) is >= ``crowd_iou`` (0.001) are never
   negative; crowd boxes are never regression targets.
2. Anchors whose best IoU with a (non-crowd) GT box is < ``negative_iou`` (0.3) are negative.
3. For each GT box, the anchor(s) with the highest IoU are positive (ties: all of them, as the last
   classic release), whatever that IoU is, so that every GT box has an anchor.
4. Anchors with IoU >= ``positive_iou`` (0.7) are positive.
5. Balancing: at most half of ``rpn_train_anchors_per_image`` are positive (a random subset of the
   extra positives becomes neutral); negatives are then cut to ``total - positives``.

Boxes and anchors are pixel ``(y1, x1, y2, x2)`` boxes (see docs/design.md). Deltas are
``(dy, dx, log(dh), log(dw))`` from :func:`mrcnn.ops.boxes.box_refinement`, divided by
``rpn_bbox_std_dev``.

Memory: the default 1024 px config has 261,888 anchors and up to 100 GT boxes. The IoU matrix is
kept in float32 (about 100 MB at that size) and built in chunks of anchors, so the temporaries
of the IoU computation stay small.
"""
import logging

import numpy as np

from mrcnn.ops.boxes import box_refinement, compute_overlaps

__all__ = ["build_rpn_targets"]

logger = logging.getLogger(__name__)

# About 4 MB per float32 temporary inside compute_overlaps.
_CHUNK_ELEMENTS = 1 << 20


def _iou_matrix(anchors, boxes):
    """[A, G] float32 IoU of pixel anchors and boxes, computed in chunks of anchors."""
    num_anchors, num_boxes = anchors.shape[0], boxes.shape[0]
    out = np.zeros((num_anchors, num_boxes), dtype=np.float32)
    if num_anchors == 0 or num_boxes == 0:
        return out
    step = max(1, _CHUNK_ELEMENTS // num_boxes)
    for start in range(0, num_anchors, step):
        out[start:start + step] = compute_overlaps(anchors[start:start + step], boxes)
    return out


def _max_iou_chunked(anchors, boxes):
    """[A] float32 best IoU of each anchor with ``boxes`` (zeros when there are none)."""
    num_anchors, num_boxes = anchors.shape[0], boxes.shape[0]
    out = np.zeros((num_anchors,), dtype=np.float32)
    if num_anchors == 0 or num_boxes == 0:
        return out
    step = max(1, _CHUNK_ELEMENTS // num_boxes)
    for start in range(0, num_anchors, step):
        out[start:start + step] = compute_overlaps(anchors[start:start + step], boxes).max(axis=1)
    return out


def _as_boxes(name, boxes):
    boxes = np.asarray(boxes)
    if boxes.size == 0:
        return np.zeros((0, 4), dtype=np.float32)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"build_rpn_targets: {name} must have shape [N, 4] as pixel "
                         f"(y1, x1, y2, x2); got shape {boxes.shape}")
    return boxes.astype(np.float32)


def build_rpn_targets(image_shape, anchors, gt_class_ids, gt_boxes, rpn_train_anchors_per_image,
                      rpn_bbox_std_dev=None, rng=None, *, positive_iou=0.7, negative_iou=0.3,
                      crowd_iou=0.001):
    """Label anchors and compute RPN regression targets for one image.

    Args:
        image_shape: (H, W[, C]) of the molded image; unused by the rules (kept for the classic
            signature).
        anchors: [A, 4] pixel anchors (y1, x1, y2, x2), e.g. from
            :func:`mrcnn.ops.anchors.generate_pyramid_anchors`.
        gt_class_ids: [G] int class ids. ``> 0``: objects; ``< 0``: crowd regions (COCO
            ``iscrowd``), which only keep nearby anchors from being negatives; ``0``: padding,
            ignored.
        gt_boxes: [G, 4] pixel boxes (y1, x1, y2, x2), y2/x2 exclusive, int or float.
        rpn_train_anchors_per_image: int, anchors per image used for training (positives +
            negatives), ``Config.RPN_TRAIN_ANCHORS_PER_IMAGE``. For the classic call
            ``build_rpn_targets(image_shape, anchors, gt_class_ids, gt_boxes, config)`` a Config
            is accepted here; ``RPN_TRAIN_ANCHORS_PER_IMAGE`` and ``RPN_BBOX_STD_DEV`` are then read
            from it.
        rpn_bbox_std_dev: [4] divisors of the deltas (``Config.RPN_BBOX_STD_DEV``).
        rng: ``np.random.Generator`` for the balancing subsets (reproducible when seeded); None
            draws a fresh unseeded generator.
        positive_iou, negative_iou, crowd_iou: the classic thresholds 0.7, 0.3 and 0.001.

    Returns:
        rpn_match: [A] int32, 1 positive, -1 negative, 0 neutral; at most
            ``rpn_train_anchors_per_image // 2`` positives and exactly
            ``min(#eligible negatives, total - #positives)`` negatives.
        rpn_bbox: [rpn_train_anchors_per_image, 4] float32 ``(dy, dx, log(dh), log(dw)) /
            rpn_bbox_std_dev`` of the positive anchors, in anchor order (row i belongs to the i-th
            positive anchor), each towards the GT box it overlaps most; zero rows pad the rest.

    Without any non-crowd GT box every anchor not touching a crowd is negative-eligible and
    ``total`` of them are sampled. Unlike the last classic release, a GT box whose best IoU is 0
    (a degenerate box outside every anchor) marks no anchor as positive; the classic code marked
    every anchor with IoU 0 to it.

    Example::

        rpn_match, rpn_bbox = build_rpn_targets(
            (64, 64, 3), anchors, np.array([1]), np.array([[8, 8, 40, 40]]), 32,
            [0.1, 0.1, 0.2, 0.2], rng=np.random.default_rng(0))
    """
    if hasattr(rpn_train_anchors_per_image, "RPN_TRAIN_ANCHORS_PER_IMAGE"):
        config = rpn_train_anchors_per_image
        rpn_train_anchors_per_image = config.RPN_TRAIN_ANCHORS_PER_IMAGE
        if rpn_bbox_std_dev is None:
            rpn_bbox_std_dev = config.RPN_BBOX_STD_DEV
    if rpn_bbox_std_dev is None:
        raise ValueError("build_rpn_targets: rpn_bbox_std_dev is required (4 values, e.g. "
                         "Config.RPN_BBOX_STD_DEV = [0.1, 0.1, 0.2, 0.2])")
    if (isinstance(rpn_train_anchors_per_image, (bool, np.bool_))
            or not isinstance(rpn_train_anchors_per_image, (int, np.integer))
            or rpn_train_anchors_per_image <= 0):
        raise ValueError(f"build_rpn_targets: rpn_train_anchors_per_image must be a positive "
                         f"integer, got {rpn_train_anchors_per_image!r}")
    total = int(rpn_train_anchors_per_image)
    std = np.asarray(rpn_bbox_std_dev, dtype=np.float32).reshape(-1)
    if std.shape != (4,) or np.any(std <= 0):
        raise ValueError(f"build_rpn_targets: rpn_bbox_std_dev must be 4 positive values, got "
                         f"{rpn_bbox_std_dev!r}")
    if rng is None:
        rng = np.random.default_rng()

    anchors = np.asarray(anchors)
    if anchors.ndim != 2 or anchors.shape[1] != 4:
        raise ValueError(f"build_rpn_targets: anchors must have shape [A, 4] as pixel "
                         f"(y1, x1, y2, x2); got shape {anchors.shape}")
    anchors = anchors.astype(np.float32, copy=False)
    gt_boxes = _as_boxes("gt_boxes", gt_boxes)
    gt_class_ids = np.asarray(gt_class_ids).reshape(-1)
    if gt_class_ids.shape[0] != gt_boxes.shape[0]:
        raise ValueError(f"build_rpn_targets: gt_class_ids has {gt_class_ids.shape[0]} entries "
                         f"but gt_boxes has {gt_boxes.shape[0]} boxes")

    num_anchors = anchors.shape[0]
    rpn_match = np.zeros([num_anchors], dtype=np.int32)
    rpn_bbox = np.zeros((total, 4), dtype=np.float32)

    crowd_boxes = gt_boxes[gt_class_ids < 0]
    object_boxes = gt_boxes[gt_class_ids > 0]
    if crowd_boxes.shape[0]:
        not_crowd = _max_iou_chunked(anchors, crowd_boxes) < crowd_iou
    else:
        not_crowd = np.ones([num_anchors], dtype=bool)

    if object_boxes.shape[0]:
        overlaps = _iou_matrix(anchors, object_boxes)  # [A, G]
        anchor_best_gt = np.argmax(overlaps, axis=1)
        anchor_best_iou = overlaps[np.arange(num_anchors), anchor_best_gt]
        rpn_match[(anchor_best_iou < negative_iou) & not_crowd] = -1
        # Positives are set after negatives so that the best anchor of a GT box wins even when
        # its IoU is below negative_iou.
        gt_best_iou = overlaps.max(axis=0)  # [G]
        best_rows, _ = np.nonzero((overlaps == gt_best_iou[None, :]) & (gt_best_iou[None, :] > 0))
        rpn_match[best_rows] = 1
        rpn_match[anchor_best_iou >= positive_iou] = 1
        del overlaps
    else:
        anchor_best_gt = np.zeros([num_anchors], dtype=np.int64)
        rpn_match[not_crowd] = -1

    positive_ids = np.flatnonzero(rpn_match == 1)
    extra = positive_ids.shape[0] - total // 2
    if extra > 0:
        rpn_match[rng.choice(positive_ids, extra, replace=False)] = 0
    num_positive = int(np.sum(rpn_match == 1))
    negative_ids = np.flatnonzero(rpn_match == -1)
    extra = negative_ids.shape[0] - (total - num_positive)
    if extra > 0:
        rpn_match[rng.choice(negative_ids, extra, replace=False)] = 0

    positive_ids = np.flatnonzero(rpn_match == 1)
    if positive_ids.shape[0]:
        deltas = box_refinement(anchors[positive_ids],
                                object_boxes[anchor_best_gt[positive_ids]])
        rpn_bbox[:positive_ids.shape[0]] = deltas / std
    return rpn_match, rpn_bbox
