"""Multi-level ROI Align over the FPN pyramid: ``PyramidROIAlign`` and ``roi_pyramid_level``.

Each box is pooled from one pyramid level chosen by its size (Feature Pyramid Networks, eq. 1):
``level = clip(4 + round(log2(sqrt(h * w) / (224 / sqrt(image_area)))), 2, 5)`` with ``h``, ``w``
the normalized box size and ``image_area`` in pixels, so a 224 x 224 pixel box lands on P4.

The crops use ``tf.image.crop_and_resize`` (bilinear) with the normalized boxes as they are:
that op maps 1.0 to the last pixel row/column (``h - 1``), the convention of the classic code and
of ``norm_boxes`` (pixel ``(0, 0, h, w)`` -> ``(0, 0, 1, 1)``). Everything is batched: the boxes of
all images at one level go through one ``crop_and_resize`` call with their image index as box
index, and one inverse permutation restores the input order.
"""
import logging
import math
import numbers

import keras
import tensorflow as tf

from mrcnn.data.image_meta import parse_image_meta_graph
from mrcnn.model.precision import Float32Layer
from mrcnn.model.xla_ops import multilevel_crop_and_resize

__all__ = ["PyramidROIAlign", "roi_pyramid_level"]

logger = logging.getLogger(__name__)

# Pyramid levels P2..P5, in the order the feature maps are passed in.
_LEVELS = (2, 3, 4, 5)
# ImageNet pre-training size: a box of this many pixels on a side maps to the canonical level.
_CANONICAL_SIZE = 224.0
_CANONICAL_LEVEL = 4
#: Boxes are clipped to [0, _LAST_COORDINATE] before cropping. A box that ends on the image
#: border (y2 = 1.0, common: proposals are clipped to the window) puts its last row of samples
#: at y2 * (h - 1), and one rounding step above h - 1 turns that whole row into the
#: extrapolation value 0 (tf.image.crop_and_resize tests `in_y > h - 1`). Which side of the
#: border the sum falls on then depended on how the graph was optimised (eager, grappler, XLA):
#: the same ROI pooled a row of zeros or not. 1 - 2**-20 keeps the last row inside for maps up to
#: ~10^5 pixels and moves a sample by less than 1e-6 of the map size.
_LAST_COORDINATE = 1.0 - 2.0 ** -20


def roi_pyramid_level(boxes, image_area):
    """FPN level (2..5) each box is pooled from.

    Args:
        boxes: [..., 4] float normalized (y1, x1, y2, x2).
        image_area: scalar, height * width in pixels of the (molded) image the boxes refer to.

    Returns:
        [...] int32 levels in {2, 3, 4, 5}. Empty or inverted boxes (zero padding included)
        get level 2; their crops are meaningless and meant to be ignored by the caller.
    """
    boxes = tf.cast(boxes, tf.float32)
    image_area = tf.cast(image_area, tf.float32)
    # Clamping the sides at 0 makes inverted boxes empty (no NaN, no fake area from two
    # negative sides); log2(0) is -inf, which the clip below maps to the lowest level before
    # any cast to int.
    height = tf.maximum(boxes[..., 2] - boxes[..., 0], 0.0)
    width = tf.maximum(boxes[..., 3] - boxes[..., 1], 0.0)
    size = tf.sqrt(height * width)
    level = tf.math.log(size / (_CANONICAL_SIZE / tf.sqrt(image_area))) / math.log(2.0)
    level = _CANONICAL_LEVEL + tf.round(level)
    # A non-finite box (a diverged network) must still land on some level: NaN survives the
    # clip and would cast to an arbitrary integer.
    level = tf.where(tf.math.is_nan(level), float(_LEVELS[0]), level)
    level = tf.clip_by_value(level, float(_LEVELS[0]), float(_LEVELS[-1]))
    return tf.cast(level, tf.int32)


def _pool_shape(value):
    if isinstance(value, bool):
        raise ValueError(f"pool_shape must be an int or (height, width); got {value!r}")
    if isinstance(value, numbers.Integral):
        value = (value, value)
    try:
        shape = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"pool_shape must be an int or (height, width); got {value!r}") \
            from None
    if len(shape) != 2 or any(v <= 0 for v in shape) or any(
            float(v) != float(w) for v, w in zip(shape, value)):
        raise ValueError(f"pool_shape must be an int or (height, width) of positive ints; "
                         f"got {value!r}")
    return shape


