"""Training-graph target layers: ROI sampling with class/box/mask targets, GT box normalization.

- :class:`DetectionTargetLayer`: the classic ``detection_targets_graph`` (``proposal_targets``),
  batched. Proposals are split into positives and negatives by their IoU with the ground truth,
  sampled at the configured ratio, and given class ids, box deltas and mask targets.
- :class:`NormalizeBoxes`: pixel GT boxes -> normalized boxes, padding rows kept at zero.
- :class:`RoiSlice`: the first ``count`` ROIs (the positive slots the mask head runs on).

Every list is batched ``[B, ...]`` with a fixed length per image and zero padding at the end
(``docs/design.md``); no layer loops over images in Python or depends on the batch size.
Boxes are normalized ``(y1, x1, y2, x2)`` unless stated otherwise.
"""
import logging
import numbers

import keras
import tensorflow as tf

from mrcnn.model.proposal import _iou_threshold, _positive_int, _std_dev
from mrcnn.ops.boxes import box_refinement_tf, compute_overlaps_tf, norm_boxes_tf
from mrcnn.model.precision import Float32Layer
from mrcnn.model.xla_ops import crop_and_resize as xla_crop_and_resize

__all__ = ["DetectionTargetLayer", "NormalizeBoxes", "RoiSlice"]

logger = logging.getLogger(__name__)

#: IoU with a crowd box from which a proposal is no longer used as a negative (classic value).
CROWD_IOU_THRESHOLD = 0.001


def _ratio(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"roi_positive_ratio must be a float in (0, 1]; got {value!r}") from None
    if not 0.0 < value <= 1.0:
        raise ValueError(f"roi_positive_ratio must be a float in (0, 1]; got {value!r}")
    return value


def _mask_shape(value):
    try:
        values = [v for v in value]
    except TypeError:
        raise ValueError(f"mask_shape must be 2 positive ints (height, width); got {value!r}") \
            from None
    if len(values) != 2 or any(isinstance(v, bool) or not isinstance(v, numbers.Integral)
                               or v <= 0 for v in values):
        raise ValueError(f"mask_shape must be 2 positive ints (height, width); got {value!r}")
    return [int(v) for v in values]


def _non_zero_rows(boxes):
    """[..., 4] -> [...] bool: True where the box is not all-zero padding."""
    return tf.reduce_any(tf.not_equal(boxes, 0.0), axis=-1)


