"""Anchor generation for the feature pyramid (NumPy), with the classic ordering and offsets.

Anchors are ``(y1, x1, y2, x2)`` boxes. :func:`generate_anchors` and
:func:`generate_pyramid_anchors` return pixel coordinates; :func:`get_normalized_anchors` returns the
normalized coordinates (``mrcnn.ops.boxes.norm_boxes``) that the graph consumes.

The order and placement follow the classic code exactly, because RPN weights trained with it
depend on them: anchor centres sit at ``index * feature_stride`` (offset 0, not stride / 2), and
within one position the (scale, ratio) pairs come in ``np.meshgrid(scales, ratios)`` order.
"""
import functools
import math

import numpy as np

from mrcnn.ops.boxes import norm_boxes

__all__ = [
    "generate_anchors",
    "generate_pyramid_anchors",
    "compute_backbone_shapes",
    "get_normalized_anchors",
]


def _positive_number(name, value):
    try:
        ok = float(value) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a positive number; got {value!r}")


def generate_anchors(scales, ratios, shape, feature_stride, anchor_stride):
    """Anchors of one pyramid level.

    Args:
        scales: a side length in pixels, or a 1-D list of them (the classic passes one per level).
        ratios: 1-D list of width / height ratios, e.g. [0.5, 1, 2].
        shape: (rows, cols) of the feature map.
        feature_stride: pixels between neighbouring feature-map cells.
        anchor_stride: place anchors on every ``anchor_stride``-th cell in each direction.

    Returns:
        [N, 4] float64 pixel anchors (y1, x1, y2, x2), N = positions * len(scales) * len(ratios).
        Positions run row-major (y, then x) with centres at ``arange(0, rows, anchor_stride) *
        feature_stride`` (offset 0); within a position the (scale, ratio) pairs follow
        ``np.meshgrid(scales, ratios)`` flattened (ratio-major, scale fastest). Heights are
        ``scale / sqrt(ratio)``, widths ``scale * sqrt(ratio)``.
    """
    scales = np.atleast_1d(np.asarray(scales, dtype=np.float64))
    ratios = np.atleast_1d(np.asarray(ratios, dtype=np.float64))
    if scales.ndim != 1 or scales.size == 0 or np.any(scales <= 0):
        raise ValueError(f"scales must be positive numbers; got {scales.tolist()!r}")
    if ratios.ndim != 1 or ratios.size == 0 or np.any(ratios <= 0):
        raise ValueError(f"ratios must be positive numbers; got {ratios.tolist()!r}")
    if len(shape) < 2:
        raise ValueError(f"shape must be (rows, cols) of the feature map; got {shape!r}")
    _positive_number("feature_stride", feature_stride)
    _positive_number("anchor_stride", anchor_stride)

    scale_grid, ratio_grid = np.meshgrid(scales, ratios)
    scale_grid = scale_grid.reshape(-1)
    ratio_grid = ratio_grid.reshape(-1)
    heights = scale_grid / np.sqrt(ratio_grid)  # [K]
    widths = scale_grid * np.sqrt(ratio_grid)

    centers_y = np.arange(0, shape[0], anchor_stride) * feature_stride
    centers_x = np.arange(0, shape[1], anchor_stride) * feature_stride
    centers_x, centers_y = np.meshgrid(centers_x, centers_y)  # [rows, cols], row-major
    centers_y = centers_y.reshape(-1, 1)  # [P, 1]
    centers_x = centers_x.reshape(-1, 1)

    anchors = np.stack([centers_y - 0.5 * heights, centers_x - 0.5 * widths,
                        centers_y + 0.5 * heights, centers_x + 0.5 * widths], axis=-1)  # [P, K, 4]
    return anchors.reshape(-1, 4).astype(np.float64)


