"""In-graph unmolding: the TensorFlow twin of ``MaskRCNN.unmold_detections`` and ``paste_masks``.

* :func:`unmold_detections_tf` - normalized detections of the molded image to pixel boxes of the
  input image, with detect()'s rules: the list ends at the first class id 0, boxes are rounded
  (``denorm_boxes``), boxes of zero area are dropped; survivors move to the front, the rest is
  zero padding.
* :func:`paste_masks_tf` - :func:`mrcnn.ops.masks.paste_masks` as matrix products: the classic
  bilinear resize of a head mask to its box (pixel-centre aligned, edge-replicating like OpenCV,
  the half-pixel border blended towards 0 and clipped like scikit-image's ``mode="constant"``) is
  separable, so every mask is ``Ry @ mask @ Rx^T`` with per-box interpolation matrices that are
  zero outside the box, then thresholded.
"""
import logging

import tensorflow as tf

__all__ = ["pick_class_masks_tf", "unmold_detections_tf", "paste_masks_tf"]

logger = logging.getLogger(__name__)


def pick_class_masks_tf(detections, mrcnn_mask):
    """Each detection's own-class mask: [B, N, mh, mw, NC] -> [B, N, mh, mw] (as detect())."""
    class_ids = tf.cast(detections[..., 4], tf.int32)
    masks = tf.transpose(mrcnn_mask, [0, 1, 4, 2, 3])
    return tf.gather(masks, class_ids, axis=2, batch_dims=2)


def unmold_detections_tf(detections, masks, original_hw, molded_hw, window):
    """Batched ``unmold_detections`` up to (not including) mask pasting.

    Args:
        detections: [B, N, (y1, x1, y2, x2, class_id, score)] float32, normalized coordinates of
            the molded image, zero-padded (DetectionLayer output).
        masks: [B, N, mh, mw] float32 soft masks of each detection's class.
        original_hw: (H, W) int32 scalars, the input image size.
        molded_hw: (h, w) int32 scalars, the molded image size.
        window: [4] int32 (y1, x1, y2, x2) pixels of the molded image holding the image.
    Returns:
        dict: ``boxes`` [B, N, 4] int32 pixels of the input image (y2/x2 exclusive),
        ``class_ids`` [B, N] int32, ``scores`` [B, N] float32, ``masks`` [B, N, mh, mw] float32,
        ``num`` [B] int32. Rows ``>= num`` are zeros.
    """
    height, width = original_hw
    mh, mw = molded_hw
    # The list of an image ends at its first class id 0 (detect() counts up to it).
    present = tf.cast(tf.math.cumprod(tf.cast(detections[..., 4] != 0, tf.int32), axis=1), tf.bool)
    win = tf.cast(window, tf.float64)
    mscale = tf.cast(tf.stack([mh - 1, mw - 1, mh - 1, mw - 1]), tf.float64)
    wy1, wx1, wy2, wx2 = tf.unstack(tf.cast((win - [0.0, 0.0, 1.0, 1.0]) / mscale, tf.float32))
    shift = tf.stack([wy1, wx1, wy1, wx1])
    scale = tf.stack([wy2 - wy1, wx2 - wx1, wy2 - wy1, wx2 - wx1])
    boxes = (detections[..., :4] - shift) / scale
    oscale = tf.cast(tf.stack([height - 1, width - 1, height - 1, width - 1]), tf.float64)
    # float64 and round-half-to-even: np.around(float32 * int64) in denorm_boxes.
    boxes = tf.cast(tf.round(tf.cast(boxes, tf.float64) * oscale + [0.0, 0.0, 1.0, 1.0]),
                    tf.int32)
    area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    keep = present & (area > 0)
    # Stable sort puts the kept rows first, in their original (score) order.
    order = tf.argsort(tf.cast(~keep, tf.int32), axis=1, stable=True)
    keep = tf.gather(keep, order, batch_dims=1)
    keep_f = tf.cast(keep, tf.float32)
    out = {
        "boxes": tf.gather(boxes, order, batch_dims=1) * tf.cast(keep, tf.int32)[..., None],
        "class_ids": tf.gather(tf.cast(detections[..., 4], tf.int32), order, batch_dims=1)
        * tf.cast(keep, tf.int32),
        "scores": tf.gather(detections[..., 5], order, batch_dims=1) * keep_f,
        "masks": tf.gather(masks, order, batch_dims=1) * keep_f[..., None, None],
        "num": tf.reduce_sum(tf.cast(keep, tf.int32), axis=1),
    }
    return out


def _interp_matrix(starts, ends, size, mask_size):
    """[..., size, mask_size] float32: row ``i`` samples the mask for output pixel ``i``.

    The mask of length ``mask_size`` is stretched over ``[start, end)``; pixel-centre bilinear
    with edge replication, times the scikit-image constant-border weight; rows outside the box
    (and of empty boxes) are zero.
    """
    starts = tf.cast(starts, tf.float32)[..., None]
    ends = tf.cast(ends, tf.float32)[..., None]
    length = ends - starts
    pix = tf.range(size, dtype=tf.float32)
    src = (pix - starts + 0.5) * (float(mask_size) / tf.maximum(length, 1.0)) - 0.5
    low = tf.floor(src)
    frac = src - low
    i0 = tf.clip_by_value(tf.cast(low, tf.int32), 0, mask_size - 1)
    i1 = tf.clip_by_value(tf.cast(low, tf.int32) + 1, 0, mask_size - 1)
    outside = tf.maximum(tf.maximum(-src, src - (mask_size - 1.0)), 0.0)
    weight = 1.0 - tf.minimum(outside, 1.0)
    inside = tf.cast((pix >= starts) & (pix < ends) & (length > 0), tf.float32) * weight
    rows = ((1.0 - frac)[..., None] * tf.one_hot(i0, mask_size)
            + frac[..., None] * tf.one_hot(i1, mask_size))
    return rows * inside[..., None]


def paste_masks_tf(masks, boxes, height, width, threshold=0.5):
    """Paste soft head masks into full-size masks (TF twin of ``paste_masks``).

    Args:
        masks: [B, N, mh, mw] float32 soft masks in [0, 1].
        boxes: [B, N, (y1, x1, y2, x2)] int32 pixel boxes of the image (y2/x2 exclusive); boxes
            may leave the image (clipped); empty boxes give empty masks.
        height, width: int32 scalars, the image size.
        threshold: inside where the resized soft mask is ``>= threshold``.
    Returns:
        [B, N, height, width] uint8 0/1. Memory: B * N * height * width float32 while pasting.
    """
    mh, mw = masks.shape[-2], masks.shape[-1]
    ry = _interp_matrix(boxes[..., 0], boxes[..., 2], height, mh)  # [B, N, H, mh]
    rx = _interp_matrix(boxes[..., 1], boxes[..., 3], width, mw)  # [B, N, W, mw]
    soft = tf.matmul(tf.matmul(ry, masks), rx, transpose_b=True)  # [B, N, H, W]
    # scikit-image's clip=True for an out-of-range cval: clip to the mask's range, keep zeros.
    lo = tf.reduce_min(masks, axis=[-2, -1], keepdims=True)
    hi = tf.reduce_max(masks, axis=[-2, -1], keepdims=True)
    soft = tf.where(tf.equal(soft, 0.0), 0.0, tf.clip_by_value(soft, lo, hi))
    return tf.cast(soft >= threshold, tf.uint8)
