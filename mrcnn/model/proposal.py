"""ProposalLayer: RPN scores and deltas on anchors -> a fixed number of region proposals.

Batch-size agnostic: the top-k and the box decoding run on the whole batch at once; the
non-maximum suppression runs TensorFlow's C++ kernel (``NonMaxSuppressionV4``, the op of the
classic ``tf.image.non_max_suppression``) on each image inside one ``tf.map_fn``, so one layer
instance serves batch 1 and batch 2 alike and the graph holds no per-image Python loop. With
``xla_compatible=True`` (``Config.XLA``) it runs ``tf.image.non_max_suppression_padded``
instead, whose batched while-loop compiles. Outside XLA the C++ kernel is as fast or faster
(``scripts/benchmark_proposals.py``, 2 threads: 0.14 s against 0.36 s at 128 x 128 batch 8 with
6000 -> 2000 boxes per image, equal at 512 x 512 batch 2 and 1024 x 1024 batch 1) and suppresses
as the classic op did (strictly above the threshold).

Coordinates are normalized ``(y1, x1, y2, x2)`` (``docs/design.md``): the anchors come in
normalized, the proposals go out normalized and clipped to ``[0, 0, 1, 1]``, zero-padded at the
end of each image's list.
"""
import logging
import numbers

import keras
import tensorflow as tf

from mrcnn.ops.boxes import apply_box_deltas_tf, clip_boxes_tf
from mrcnn.model.precision import Float32Layer

__all__ = ["ProposalLayer"]

logger = logging.getLogger(__name__)


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{name} must be a positive int; got {value!r}")
    return int(value)


