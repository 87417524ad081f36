"""Box operations in NumPy and TensorFlow, side by side.

Conventions (see docs/design.md):

* Boxes are ``(y1, x1, y2, x2)``. Pixel boxes have exclusive ``y2``/``x2``; normalized boxes map
  pixel ``(0, 0, h, w)`` to ``(0, 0, 1, 1)`` through ``(boxes - [0, 0, 1, 1]) / [h-1, w-1, h-1, w-1]``.
* Heights and widths are ``y2 - y1`` and ``x2 - x1`` (no ``+1``), for areas and for deltas alike.
* Box deltas are ``(dy, dx, log(dh), log(dw))``: centre shifts relative to the box size and log
  size ratios. They are *not* divided by any ``BBOX_STD_DEV`` here; callers do that.

The NumPy functions keep the classic ``mrcnn.utils`` names and semantics. The ``*_tf`` functions
accept any leading batch dimensions and compute in float32. TensorFlow is imported inside the
``*_tf`` functions only, so that ``import mrcnn.ops.boxes`` stays cheap for NumPy-only users.
"""
import numpy as np

__all__ = [
    "compute_iou",
    "compute_overlaps",
    "non_max_suppression",
    "apply_box_deltas",
    "box_refinement",
    "norm_boxes",
    "denorm_boxes",
    "trim_zeros",
    "apply_box_deltas_tf",
    "clip_boxes_tf",
    "compute_overlaps_tf",
    "box_refinement_tf",
    "norm_boxes_tf",
    "denorm_boxes_tf",
]

_NORM_SHIFT = np.array([0, 0, 1, 1])


# ----------------------------------------------------------------------------------------------
# NumPy helpers
# ----------------------------------------------------------------------------------------------
def _as_float(array):
    """Keep floating arrays at their precision; integers become float32 (as the classic code)."""
    array = np.asarray(array)
    if array.dtype.kind == "f":
        return array
    return array.astype(np.float32)


def _check_boxes(name, boxes, allow_1d=False):
    """Return ``boxes`` as an [N, 4] array (an empty input of any shape becomes [0, 4])."""
    boxes = np.asarray(boxes)
    if boxes.size == 0 and boxes.ndim <= 2:
        return boxes.reshape(0, 4)
    if allow_1d and boxes.ndim == 1 and boxes.shape[0] == 4:
        return boxes
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(
            f"{name} must have shape [N, 4] as (y1, x1, y2, x2); got shape {boxes.shape}")
    return boxes


def _image_hw(shape, name="shape"):
    """(h, w) as floats from a (h, w) or (h, w, c) shape, rejecting sizes that cannot normalize."""
    try:
        h, w = (float(v) for v in tuple(np.asarray(shape).reshape(-1))[:2])
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be (height, width[, channels]); got {shape!r}") from None
    if h <= 1 or w <= 1:
        # The normalization divides by (h - 1) and (w - 1).
        raise ValueError(f"{name} must have height and width > 1; got {shape!r}")
    return h, w


# ----------------------------------------------------------------------------------------------
# NumPy
# ----------------------------------------------------------------------------------------------
def compute_iou(box, boxes, box_area, boxes_area):
    """IoU of one box against many.

    Args:
        box: [4] (y1, x1, y2, x2), any frame (pixels or normalized, same as ``boxes``).
        boxes: [N, 4] (y1, x1, y2, x2).
        box_area: scalar, area of ``box``.
        boxes_area: [N], areas of ``boxes``.

    Returns:
        [N] float IoU. Where the union is 0 (two empty boxes) the IoU is 0, not NaN.

    Areas are passed in, as in the classic code, so callers looping over boxes compute them once.
    """
    box = np.asarray(box)
    boxes = np.asarray(boxes)
    y1 = np.maximum(box[0], boxes[:, 0])
    y2 = np.minimum(box[2], boxes[:, 2])
    x1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[3], boxes[:, 3])
    intersection = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    union = box_area + np.asarray(boxes_area) - intersection
    intersection = _as_float(intersection)
    out = np.zeros(np.shape(union), dtype=np.result_type(intersection, np.float32))
    np.divide(intersection, union, out=out, where=union > 0)
    return out