def generate_pyramid_anchors(scales, ratios, feature_shapes, feature_strides, anchor_stride):
    """Anchors of every pyramid level, concatenated level by level.

    Args:
        scales: one anchor side length in pixels per level, e.g. (32, 64, 128, 256, 512).
        ratios: width / height ratios used at every level, e.g. [0.5, 1, 2].
        feature_shapes: [L, 2] feature-map (rows, cols) per level (see
            :func:`compute_backbone_shapes`).
        feature_strides: one stride in pixels per level, e.g. [4, 8, 16, 32, 64].
        anchor_stride: anchor spacing in feature-map cells.

    Returns:
        [A, 4] float64 pixel anchors (y1, x1, y2, x2); the anchors of level 0 come first, each
        level in :func:`generate_anchors` order.
    """
    scales = list(np.atleast_1d(scales))
    feature_shapes = list(feature_shapes)
    feature_strides = list(np.atleast_1d(feature_strides))
    if not (len(scales) == len(feature_shapes) == len(feature_strides)):
        raise ValueError(
            "scales, feature_shapes and feature_strides need one entry per pyramid level; got "
            f"{len(scales)} scales, {len(feature_shapes)} feature_shapes and "
            f"{len(feature_strides)} feature_strides")
    levels = [generate_anchors(scale, ratios, level_shape, stride, anchor_stride)
              for scale, level_shape, stride in zip(scales, feature_shapes, feature_strides)]
    return np.concatenate(levels, axis=0)


def compute_backbone_shapes(image_shape, backbone_strides):
    """Feature-map sizes of the pyramid levels for an input image shape.

    Args:
        image_shape: (height, width[, channels]) of the molded image in pixels.
        backbone_strides: stride in pixels of each level, e.g. [4, 8, 16, 32, 64].

    Returns:
        [L, 2] int array of (ceil(height / stride), ceil(width / stride)) per level.
    """
    if len(image_shape) < 2:
        raise ValueError(f"image_shape must be (height, width[, channels]); got {image_shape!r}")
    for stride in backbone_strides:
        _positive_number("backbone_strides entry", stride)
    height, width = image_shape[0], image_shape[1]
    return np.array([[int(math.ceil(height / stride)), int(math.ceil(width / stride))]
                     for stride in backbone_strides], dtype=int).reshape(-1, 2)


@functools.lru_cache(maxsize=16)
def _normalized_anchors_cached(image_shape, scales, ratios, backbone_strides, anchor_stride):
    feature_shapes = compute_backbone_shapes(image_shape, backbone_strides)
    anchors = generate_pyramid_anchors(scales, ratios, feature_shapes, backbone_strides,
                                       anchor_stride)
    normalized = norm_boxes(anchors, image_shape[:2]).astype(np.float32)
    # Every caller shares this array, so nobody may change it in place.
    normalized.setflags(write=False)
    return normalized


def _as_tuple(value):
    return tuple(np.atleast_1d(np.asarray(value)).tolist())


def get_normalized_anchors(image_shape, scales, ratios, backbone_strides, anchor_stride):
    """Normalized pyramid anchors for an image shape, cached.

    Args:
        image_shape: (height, width[, channels]) of the molded image in pixels.
        scales: one anchor side length in pixels per level (``RPN_ANCHOR_SCALES``).
        ratios: width / height ratios (``RPN_ANCHOR_RATIOS``).
        backbone_strides: stride in pixels per level (``BACKBONE_STRIDES``).
        anchor_stride: anchor spacing in feature-map cells (``RPN_ANCHOR_STRIDE``).

    Returns:
        [A, 4] float32 normalized anchors (y1, x1, y2, x2), in
        :func:`generate_pyramid_anchors` order. The array is shared between calls with equal
        arguments (lists, tuples and NumPy arrays of the same values are equal) and is read-only:
        copy it before modifying it.
    """
    image_shape = _as_tuple(image_shape)
    if len(image_shape) < 2:
        raise ValueError(f"image_shape must be (height, width[, channels]); got {image_shape!r}")
    return _normalized_anchors_cached(image_shape[:2], _as_tuple(scales), _as_tuple(ratios),
                                      _as_tuple(backbone_strides), int(anchor_stride))


get_normalized_anchors.cache_info = _normalized_anchors_cached.cache_info
get_normalized_anchors.cache_clear = _normalized_anchors_cached.cache_clear
