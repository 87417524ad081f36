"""NumPy second-stage targets for debugging the heads: random ROIs and their detection targets.

The classic ``mrcnn.model`` had these two functions for ``data_generator(random_rois=...,
detection_targets=True)``: the inspect_data notebook draws the targets, and they let the heads be
trained on random ROIs without the RPN (``USE_RPN_ROIS = False``). They are not used by normal
training, whose targets come from the batched :class:`mrcnn.model.targets.DetectionTargetLayer`.

Coordinates: all boxes are pixel ``(y1, x1, y2, x2)`` of the molded image, y2/x2 exclusive, as
:func:`mrcnn.data.pipeline.load_image_gt` returns them.
"""
import logging

import numpy as np

from mrcnn.ops.resize import resize
from mrcnn.ops.boxes import box_refinement, compute_overlaps

__all__ = ["generate_random_rois", "build_detection_targets"]

logger = logging.getLogger(__name__)


def _random_spans(rng, low, high, count):
    """``count`` sorted pairs (a, b) of ints in [low, high) with b - a >= 1 (classic sampling:
    draw twice as many pairs as needed, keep those of non-zero length, retry until enough)."""
    if high - low < 2:
        # No pair of distinct integers exists; the classic loop never ended here.
        raise ValueError(f"generate_random_rois: the range [{low}, {high}) is too small to draw "
                         "boxes of non-zero size")
    spans = np.zeros((0, 2), dtype=np.int64)
    while spans.shape[0] < count:
        pairs = rng.integers(low, high, (count * 2, 2))
        spans = np.concatenate([spans, pairs[pairs[:, 0] != pairs[:, 1]]])[:count]
    return np.sort(spans, axis=1)


def generate_random_rois(image_shape, count, gt_class_ids, gt_boxes, rng=None):
    """ROI proposals like a region proposal network's: 90 % around GT boxes, 10 % anywhere.

    Args:
        image_shape: (H, W[, C]) of the molded image.
        count: int > 0, number of ROIs.
        gt_class_ids: [N] int class ids (kept for the classic signature; not used).
        gt_boxes: [N, (y1, x1, y2, x2)] int pixels.
        rng: ``np.random.Generator`` (None: a fresh unseeded one).

    Returns:
        [count, (y1, x1, y2, x2)] int32 pixel boxes, each of height and width >= 1. Around GT box
        ``i`` (rows ``i * k .. (i + 1) * k``, ``k = int(0.9 * count / N)``), corners are drawn
        in the box grown by its own height and width on each side, clipped to the image; the
        remaining rows anywhere in the image. With no GT boxes all ROIs are drawn anywhere
        (the classic divided by zero).
    """
    rng = np.random.default_rng() if rng is None else rng
    count = int(count)
    if count <= 0:
        raise ValueError(f"generate_random_rois: count must be a positive int, got {count!r}")
    height, width = int(image_shape[0]), int(image_shape[1])
    gt_boxes = np.asarray(gt_boxes).reshape(-1, 4)
    rois = np.zeros((count, 4), dtype=np.int32)
    rois_per_box = int(0.9 * count / gt_boxes.shape[0]) if gt_boxes.shape[0] else 0
    if rois_per_box:
        for i, (gt_y1, gt_x1, gt_y2, gt_x2) in enumerate(gt_boxes.astype(np.int64)):
            h, w = gt_y2 - gt_y1, gt_x2 - gt_x1
            y1y2 = _random_spans(rng, max(gt_y1 - h, 0), min(gt_y2 + h, height), rois_per_box)
            x1x2 = _random_spans(rng, max(gt_x1 - w, 0), min(gt_x2 + w, width), rois_per_box)
            rois[rois_per_box * i:rois_per_box * (i + 1)] = np.stack(
                [y1y2[:, 0], x1x2[:, 0], y1y2[:, 1], x1x2[:, 1]], axis=1)
    remaining = count - rois_per_box * gt_boxes.shape[0]
    if remaining > 0:
        y1y2 = _random_spans(rng, 0, height, remaining)
        x1x2 = _random_spans(rng, 0, width, remaining)
        rois[-remaining:] = np.stack([y1y2[:, 0], x1x2[:, 0], y1y2[:, 1], x1x2[:, 1]], axis=1)
    return rois


def _config_value(config, name):
    value = getattr(config, name, None)
    if value is None:
        raise ValueError(f"build_detection_targets: config.{name} is not set")
    return value