@keras.saving.register_keras_serializable(package="mrcnn")
class PyramidROIAlign(Float32Layer):
    """Crop and resize each box from the FPN level that fits its size.

    Args:
        pool_shape: int or (height, width) of the pooled crops, e.g. 7 (``POOL_SIZE``) or 14
            (``MASK_POOL_SIZE``).

    Call arguments:
        inputs: list ``[boxes, image_meta, P2, P3, P4, P5]``:
            ``boxes`` [B, R, 4] float32 normalized (y1, x1, y2, x2), zero-padded; clipped to
            the image ([0, 1 - 2**-20], see ``_LAST_COORDINATE``) before cropping;
            ``image_meta`` [B, META] float32 rows (``mrcnn.data.image_meta``); the image area
            is read from the first image's ``image_shape``, as all images of a batch share one
            molded shape;
            ``P2``..``P5`` [B, h_i, w_i, C] feature maps (strides 4, 8, 16, 32).

    Returns:
        [B, R, pool_h, pool_w, C] pooled features in the order of ``boxes``, in the dtype of the
        feature maps. Padding boxes yield crops (of level 2) that carry no meaning. Gradients
        flow to the feature maps, not to the boxes.

    Example:
        >>> pooled = PyramidROIAlign(7, name="roi_align_classifier")(
        ...     [rois, image_meta, p2, p3, p4, p5])  # [B, R, 7, 7, 256]
    """

    def __init__(self, pool_shape, xla_compatible=False, **kwargs):
        super().__init__(**kwargs)
        self.pool_shape = _pool_shape(pool_shape)
        # One gather over all levels, static shapes (mrcnn.model.xla_ops): compiles with XLA.
        self.xla_compatible = bool(xla_compatible)

    @staticmethod
    def _check_inputs(inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2 + len(_LEVELS):
            count = len(inputs) if isinstance(inputs, (list, tuple)) else "n/a"
            raise ValueError("PyramidROIAlign expects inputs [boxes, image_meta, P2, P3, P4, "
                             f"P5]; got {type(inputs).__name__} of length {count}")

    def call(self, inputs):
        self._check_inputs(inputs)
        boxes, image_meta = inputs[0], inputs[1]
        feature_maps = list(inputs[2:])
        channels = [fm.shape[-1] for fm in feature_maps]
        if None not in channels and len(set(channels)) != 1:
            raise ValueError(f"PyramidROIAlign: P2..P5 must have the same channel count; got "
                             f"{channels}")

        # ROIs are sampled, not trained through (as the classic code).
        boxes = tf.stop_gradient(tf.cast(boxes, tf.float32))
        boxes = tf.clip_by_value(boxes, 0.0, _LAST_COORDINATE)
        image_shape = parse_image_meta_graph(image_meta)["image_shape"][0]
        levels = roi_pyramid_level(boxes, image_shape[0] * image_shape[1])  # [B, R]
        if self.xla_compatible:
            pooled = multilevel_crop_and_resize(feature_maps, boxes, levels - _LEVELS[0],
                                                self.pool_shape)
            return tf.cast(pooled, feature_maps[0].dtype)

        crops, positions = [], []
        for level, feature_map in zip(_LEVELS, feature_maps):
            where = tf.where(tf.equal(levels, level))  # [K, 2] (image, roi)
            box_indices = tf.stop_gradient(tf.cast(where[:, 0], tf.int32))
            crops.append(tf.image.crop_and_resize(
                feature_map, tf.gather_nd(boxes, where), box_indices, self.pool_shape,
                method="bilinear"))
            positions.append(tf.cast(where, tf.int32))
        crops = tf.concat(crops, axis=0)
        positions = tf.concat(positions, axis=0)

        # Every (image, roi) pair sits at exactly one level, so the flat positions are a
        # permutation of range(B * R); its inverse puts the crops back in input order.
        shape = tf.shape(boxes)
        flat = positions[:, 0] * shape[1] + positions[:, 1]
        crops = tf.gather(crops, tf.math.invert_permutation(flat))
        channel = channels[0] if channels[0] is not None else tf.shape(feature_maps[0])[-1]
        pooled = tf.reshape(crops, [shape[0], shape[1], *self.pool_shape, channel])
        return tf.cast(pooled, feature_maps[0].dtype)

    def compute_output_shape(self, input_shape):
        self._check_inputs(input_shape)
        boxes_shape, p2_shape = input_shape[0], input_shape[2]
        return (boxes_shape[0], boxes_shape[1], *self.pool_shape, p2_shape[-1])

    def get_config(self):
        config = super().get_config()
        config["pool_shape"] = list(self.pool_shape)
        config["xla_compatible"] = self.xla_compatible
        return config