def _iou_threshold(name, value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a float in [0, 1]; got {value!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a float in [0, 1]; got {value!r}")
    return value


def _std_dev(name, value):
    try:
        values = [float(v) for v in value]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be 4 positive floats (dy, dx, dh, dw); got {value!r}") \
            from None
    if len(values) != 4 or any(v <= 0 for v in values):
        raise ValueError(f"{name} must be 4 positive floats (dy, dx, dh, dw); got {value!r}")
    return values


@keras.saving.register_keras_serializable(package="mrcnn")
class ProposalLayer(Float32Layer):
    """Select RPN proposals: top-k by foreground score, decode, clip, NMS, pad.

    Args:
        proposal_count: int, proposals kept per image after NMS (``POST_NMS_ROIS_TRAINING`` or
            ``POST_NMS_ROIS_INFERENCE``); the static length of the output.
        nms_threshold: float in [0, 1], IoU at or above which a lower-scored box is suppressed
            (``RPN_NMS_THRESHOLD``). The C++ kernel suppresses strictly above, as the classic
            op; the padded XLA variant at or above (the two differ only on an exact tie).
        pre_nms_limit: int, anchors with the best scores kept before NMS (``PRE_NMS_LIMIT``);
            ``min(pre_nms_limit, A)`` in effect.
        rpn_bbox_std_dev: 4 floats (``RPN_BBOX_STD_DEV``) the RPN deltas are multiplied by.
        xla_compatible: True to use the batched padded NMS, which XLA compiles (``Config.XLA``);
            False (default): the per-image C++ kernel, much faster without XLA.

    Call arguments:
        inputs: list ``[rpn_probs, rpn_bbox, anchors]``:
            ``rpn_probs`` [B, A, 2] float32 (background, foreground) probabilities;
            ``rpn_bbox`` [B, A, 4] float32 deltas (dy, dx, log(dh), log(dw)), divided by the std
            dev (the network's output scale);
            ``anchors`` [B, A, 4] float32 normalized (y1, x1, y2, x2); [1, A, 4] or [A, 4]
            broadcast over the batch.

    Returns:
        [B, proposal_count, 4] float32 normalized (y1, x1, y2, x2), clipped to [0, 0, 1, 1],
        in descending score order, zero-padded at the end when fewer boxes survive NMS.
        No gradient flows back: proposals are treated as constants, as in Faster R-CNN.

    Example:
        >>> layer = ProposalLayer(1000, 0.7, 6000, (0.1, 0.1, 0.2, 0.2), name="ROI")
        >>> rpn_rois = layer([rpn_class, rpn_bbox, anchors])  # [B, 1000, 4]
    """

    def __init__(self, proposal_count, nms_threshold, pre_nms_limit, rpn_bbox_std_dev,
                 xla_compatible=False, **kwargs):
        super().__init__(**kwargs)
        self.xla_compatible = bool(xla_compatible)
        self.proposal_count = _positive_int("proposal_count", proposal_count)
        self.nms_threshold = _iou_threshold("nms_threshold", nms_threshold)
        self.pre_nms_limit = _positive_int("pre_nms_limit", pre_nms_limit)
        self.rpn_bbox_std_dev = _std_dev("rpn_bbox_std_dev", rpn_bbox_std_dev)

    #: Intermediate results :meth:`compute_internals` returns (``MaskRCNN.ancestor`` names
    #: them "ROI/<key>"; see :mod:`mrcnn.model.inspect`).
    INTERNALS = ("pre_nms_scores", "pre_nms_anchors", "refined_anchors",
                 "refined_anchors_clipped", "post_nms_anchor_ix", "proposals")

    def call(self, inputs):
        return self.compute_internals(inputs)["proposals"]

    def compute_internals(self, inputs):
        """The steps of :meth:`call`, for inspection (the inspect_model notebook).

        Returns a dict (``K = min(pre_nms_limit, A)``, ``P = proposal_count``, boxes normalized):
        ``pre_nms_scores`` [B, K] the top-k foreground scores, descending;
        ``pre_nms_anchors`` [B, K, 4] their anchors; ``refined_anchors`` [B, K, 4] the anchors
        with the RPN deltas applied; ``refined_anchors_clipped`` [B, K, 4] clipped to
        [0, 0, 1, 1]; ``post_nms_anchor_ix`` [B, P] int32 indices into those K boxes of the
        boxes NMS kept, -1 after the last one; ``proposals`` [B, P, 4] (the layer's output).
        """
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 3:
            raise ValueError("ProposalLayer expects inputs [rpn_probs, rpn_bbox, anchors]; got "
                             f"{type(inputs).__name__} of length "
                             f"{len(inputs) if isinstance(inputs, (list, tuple)) else 'n/a'}")
        # The proposals are sampled, not regressed through: stopping here also keeps the NMS
        # while-loop out of the backward pass.
        probs, deltas, anchors = (tf.stop_gradient(tf.cast(x, tf.float32)) for x in inputs)
        # A diverged network (NaN weights) must give empty results, not crash crop_and_resize
        # downstream: non-finite scores rank last and non-finite boxes become empty below.
        scores = probs[..., 1]  # [B, A] foreground
        scores = tf.where(tf.math.is_finite(scores), scores, tf.fill(tf.shape(scores), -1.0))
        deltas = deltas * tf.constant(self.rpn_bbox_std_dev, tf.float32)
        anchors = tf.broadcast_to(anchors, tf.shape(deltas))

        num_anchors = deltas.shape[1]
        if num_anchors is not None:
            k = min(self.pre_nms_limit, num_anchors)
        else:
            k = tf.minimum(self.pre_nms_limit, tf.shape(deltas)[1])
        # top_k sorts, so NMS below can skip its own sort (sorted_input=True).
        top = tf.math.top_k(scores, k=k, sorted=True)
        scores = top.values
        deltas = tf.gather(deltas, top.indices, batch_dims=1)
        anchors = tf.gather(anchors, top.indices, batch_dims=1)

        refined = apply_box_deltas_tf(anchors, deltas)
        boxes = tf.where(tf.math.is_finite(refined), refined, tf.zeros_like(refined))
        boxes = clip_boxes_tf(boxes, tf.constant([0.0, 0.0, 1.0, 1.0]))

        # Decoded boxes have y1 <= y2 and x1 <= x2 (exp() > 0 and clipping keeps the order),
        # hence canonicalized_coordinates=True. The padded op selects boxes that are not all
        # zeros; a box collapsed to (0, 0, 0, 0) by the clip has no area and is fairly dropped.
        keep, num_valid = self._suppress(boxes, scores)
        proposals = tf.gather(boxes, keep, batch_dims=1)
        valid = tf.range(self.proposal_count)[tf.newaxis, :] < num_valid[:, tf.newaxis]
        proposals = tf.where(valid[..., tf.newaxis], proposals, tf.zeros_like(proposals))
        return {
            "pre_nms_scores": scores,
            "pre_nms_anchors": anchors,
            "refined_anchors": refined,
            "refined_anchors_clipped": boxes,
            "post_nms_anchor_ix": tf.where(valid, tf.cast(keep, tf.int32), -1),
            "proposals": tf.reshape(proposals, [-1, self.proposal_count, 4]),
        }

    def _suppress(self, boxes, scores):
        """NMS of each image: ``(keep [B, P] int32 indices into the K boxes, num_valid [B])``.

        ``boxes`` [B, K, 4] are sorted by descending ``scores`` [B, K]. All-zero boxes are never
        selected (both variants), boxes with any other score are.
        """
        if self.xla_compatible:
            return tf.image.non_max_suppression_padded(
                boxes, scores, self.proposal_count, iou_threshold=self.nms_threshold,
                pad_to_max_output_size=True, sorted_input=True, canonicalized_coordinates=True)
        # Scores are >= -1 here (non-finite ones were set to -1): -2 marks the all-zero boxes,
        # which the score threshold of -1.5 then drops, as the padded op drops them.
        selectable = tf.reduce_any(tf.not_equal(boxes, 0.0), axis=-1)
        scores = tf.where(selectable, scores, tf.fill(tf.shape(scores), -2.0))
        max_output = tf.constant(self.proposal_count, tf.int32)
        iou_threshold = tf.constant(self.nms_threshold, tf.float32)
        score_threshold = tf.constant(-1.5, tf.float32)

        def one_image(args):
            image_boxes, image_scores = args
            keep, count = tf.raw_ops.NonMaxSuppressionV4(
                boxes=image_boxes, scores=image_scores, max_output_size=max_output,
                iou_threshold=iou_threshold, score_threshold=score_threshold,
                pad_to_max_output_size=True)
            return keep, count

        return tf.map_fn(one_image, (boxes, scores), fn_output_signature=(
            tf.TensorSpec([self.proposal_count], tf.int32), tf.TensorSpec([], tf.int32)))

    def compute_output_shape(self, input_shape):
        batch = input_shape[0][0] if input_shape and input_shape[0] else None
        return (batch, self.proposal_count, 4)

    def get_config(self):
        config = super().get_config()
        config.update({
            "proposal_count": self.proposal_count,
            "nms_threshold": self.nms_threshold,
            "pre_nms_limit": self.pre_nms_limit,
            "rpn_bbox_std_dev": list(self.rpn_bbox_std_dev),
            "xla_compatible": self.xla_compatible,
        })
        return config