def compute_overlaps(boxes1, boxes2):
    """IoU of every pair of boxes.

    Args:
        boxes1: [N1, 4] (y1, x1, y2, x2); int or float, any frame.
        boxes2: [N2, 4] (y1, x1, y2, x2), same frame as ``boxes1``.

    Returns:
        [N1, N2] IoU; float32 for integer or float32 inputs, float64 when either is float64.
        Empty inputs give an [N1, N2] array of zeros. Pairs with zero union have IoU 0.
    """
    boxes1 = _as_float(_check_boxes("boxes1", boxes1))
    boxes2 = _as_float(_check_boxes("boxes2", boxes2))
    dtype = np.result_type(boxes1, boxes2)
    if boxes1.shape[0] == 0 or boxes2.shape[0] == 0:
        return np.zeros((boxes1.shape[0], boxes2.shape[0]), dtype=dtype)
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    b1 = boxes1[:, None, :]
    b2 = boxes2[None, :, :]
    height = np.maximum(np.minimum(b1[..., 2], b2[..., 2]) - np.maximum(b1[..., 0], b2[..., 0]), 0)
    width = np.maximum(np.minimum(b1[..., 3], b2[..., 3]) - np.maximum(b1[..., 1], b2[..., 1]), 0)
    intersection = height * width
    union = area1[:, None] + area2[None, :] - intersection
    out = np.zeros(intersection.shape, dtype=dtype)
    np.divide(intersection, union, out=out, where=union > 0)
    return out


def non_max_suppression(boxes, scores, threshold):
    """Greedy non-maximum suppression.

    Args:
        boxes: [N, 4] (y1, x1, y2, x2), any frame.
        scores: [N] box scores.
        threshold: IoU above which a lower-scored box is suppressed by a kept one.

    Returns:
        [K] int32 indices into ``boxes`` of the kept boxes, in descending score order
        (ties keep the lower index first). An empty input gives an empty array.
    """
    boxes = _as_float(_check_boxes("boxes", boxes))
    scores = np.asarray(scores)
    if scores.shape != (boxes.shape[0],):
        raise ValueError(
            f"scores must have shape [N] = [{boxes.shape[0]}] to match boxes; got {scores.shape}")
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    remaining = np.argsort(-scores, kind="stable")
    keep = []
    # Each pass keeps the best remaining box and drops what it overlaps, so the work is
    # O(N * kept), not O(N^2).
    while remaining.size > 0:
        i = remaining[0]
        keep.append(i)
        rest = remaining[1:]
        iou = compute_iou(boxes[i], boxes[rest], areas[i], areas[rest])
        remaining = rest[~(iou > threshold)]
    return np.array(keep, dtype=np.int32)


def apply_box_deltas(boxes, deltas):
    """Apply (dy, dx, log dh, log dw) deltas to boxes.

    Args:
        boxes: [N, 4] (y1, x1, y2, x2), any frame.
        deltas: [N, 4] (dy, dx, log(dh), log(dw)), already multiplied by any std-dev.

    Returns:
        [N, 4] refined boxes in the frame of ``boxes``; float32 unless an input is float64.
    """
    boxes = _as_float(_check_boxes("boxes", boxes))
    deltas = _as_float(_check_boxes("deltas", deltas))
    if boxes.shape != deltas.shape:
        raise ValueError(
            f"boxes and deltas must have the same shape; got {boxes.shape} and {deltas.shape}")
    height = boxes[:, 2] - boxes[:, 0]
    width = boxes[:, 3] - boxes[:, 1]
    center_y = boxes[:, 0] + 0.5 * height + deltas[:, 0] * height
    center_x = boxes[:, 1] + 0.5 * width + deltas[:, 1] * width
    height = height * np.exp(deltas[:, 2])
    width = width * np.exp(deltas[:, 3])
    return np.stack([center_y - 0.5 * height, center_x - 0.5 * width,
                     center_y + 0.5 * height, center_x + 0.5 * width], axis=1)


def box_refinement(box, gt_box):
    """Deltas that turn ``box`` into ``gt_box``: the inverse of :func:`apply_box_deltas`.

    Args:
        box: [N, 4] (y1, x1, y2, x2), non-empty boxes (zero size gives inf/NaN, as the classic).
        gt_box: [N, 4] (y1, x1, y2, x2), same frame.

    Returns:
        [N, 4] (dy, dx, log(dh), log(dw)), not divided by any std-dev; float32 unless an input is
        float64.
    """
    box = _as_float(_check_boxes("box", box))
    gt_box = _as_float(_check_boxes("gt_box", gt_box))
    if box.shape != gt_box.shape:
        raise ValueError(
            f"box and gt_box must have the same shape; got {box.shape} and {gt_box.shape}")
    height = box[:, 2] - box[:, 0]
    width = box[:, 3] - box[:, 1]
    center_y = box[:, 0] + 0.5 * height
    center_x = box[:, 1] + 0.5 * width
    gt_height = gt_box[:, 2] - gt_box[:, 0]
    gt_width = gt_box[:, 3] - gt_box[:, 1]
    gt_center_y = gt_box[:, 0] + 0.5 * gt_height
    gt_center_x = gt_box[:, 1] + 0.5 * gt_width
    return np.stack([(gt_center_y - center_y) / height,
                     (gt_center_x - center_x) / width,
                     np.log(gt_height / height),
                     np.log(gt_width / width)], axis=1)


