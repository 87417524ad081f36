"""In-graph molding: the TensorFlow twin of ``MaskRCNN.mold_inputs`` and ``get_anchors``.

A SavedModel takes raw uint8 images, so everything ``detect()`` does in NumPy before the network
runs has to happen inside the graph, with the same numbers:

* :func:`resize_scale_tf` - the scale and resized size of :func:`mrcnn.data.transforms.resize_image`
  (float64 arithmetic and round-half-to-even, like Python's ``round``).
* :func:`resize_bilinear_tf` - :func:`mrcnn.data.transforms.resize` with ``order=1``,
  ``mode="constant"``, ``preserve_range=True``: pixel-centre bilinear (OpenCV ``INTER_LINEAR`` ==
  ``tf.image.resize(antialias=False)``), the half-pixel border blended towards 0 when enlarging,
  scikit-image's clip to the input range, rounded back to uint8 values.
* :func:`mold_images_tf` - resize, pad, mean subtraction and the image_meta rows.
* :func:`pyramid_anchors_tf` - the normalized anchors of
  :func:`mrcnn.ops.anchors.generate_pyramid_anchors` for a molded shape known only at run time.

Modes: "square" (molded shape fixed at ``[max_dim, max_dim]``), "pad64" and "none" (molded shape
follows the input; anchors are computed in the graph). "crop" takes a random crop and is a training
mode; it is rejected. All images of one batch share one input size (a ``[B, H, W, 3]`` tensor).
Coordinates are pixels, windows ``(y1, x1, y2, x2)`` with y2/x2 exclusive.
"""
import logging

import numpy as np
import tensorflow as tf

__all__ = ["SERVING_RESIZE_MODES", "check_resize_mode", "resize_scale_tf", "resize_bilinear_tf",
           "mold_images_tf", "pyramid_anchors_tf"]

logger = logging.getLogger(__name__)

#: IMAGE_RESIZE_MODE values an exported model can serve.
SERVING_RESIZE_MODES = ("square", "pad64", "none")


def check_resize_mode(mode):
    """Raise ValueError naming IMAGE_RESIZE_MODE unless an exported graph can mold for ``mode``."""
    if mode not in SERVING_RESIZE_MODES:
        raise ValueError(
            f"Config.IMAGE_RESIZE_MODE={mode!r} cannot be exported: the serving graph supports "
            f"{', '.join(repr(m) for m in SERVING_RESIZE_MODES)} ('crop' takes a random crop, "
            "which is for training only); export with an inference config that sets one of them")
    return mode


def resize_scale_tf(height, width, min_dim, max_dim, min_scale, mode):
    """Scale and resized size of ``resize_image`` for an image of ``height`` x ``width``.

    Args:
        height, width: int32 scalar tensors, the input size.
        min_dim, max_dim, min_scale: Python numbers (Config.IMAGE_MIN_DIM / MAX_DIM / MIN_SCALE).
        mode: "square", "pad64" or "none".
    Returns:
        scale float64 scalar, new_height int32, new_width int32 (``round(H * scale)``).
    """
    h = tf.cast(height, tf.float64)
    w = tf.cast(width, tf.float64)
    if mode == "none":
        return tf.constant(1.0, tf.float64), tf.cast(height, tf.int32), tf.cast(width, tf.int32)
    scale = tf.constant(1.0, tf.float64)
    if min_dim:
        scale = tf.maximum(scale, float(min_dim) / tf.minimum(h, w))
    if min_scale:
        scale = tf.maximum(scale, float(min_scale))
    if max_dim and mode == "square":
        image_max = tf.maximum(h, w)
        scale = tf.where(tf.round(image_max * scale) > float(max_dim), float(max_dim) / image_max,
                         scale)
    return (scale, tf.cast(tf.round(h * scale), tf.int32), tf.cast(tf.round(w * scale), tf.int32))


def _border_weight(n_in, n_out):
    """[n_out] float32 weight of the image in each output row (``_constant_border_weight``)."""
    n_in_f = tf.cast(n_in, tf.float64)
    y = (tf.range(n_out, dtype=tf.float64) + 0.5) * (n_in_f / tf.cast(n_out, tf.float64)) - 0.5
    outside = tf.maximum(tf.maximum(-y, y - (n_in_f - 1.0)), 0.0)
    return tf.cast(1.0 - tf.minimum(outside, 1.0), tf.float32)


def resize_bilinear_tf(images, out_h, out_w):
    """Bilinear resize with the classic ``resize(order=1, mode="constant", preserve_range=True)``.

    Args:
        images: [B, H, W, C] uint8 (or any real dtype holding uint8 values).
        out_h, out_w: int32 scalars.
    Returns:
        [B, out_h, out_w, C] float32 holding integers in [0, 255] (rounded half to even and
        clipped like the NumPy version's cast back to uint8).
    """
    images = tf.cast(images, tf.float32)
    in_h, in_w = tf.shape(images)[1], tf.shape(images)[2]
    out = tf.image.resize(images, tf.stack([out_h, out_w]), method="bilinear", antialias=False)
    weight = _border_weight(in_h, out_h)[:, None] * _border_weight(in_w, out_w)[None, :]
    out = out * weight[None, :, :, None]
    # scikit-image's clip=True: clip to the input's range but keep pixels equal to cval (0).
    lo = tf.reduce_min(images, axis=[1, 2, 3], keepdims=True)
    hi = tf.reduce_max(images, axis=[1, 2, 3], keepdims=True)
    out = tf.where(tf.equal(out, 0.0), 0.0, tf.clip_by_value(out, lo, hi))
    return tf.clip_by_value(tf.round(out), 0.0, 255.0)