@keras.saving.register_keras_serializable(package="mrcnn")
class DetectionTargetLayer(Float32Layer):
    """Sample ROIs from the proposals and build their classifier, box and mask targets.

    Classic ``detection_targets_graph`` semantics, for the whole batch at once:

    * All-zero proposals and GT boxes are padding and ignored; GT with ``class_id < 0`` are crowd
      boxes (never targets) and GT with ``class_id == 0`` are ignored.
    * Positive: a proposal whose highest IoU with a non-crowd GT box is
      ``>= positive_iou_threshold``; it is assigned that GT box (first one on ties).
    * Negative: highest IoU below the threshold and IoU ``< 0.001`` with every crowd box.
    * Up to ``P = int(train_rois_per_image * roi_positive_ratio)`` positives are drawn at random,
      then ``int(p / roi_positive_ratio) - p`` negatives for the ``p`` positives drawn. **Deviation
      from the classic code:** for an image without any positive (e.g. no GT) the classic formula
      gives 0 negatives, so the image would not train the classifier at all; here such an image
      takes ``int(train_rois_per_image * (1 - roi_positive_ratio))`` negatives, so it still
      teaches background. Fewer are taken when fewer exist.
    * ROIs are the positives (random order) followed by the negatives, zero-padded to
      ``train_rois_per_image``.
    * With ``include_gt_boxes`` (not classic; detectron2 and torchvision do it) the GT boxes
      themselves join the candidate proposals. From random initialisation the RPN proposes
      nothing useful for thousands of steps, so without them the heads see almost no positives
      and learn little but "background"; with them every image has positives from the first
      step.

    Args:
        train_rois_per_image: int ``T`` (``TRAIN_ROIS_PER_IMAGE``), ROIs per image in the output.
        roi_positive_ratio: float in (0, 1] (``ROI_POSITIVE_RATIO``); ``int(T * ratio)`` >= 1.
        mask_shape: (h, w) of the mask targets (``MASK_SHAPE``).
        use_mini_mask: bool (``USE_MINI_MASK``): ``gt_masks`` are mini-masks, each in the frame
            of its own GT box, instead of full-image masks.
        bbox_std_dev: 4 floats (``BBOX_STD_DEV``) the box targets are divided by.
        mask_rois_per_image: int ``M <= T``, the leading ROI slots that get mask targets; default
            ``int(T * roi_positive_ratio)``, exactly the slots positives can occupy.
        positive_iou_threshold: float in [0, 1], IoU from which a proposal is positive (0.5).
        include_gt_boxes: bool, add the non-crowd GT boxes to the candidate proposals
            (``TRAIN_ROIS_INCLUDE_GT``; default False as in the classic code).
        seed: optional int seed of the sampling's ``tf.random`` op.

    Call arguments:
        inputs: list ``[proposals, gt_class_ids, gt_boxes, gt_masks]``:
            ``proposals`` [B, N, 4] float32 normalized, zero-padded (any N >= 1, also N < T);
            ``gt_class_ids`` [B, G] int (0 = padding, negative = crowd);
            ``gt_boxes`` [B, G, 4] float32 normalized, zero-padded;
            ``gt_masks`` [B, mh, mw, G] bool or float (0/1): mini-masks in the GT box frame when
            ``use_mini_mask``, else full masks of the (molded) image.

    Returns:
        list ``[rois, target_class_ids, target_bbox, target_mask]``:
            ``rois`` [B, T, 4] float32 normalized, positives first, then negatives, zero rows
            after them;
            ``target_class_ids`` [B, T] int32, the assigned GT's class for positives, else 0;
            ``target_bbox`` [B, T, 4] float32 ``box_refinement(roi, gt) / bbox_std_dev`` for
            positives, else 0;
            ``target_mask`` [B, M, mask_h, mask_w] float32 in {0, 1}: the assigned GT mask cropped
            at the ROI (``crop_and_resize``, then rounded) for positive slots, else 0.
        All outputs are constants for the optimizer (no gradient flows through them).
    """

    def __init__(self, train_rois_per_image, roi_positive_ratio, mask_shape, use_mini_mask,
                 bbox_std_dev, mask_rois_per_image=None, positive_iou_threshold=0.5, seed=None,
                 include_gt_boxes=False, xla_compatible=False, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.train_rois_per_image = _positive_int("train_rois_per_image", train_rois_per_image)
        self.roi_positive_ratio = _ratio(roi_positive_ratio)
        self.positive_quota = int(self.train_rois_per_image * self.roi_positive_ratio)
        if self.positive_quota < 1:
            raise ValueError(
                "int(train_rois_per_image * roi_positive_ratio) must be >= 1 so that positives "
                f"can be sampled; got train_rois_per_image={self.train_rois_per_image}, "
                f"roi_positive_ratio={self.roi_positive_ratio}")
        self.mask_shape = _mask_shape(mask_shape)
        if not isinstance(use_mini_mask, (bool, int)) or use_mini_mask not in (0, 1):
            raise ValueError(f"use_mini_mask must be a bool; got {use_mini_mask!r}")
        self.use_mini_mask = bool(use_mini_mask)
        self.bbox_std_dev = _std_dev("bbox_std_dev", bbox_std_dev)
        if mask_rois_per_image is None:
            self.mask_rois_per_image = self.positive_quota
        else:
            self.mask_rois_per_image = _positive_int("mask_rois_per_image", mask_rois_per_image)
            if self.mask_rois_per_image > self.train_rois_per_image:
                raise ValueError(
                    f"mask_rois_per_image must be <= train_rois_per_image "
                    f"({self.train_rois_per_image}); got {mask_rois_per_image!r}")
        self.positive_iou_threshold = _iou_threshold("positive_iou_threshold",
                                                     positive_iou_threshold)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise ValueError(f"seed must be an int or None; got {seed!r}")
        self.seed = None if seed is None else int(seed)
        if not isinstance(include_gt_boxes, (bool, int)) or include_gt_boxes not in (0, 1):
            raise ValueError(f"include_gt_boxes must be a bool; got {include_gt_boxes!r}")
        self.include_gt_boxes = bool(include_gt_boxes)
        # Mask targets by gather + bilinear interpolation (mrcnn.model.xla_ops): XLA compiles it.
        self.xla_compatible = bool(xla_compatible)

    @staticmethod
    def _check_inputs(inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 4:
            count = len(inputs) if isinstance(inputs, (list, tuple)) else "n/a"
            raise ValueError("DetectionTargetLayer expects inputs [proposals, gt_class_ids, "
                             f"gt_boxes, gt_masks]; got {type(inputs).__name__} of length "
                             f"{count}")

    def _sample(self, positive, negative):
        """Random ROI slots.

        Args:
            positive, negative: [B, N'] bool candidate flags (disjoint).

        Returns:
            index [B, T] int32 into the candidates, is_positive [B, T] bool, is_negative [B, T]
            bool (padding slots are neither; their index is 0).
        """
        t = self.train_rois_per_image
        random = tf.random.uniform(tf.shape(positive), seed=self.seed)
        # Candidates get their random key in [0, 1), others -1, so top_k draws a uniform random
        # subset of the candidates (in random order) and the count of keys >= 0 says how many.
        pos_top = tf.math.top_k(tf.where(positive, random, -1.0), k=self.positive_quota)
        neg_top = tf.math.top_k(tf.where(negative, random, -1.0), k=t)
        pos_count = tf.reduce_sum(tf.cast(pos_top.values >= 0.0, tf.int32), axis=1)  # [B]
        neg_available = tf.reduce_sum(tf.cast(neg_top.values >= 0.0, tf.int32), axis=1)

        # Classic quota: int(p / ratio) - p, in float64 so that e.g. 66 / 0.33 gives 200 as in
        # Python, not 199. Images with no positive take the deviation's quota (class docstring).
        neg_quota = tf.cast(tf.math.floor(tf.cast(pos_count, tf.float64)
                                          / self.roi_positive_ratio), tf.int32) - pos_count
        no_positive_quota = int(t * (1.0 - self.roi_positive_ratio))
        neg_quota = tf.where(pos_count > 0, neg_quota, no_positive_quota)
        neg_count = tf.minimum(tf.minimum(neg_quota, t - pos_count), neg_available)

        slots = tf.range(t)[tf.newaxis, :]  # [1, T]
        is_positive = slots < pos_count[:, tf.newaxis]
        neg_slot = slots - pos_count[:, tf.newaxis]
        is_negative = tf.logical_and(neg_slot >= 0, neg_slot < neg_count[:, tf.newaxis])

        pos_index = tf.pad(pos_top.indices, [[0, 0], [0, t - self.positive_quota]])
        neg_index = tf.gather(neg_top.indices, tf.clip_by_value(neg_slot, 0, t - 1), batch_dims=1)
        index = tf.where(is_positive, pos_index, tf.where(is_negative, neg_index, 0))
        return index, is_positive, is_negative

    def call(self, inputs):
        self._check_inputs(inputs)
        proposals, gt_class_ids, gt_boxes, gt_masks = (tf.stop_gradient(x) for x in inputs)
        proposals = tf.cast(proposals, tf.float32)
        gt_boxes = tf.cast(gt_boxes, tf.float32)
        gt_class_ids = tf.cast(gt_class_ids, tf.int32)
        if gt_boxes.shape[1] == 0:
            raise ValueError("DetectionTargetLayer: gt_boxes must have G >= 1 slots per image "
                             f"(zero-padded); got shape {gt_boxes.shape}")
        t = self.train_rois_per_image
        gt_present = _non_zero_rows(gt_boxes)
        gt_target = tf.logical_and(gt_present, gt_class_ids > 0)  # [B, G]
        gt_crowd = tf.logical_and(gt_present, gt_class_ids < 0)
        if self.include_gt_boxes:
            # Crowd and ignored GT become zero rows, i.e. padding, never candidates.
            gt_candidates = tf.where(gt_target[..., tf.newaxis], gt_boxes, 0.0)
            proposals = tf.concat([proposals, gt_candidates], axis=1)  # [B, N + G, 4]

        # T zero rows appended: top_k needs >= T candidates even when N < T, and every index
        # stays in range; the zero rows are padding and never candidates.
        proposals = tf.pad(proposals, [[0, 0], [0, t], [0, 0]])
        valid_proposal = _non_zero_rows(proposals)  # [B, N + T]

        overlaps = compute_overlaps_tf(proposals, gt_boxes)  # [B, N + T, G]
        # -1 for excluded GT: the maxima below need no reduction over an empty set.
        target_overlaps = tf.where(gt_target[:, tf.newaxis, :], overlaps, -1.0)
        crowd_overlaps = tf.where(gt_crowd[:, tf.newaxis, :], overlaps, -1.0)
        roi_iou_max = tf.reduce_max(target_overlaps, axis=2)
        assignment = tf.argmax(target_overlaps, axis=2, output_type=tf.int32)  # [B, N + T]
        near_crowd = tf.reduce_max(crowd_overlaps, axis=2) >= CROWD_IOU_THRESHOLD

        positive = tf.logical_and(valid_proposal, roi_iou_max >= self.positive_iou_threshold)
        negative = tf.logical_and(valid_proposal, roi_iou_max < self.positive_iou_threshold)
        negative = tf.logical_and(negative, tf.logical_not(near_crowd))

        index, is_positive, is_negative = self._sample(positive, negative)
        used = tf.logical_or(is_positive, is_negative)
        rois = tf.gather(proposals, index, batch_dims=1)  # [B, T, 4]
        rois = tf.where(used[..., tf.newaxis], rois, 0.0)

        gt_index = tf.gather(assignment, index, batch_dims=1)  # [B, T]
        roi_gt_boxes = tf.gather(gt_boxes, gt_index, batch_dims=1)
        class_ids = tf.gather(gt_class_ids, gt_index, batch_dims=1)
        class_ids = tf.where(is_positive, class_ids, 0)

        # Non-positive slots get a unit box pair, so no zero-size box reaches a division.
        unit = tf.constant([0.0, 0.0, 1.0, 1.0])
        pos4 = is_positive[..., tf.newaxis]
        safe_rois = tf.where(pos4, rois, unit)
        safe_gt = tf.where(pos4, roi_gt_boxes, unit)
        deltas = box_refinement_tf(safe_rois, safe_gt) / tf.constant(self.bbox_std_dev)
        deltas = tf.where(pos4, deltas, 0.0)

        masks = self._mask_targets(gt_masks, gt_index, safe_rois, safe_gt, is_positive)
        return [rois, class_ids, deltas, masks]

    def _mask_targets(self, gt_masks, gt_index, rois, roi_gt_boxes, is_positive):
        """[B, M, mask_h, mask_w] float32 mask targets of the first M slots."""
        m = self.mask_rois_per_image
        mask_h, mask_w = self.mask_shape
        gt_index = gt_index[:, :m]
        rois = rois[:, :m]
        roi_gt_boxes = roi_gt_boxes[:, :m]
        # Gather the M needed masks before any transpose or cast: the whole [B, H, W, G] stack
        # (full-image masks) is far larger than the M masks actually cropped.
        masks = tf.gather(gt_masks, gt_index, axis=3, batch_dims=1)  # [B, mh, mw, M]
        masks = tf.transpose(masks, [0, 3, 1, 2])
        mask_hw = tf.shape(masks)[2:4]
        masks = tf.reshape(tf.cast(masks, tf.float32),
                           tf.concat([[-1], mask_hw, [1]], axis=0))  # [B*M, mh, mw, 1]

        boxes = rois
        if self.use_mini_mask:
            # A mini-mask spans its GT box: express the ROI in that box's unit frame.
            gt_y1, gt_x1, gt_y2, gt_x2 = tf.unstack(roi_gt_boxes, axis=-1)
            y1, x1, y2, x2 = tf.unstack(rois, axis=-1)
            gt_h = gt_y2 - gt_y1
            gt_w = gt_x2 - gt_x1
            boxes = tf.stack([(y1 - gt_y1) / gt_h, (x1 - gt_x1) / gt_w,
                              (y2 - gt_y1) / gt_h, (x2 - gt_x1) / gt_w], axis=-1)
        boxes = tf.reshape(boxes, [-1, 4])
        if self.xla_compatible:
            crops = xla_crop_and_resize(masks, boxes[:, tf.newaxis], [mask_h, mask_w])
        else:
            box_indices = tf.range(tf.shape(boxes)[0])
            crops = tf.image.crop_and_resize(masks, boxes, box_indices, [mask_h, mask_w])
        crops = tf.reshape(tf.round(crops), [-1, m, mask_h, mask_w])
        return tf.where(is_positive[:, :m, tf.newaxis, tf.newaxis], crops, 0.0)

    def compute_output_shape(self, input_shape):
        self._check_inputs(input_shape)
        batch = input_shape[0][0]
        t = self.train_rois_per_image
        return [(batch, t, 4), (batch, t), (batch, t, 4),
                (batch, self.mask_rois_per_image, *self.mask_shape)]

    def compute_output_spec(self, inputs):
        # The default spec built from compute_output_shape would type every output float32.
        shapes = self.compute_output_shape([tuple(x.shape) for x in inputs])
        dtypes = ["float32", "int32", "float32", "float32"]
        return [keras.KerasTensor(s, dtype=d) for s, d in zip(shapes, dtypes)]

    def get_config(self):
        config = super().get_config()
        config.update({
            "train_rois_per_image": self.train_rois_per_image,
            "roi_positive_ratio": self.roi_positive_ratio,
            "mask_shape": list(self.mask_shape),
            "use_mini_mask": self.use_mini_mask,
            "bbox_std_dev": list(self.bbox_std_dev),
            "mask_rois_per_image": self.mask_rois_per_image,
            "positive_iou_threshold": self.positive_iou_threshold,
            "seed": self.seed,
            "xla_compatible": self.xla_compatible,
            "include_gt_boxes": self.include_gt_boxes,
        })
        return config


@keras.saving.register_keras_serializable(package="mrcnn")
class NormalizeBoxes(Float32Layer):
    """Pixel GT boxes -> normalized boxes, by the height and width of the image tensor.

    Call arguments:
        inputs: list ``[boxes, image]``: ``boxes`` [B, G, 4] (y1, x1, y2, x2) in pixels of the
            molded image (y2/x2 exclusive), zero-padded; ``image`` [B, H, W, C] the molded
            images (only the static or dynamic H and W are read).

    Returns:
        [B, G, 4] float32 normalized boxes, ``(boxes - [0, 0, 1, 1]) / [H-1, W-1, H-1, W-1]``
        (the classic ``norm_boxes_graph``); all-zero padding rows stay all zero (the classic
        code turned them into ``(0, 0, -1/(H-1), -1/(W-1))``).
    """

    def call(self, inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError("NormalizeBoxes expects inputs [boxes, image]; got "
                             f"{type(inputs).__name__}")
        boxes, image = inputs
        boxes = tf.cast(boxes, tf.float32)
        normalized = norm_boxes_tf(boxes, tf.shape(image)[1:3])
        return tf.where(_non_zero_rows(boxes)[..., tf.newaxis], normalized, 0.0)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])


@keras.saving.register_keras_serializable(package="mrcnn")
class RoiSlice(Float32Layer):
    """The first ``count`` entries of the ROI axis: ``[B, R, ...] -> [B, min(count, R), ...]``.

    Used to feed the mask head only the ROI slots that can hold positives (the leading
    ``int(TRAIN_ROIS_PER_IMAGE * ROI_POSITIVE_RATIO)`` slots of :class:`DetectionTargetLayer`).

    Args:
        count: positive int, how many leading ROIs to keep.
    """

    def __init__(self, count, **kwargs):
        super().__init__(**kwargs)
        self.count = _positive_int("count", count)

    def call(self, inputs):
        return inputs[:, :self.count]

    def compute_output_shape(self, input_shape):
        rois = input_shape[1]
        kept = None if rois is None else min(self.count, rois)
        return (input_shape[0], kept, *input_shape[2:])

    def get_config(self):
        config = super().get_config()
        config["count"] = self.count
        return config