def norm_boxes(boxes, shape):
    """Pixel boxes to normalized boxes.

    Args:
        boxes: [..., 4] (y1, x1, y2, x2) in pixels, y2/x2 exclusive.
        shape: (height, width) of the image (a trailing channel entry is ignored); both > 1.

    Returns:
        [..., 4] float32 normalized boxes: ``(boxes - [0, 0, 1, 1]) / [h-1, w-1, h-1, w-1]``, so
        pixel (0, 0, h, w) becomes (0, 0, 1, 1). Zero padding rows are not preserved.
    """
    h, w = _image_hw(shape)
    scale = np.array([h - 1, w - 1, h - 1, w - 1])
    return ((np.asarray(boxes) - _NORM_SHIFT) / scale).astype(np.float32)


def denorm_boxes(boxes, shape):
    """Normalized boxes to pixel boxes: the inverse of :func:`norm_boxes`, rounded.

    Args:
        boxes: [..., 4] normalized (y1, x1, y2, x2).
        shape: (height, width) of the image (a trailing channel entry is ignored); both > 1.

    Returns:
        [..., 4] int32 pixel boxes (y2/x2 exclusive), ``round(boxes * [h-1, w-1, h-1, w-1] +
        [0, 0, 1, 1])``.
    """
    h, w = _image_hw(shape)
    scale = np.array([h - 1, w - 1, h - 1, w - 1])
    return np.around(np.asarray(boxes) * scale + _NORM_SHIFT).astype(np.int32)