def _pad_before_after(size, multiple):
    total = tf.math.floormod(-size, multiple)
    return total // 2, total - total // 2


def mold_images_tf(images, mean_pixel, num_classes, min_dim, max_dim, min_scale, mode):
    """In-graph ``MaskRCNN.mold_inputs`` for a batch of same-sized images.

    Args:
        images: [B, H, W, 3] uint8.
        mean_pixel: [3] Config.MEAN_PIXEL.
        num_classes: Config.NUM_CLASSES (length of the all-zero active_class_ids, as detect()).
        min_dim, max_dim, min_scale, mode: Config.IMAGE_MIN_DIM, IMAGE_MAX_DIM, IMAGE_MIN_SCALE,
            IMAGE_RESIZE_MODE (checked with :func:`check_resize_mode`).
    Returns:
        molded [B, h, w, 3] float32 (resized, zero-padded, mean subtracted),
        image_metas [B, 12 + num_classes] float32 (image_id 0, as detect()),
        window [4] int32 (pixels of the molded image; the same for every image of the batch).
    """
    check_resize_mode(mode)
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    scale, new_h, new_w = resize_scale_tf(height, width, min_dim, max_dim, min_scale, mode)
    if mode == "none":
        resized = tf.cast(images, tf.float32)
    else:
        resized = resize_bilinear_tf(images, new_h, new_w)
    if mode == "square":
        top = (max_dim - new_h) // 2
        left = (max_dim - new_w) // 2
        bottom, right = max_dim - new_h - top, max_dim - new_w - left
    elif mode == "pad64":
        top, bottom = _pad_before_after(new_h, 64)
        left, right = _pad_before_after(new_w, 64)
    else:
        top = left = bottom = right = tf.constant(0, tf.int32)
    padded = tf.pad(resized, [[0, 0], [top, bottom], [left, right], [0, 0]])
    if mode == "square":
        padded = tf.ensure_shape(padded, [None, max_dim, max_dim, 3])
    molded = padded - tf.constant(np.asarray(mean_pixel, np.float32))
    window = tf.stack([top, left, top + new_h, left + new_w])
    mshape = tf.shape(molded)
    row = tf.concat([
        tf.zeros([1], tf.float32),  # image_id
        tf.cast(tf.stack([height, width, 3]), tf.float32),
        tf.cast(tf.stack([mshape[1], mshape[2], 3]), tf.float32),
        tf.cast(window, tf.float32),
        tf.cast(scale, tf.float32)[None],
        tf.zeros([num_classes], tf.float32),
    ], axis=0)
    metas = tf.tile(row[None], tf.stack([batch, 1]))
    return molded, metas, window


def pyramid_anchors_tf(image_h, image_w, scales, ratios, strides, anchor_stride):
    """Normalized pyramid anchors for a molded image size known at run time.

    TF twin of ``norm_boxes(generate_pyramid_anchors(..., compute_backbone_shapes(shape,
    strides), ...), shape)``, same order: level by level, positions row-major, (scale, ratio)
    pairs ratio-major (one scale per level, as the classic config).

    Args:
        image_h, image_w: int32 scalars, molded image size.
        scales: one anchor side per level (RPN_ANCHOR_SCALES); ratios: RPN_ANCHOR_RATIOS;
        strides: BACKBONE_STRIDES; anchor_stride: RPN_ANCHOR_STRIDE.
    Returns:
        [A, 4] float32 normalized (y1, x1, y2, x2).
    """
    h = tf.cast(image_h, tf.float64)
    w = tf.cast(image_w, tf.float64)
    ratios = np.asarray(ratios, np.float64).reshape(-1)
    levels = []
    for scale, stride in zip(np.atleast_1d(scales), np.atleast_1d(strides)):
        heights = tf.constant(float(scale) / np.sqrt(ratios))  # [K]
        widths = tf.constant(float(scale) * np.sqrt(ratios))
        rows = tf.cast(tf.math.ceil(h / float(stride)), tf.int32)
        cols = tf.cast(tf.math.ceil(w / float(stride)), tf.int32)
        cy = tf.cast(tf.range(0, rows, anchor_stride), tf.float64) * float(stride)
        cx = tf.cast(tf.range(0, cols, anchor_stride), tf.float64) * float(stride)
        cy, cx = tf.meshgrid(cy, cx, indexing="ij")
        cy = tf.reshape(cy, [-1, 1])
        cx = tf.reshape(cx, [-1, 1])
        boxes = tf.stack([cy - 0.5 * heights, cx - 0.5 * widths,
                          cy + 0.5 * heights, cx + 0.5 * widths], axis=-1)
        levels.append(tf.reshape(boxes, [-1, 4]))
    anchors = tf.concat(levels, axis=0)
    norm = tf.stack([h - 1.0, w - 1.0, h - 1.0, w - 1.0])
    return tf.cast((anchors - tf.constant([0.0, 0.0, 1.0, 1.0], tf.float64)) / norm, tf.float32)