def build_detection_targets(rpn_rois, gt_class_ids, gt_boxes, gt_masks, config, rng=None):
    """Targets of the classifier and mask heads for one image's ROIs (classic NumPy version).

    Args:
        rpn_rois: [R, (y1, x1, y2, x2)] pixel proposals (e.g. :func:`generate_random_rois`).
        gt_class_ids: [N] int class ids; entries <= 0 (padding, crowds) are ignored.
        gt_boxes: [N, (y1, x1, y2, x2)] int pixels.
        gt_masks: [H, W, N] bool full-size masks, or [mh, mw, N] mini-masks when
            ``config.USE_MINI_MASK`` (as :func:`load_image_gt` returned them).
        config: reads TRAIN_ROIS_PER_IMAGE, ROI_POSITIVE_RATIO, NUM_CLASSES, BBOX_STD_DEV,
            MASK_SHAPE, USE_MINI_MASK, IMAGE_SHAPE.
        rng: ``np.random.Generator`` for the sampling (None: unseeded).

    Returns:
        rois: [T, 4] the sampled ROIs (T = TRAIN_ROIS_PER_IMAGE), dtype of ``rpn_rois``;
            positives (IoU > 0.5 with a GT box) first, at most ``T * ROI_POSITIVE_RATIO`` of them,
            then negatives (IoU < 0.5), then repeats when there are too few ROIs.
        class_ids: [T] int32, the GT class of positives, 0 for negatives.
        bboxes: [T, NUM_CLASSES, 4] float32 deltas (dy, dx, log(dh), log(dw)) / BBOX_STD_DEV,
            in the column of the ROI's class only (zero elsewhere and for negatives).
        masks: [T, MASK_SHAPE[0], MASK_SHAPE[1], NUM_CLASSES] float32 soft masks in [0, 1]: the
            GT mask cropped to the ROI and resized, in the ROI's class channel (zero elsewhere).

    Raises:
        ValueError: no ROIs, or no GT instance with a class id > 0.

    Differs from the classic in one bug: when every sampled ROI was positive and more were
    needed, the classic drew the repeats from an empty negative list and crashed; here repeats
    come from the kept ROIs, negatives first.
    """
    rng = np.random.default_rng() if rng is None else rng
    rpn_rois = np.asarray(rpn_rois)
    if rpn_rois.ndim != 2 or rpn_rois.shape[0] == 0 or rpn_rois.shape[1] != 4:
        raise ValueError(f"build_detection_targets: rpn_rois must be [R > 0, 4], got "
                         f"{rpn_rois.shape}")
    gt_class_ids = np.asarray(gt_class_ids).reshape(-1)
    gt_boxes = np.asarray(gt_boxes).reshape(-1, 4).astype(np.int32)
    gt_masks = np.asarray(gt_masks, dtype=bool)
    instance_ids = np.where(gt_class_ids > 0)[0]
    if instance_ids.shape[0] == 0:
        raise ValueError("build_detection_targets: the image has no instance with a class id > 0")
    gt_class_ids = gt_class_ids[instance_ids].astype(np.int32)
    gt_boxes = gt_boxes[instance_ids]
    gt_masks = gt_masks[:, :, instance_ids]

    rois_per_image = int(_config_value(config, "TRAIN_ROIS_PER_IMAGE"))
    num_classes = int(_config_value(config, "NUM_CLASSES"))
    mask_shape = tuple(int(s) for s in _config_value(config, "MASK_SHAPE"))

    overlaps = compute_overlaps(rpn_rois.astype(np.float64), gt_boxes.astype(np.float64))
    roi_gt = np.argmax(overlaps, axis=1)
    roi_iou = overlaps[np.arange(overlaps.shape[0]), roi_gt]
    fg_ids = np.where(roi_iou > 0.5)[0]
    bg_ids = np.where(roi_iou < 0.5)[0]

    fg_count = int(rois_per_image * float(config.ROI_POSITIVE_RATIO))
    if fg_ids.shape[0] > fg_count:
        fg_ids = rng.choice(fg_ids, fg_count, replace=False)
    remaining = rois_per_image - fg_ids.shape[0]
    if bg_ids.shape[0] > remaining:
        bg_ids = rng.choice(bg_ids, remaining, replace=False)
    keep = np.concatenate([fg_ids, bg_ids]).astype(np.int64)
    remaining = rois_per_image - keep.shape[0]
    if remaining > 0:
        # Too few ROIs for the desired balance: repeat kept ones (negatives when there are any).
        pool = bg_ids if bg_ids.shape[0] else keep
        if pool.shape[0] == 0:
            pool = np.arange(rpn_rois.shape[0])
        keep = np.concatenate([keep, rng.choice(pool, remaining, replace=True)])
    is_fg = np.zeros(rpn_rois.shape[0], dtype=bool)
    is_fg[fg_ids] = True

    rois = rpn_rois[keep]
    positive = is_fg[keep]
    assignment = roi_gt[keep]
    class_ids = np.where(positive, gt_class_ids[assignment], 0).astype(np.int32)

    bboxes = np.zeros((rois_per_image, num_classes, 4), dtype=np.float32)
    pos_ids = np.where(positive)[0]
    if pos_ids.shape[0]:
        deltas = box_refinement(rois[pos_ids].astype(np.float32),
                                gt_boxes[assignment[pos_ids]].astype(np.float32))
        bboxes[pos_ids, class_ids[pos_ids]] = deltas / np.asarray(config.BBOX_STD_DEV,
                                                                   dtype=np.float32)

    masks = np.zeros((rois_per_image,) + mask_shape + (num_classes,), dtype=np.float32)
    image_hw = tuple(int(s) for s in config.IMAGE_SHAPE[:2])
    for i in pos_ids:
        gt_id = assignment[i]
        class_mask = gt_masks[:, :, gt_id]
        if config.USE_MINI_MASK and class_mask.shape != image_hw:
            # Expand the mini-mask back into its GT box on an image-sized canvas.
            canvas = np.zeros(image_hw, dtype=bool)
            y1, x1, y2, x2 = gt_boxes[gt_id]
            if y2 > y1 and x2 > x1:
                canvas[y1:y2, x1:x2] = np.round(resize(class_mask.astype(np.float32),
                                                       (y2 - y1, x2 - x1))).astype(bool)
            class_mask = canvas
        y1, x1, y2, x2 = np.asarray(rois[i]).astype(np.int32)
        crop = class_mask[y1:y2, x1:x2]
        if crop.size:
            masks[i, :, :, class_ids[i]] = resize(crop.astype(np.float32), mask_shape)
    return rois, class_ids, bboxes, masks