def trim_zeros(x):
    """Drop the rows that are all zeros (the padding of fixed-length box lists).

    Args:
        x: [N, C] array, e.g. [N, 4] boxes.

    Returns:
        [K, C] with the all-zero rows removed, order kept.
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x must be a 2-D array [N, C]; got shape {x.shape}")
    return x[~np.all(x == 0, axis=1)]


# ----------------------------------------------------------------------------------------------
# TensorFlow (any leading batch dimensions, float32)
# ----------------------------------------------------------------------------------------------
def _tf():
    # Deferred so that importing this module does not pay for TensorFlow.
    import tensorflow as tf
    return tf


def _f32(tf, x):
    return tf.cast(tf.convert_to_tensor(x), tf.float32)


def _shape_scale_tf(tf, shape):
    """[..., 4] scale (h-1, w-1, h-1, w-1) from a (h, w) or [..., 2] shape tensor."""
    shape = _f32(tf, shape)
    h = shape[..., 0:1]
    w = shape[..., 1:2]
    return tf.concat([h, w, h, w], axis=-1) - 1.0


def apply_box_deltas_tf(boxes, deltas):
    """TF twin of :func:`apply_box_deltas`.

    Args:
        boxes: [..., 4] (y1, x1, y2, x2), any frame.
        deltas: [..., 4] (dy, dx, log(dh), log(dw)), broadcastable to ``boxes``, already
            multiplied by any std-dev.

    Returns:
        [..., 4] float32 refined boxes in the frame of ``boxes``.
    """
    tf = _tf()
    boxes = _f32(tf, boxes)
    deltas = _f32(tf, deltas)
    height = boxes[..., 2] - boxes[..., 0]
    width = boxes[..., 3] - boxes[..., 1]
    center_y = boxes[..., 0] + 0.5 * height + deltas[..., 0] * height
    center_x = boxes[..., 1] + 0.5 * width + deltas[..., 1] * width
    height = height * tf.exp(deltas[..., 2])
    width = width * tf.exp(deltas[..., 3])
    y1 = center_y - 0.5 * height
    x1 = center_x - 0.5 * width
    return tf.stack([y1, x1, y1 + height, x1 + width], axis=-1)


def clip_boxes_tf(boxes, window):
    """Clip boxes to a window.

    Args:
        boxes: [..., 4] (y1, x1, y2, x2).
        window: [..., 4] (wy1, wx1, wy2, wx2) in the frame of ``boxes``, broadcastable to
            ``boxes`` (e.g. [4] for one window, [B, 1, 4] for one window per image).

    Returns:
        [..., 4] float32 boxes with every coordinate clamped into the window; a box wholly
        outside the window collapses to zero size on the window's edge.
    """
    tf = _tf()
    boxes = _f32(tf, boxes)
    window = _f32(tf, window)
    low = tf.gather(window, [0, 1, 0, 1], axis=-1)
    high = tf.gather(window, [2, 3, 2, 3], axis=-1)
    return tf.maximum(tf.minimum(boxes, high), low)


def compute_overlaps_tf(boxes1, boxes2):
    """TF twin of :func:`compute_overlaps`, batched by broadcasting.

    Args:
        boxes1: [..., N, 4] (y1, x1, y2, x2).
        boxes2: [..., M, 4] (y1, x1, y2, x2), same frame; leading dims broadcastable with
            ``boxes1``'s.

    Returns:
        [..., N, M] float32 IoU. Pairs with zero union (e.g. two zero-padding boxes) give 0.
    """
    tf = _tf()
    b1 = tf.expand_dims(_f32(tf, boxes1), -2)  # [..., N, 1, 4]
    b2 = tf.expand_dims(_f32(tf, boxes2), -3)  # [..., 1, M, 4]
    height = tf.maximum(tf.minimum(b1[..., 2], b2[..., 2]) - tf.maximum(b1[..., 0], b2[..., 0]),
                        0.0)
    width = tf.maximum(tf.minimum(b1[..., 3], b2[..., 3]) - tf.maximum(b1[..., 1], b2[..., 1]),
                       0.0)
    intersection = height * width
    area1 = (b1[..., 2] - b1[..., 0]) * (b1[..., 3] - b1[..., 1])
    area2 = (b2[..., 2] - b2[..., 0]) * (b2[..., 3] - b2[..., 1])
    union = area1 + area2 - intersection
    return tf.math.divide_no_nan(intersection, union)


def box_refinement_tf(box, gt_box):
    """TF twin of :func:`box_refinement`.

    Args:
        box: [..., 4] (y1, x1, y2, x2), non-empty boxes.
        gt_box: [..., 4] (y1, x1, y2, x2), same frame, broadcastable to ``box``.

    Returns:
        [..., 4] float32 (dy, dx, log(dh), log(dw)), not divided by any std-dev.
    """
    tf = _tf()
    box = _f32(tf, box)
    gt_box = _f32(tf, gt_box)
    height = box[..., 2] - box[..., 0]
    width = box[..., 3] - box[..., 1]
    center_y = box[..., 0] + 0.5 * height
    center_x = box[..., 1] + 0.5 * width
    gt_height = gt_box[..., 2] - gt_box[..., 0]
    gt_width = gt_box[..., 3] - gt_box[..., 1]
    gt_center_y = gt_box[..., 0] + 0.5 * gt_height
    gt_center_x = gt_box[..., 1] + 0.5 * gt_width
    return tf.stack([(gt_center_y - center_y) / height,
                     (gt_center_x - center_x) / width,
                     tf.math.log(gt_height / height),
                     tf.math.log(gt_width / width)], axis=-1)


def norm_boxes_tf(boxes, shape):
    """TF twin of :func:`norm_boxes`.

    Args:
        boxes: [..., 4] (y1, x1, y2, x2) in pixels.
        shape: (height, width) as a tuple or [2] tensor, or a [..., 2] tensor broadcastable
            against ``boxes``' leading dims (e.g. [B, 1, 2] for per-image shapes).

    Returns:
        [..., 4] float32 normalized boxes.
    """
    tf = _tf()
    return (_f32(tf, boxes) - tf.constant([0.0, 0.0, 1.0, 1.0])) / _shape_scale_tf(tf, shape)


def denorm_boxes_tf(boxes, shape):
    """TF twin of :func:`denorm_boxes`.

    Args:
        boxes: [..., 4] normalized (y1, x1, y2, x2).
        shape: (height, width) as a tuple or [2] tensor, or a [..., 2] tensor broadcastable
            against ``boxes``' leading dims.

    Returns:
        [..., 4] int32 pixel boxes (rounded half to even, like ``np.around``).
    """
    tf = _tf()
    pixels = _f32(tf, boxes) * _shape_scale_tf(tf, shape) + tf.constant([0.0, 0.0, 1.0, 1.0])
    return tf.cast(tf.round(pixels), tf.int32)
