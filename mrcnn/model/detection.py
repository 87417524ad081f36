"""DetectionLayer: classifier outputs on ROIs -> final detections (inference only).

Classic semantics, batched: each ROI takes its most likely class, that class's box deltas refine
the ROI, the refined box is clipped to the image window, background ROIs, padding ROIs and ROIs
scoring below ``min_confidence`` are dropped, NMS runs per class, and the ``max_instances`` best
remaining detections are kept.

The per-class NMS of all images is one ``tf.image.combined_non_max_suppression`` call: boxes are
shared across classes (``q = 1``) and the score matrix holds each ROI's score in its own class
column only, zeros elsewhere. Since a kept ROI competes only in its class, this is the classic
loop over classes; the op then sorts all classes' survivors by score and keeps the top
``max_instances`` (classic: NMS keeps at most ``max_instances`` per class, then a global top-k).
"""
import logging

import keras
import tensorflow as tf

from mrcnn.data.image_meta import parse_image_meta_graph
from mrcnn.model.proposal import _iou_threshold, _positive_int, _std_dev
from mrcnn.ops.boxes import apply_box_deltas_tf, clip_boxes_tf, norm_boxes_tf
from mrcnn.model.precision import Float32Layer

__all__ = ["DetectionLayer", "DetectionBoxes"]

logger = logging.getLogger(__name__)


def _confidence(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"min_confidence must be a float in [0, 1]; got {value!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"min_confidence must be a float in [0, 1]; got {value!r}")
    return value


@keras.saving.register_keras_serializable(package="mrcnn")
class DetectionLayer(Float32Layer):
    """Turn classified, box-refined ROIs into a fixed-length list of detections per image.

    Args:
        max_instances: int, detections per image (``DETECTION_MAX_INSTANCES``); the static
            length of the output.
        min_confidence: float in [0, 1], lowest class score kept (``DETECTION_MIN_CONFIDENCE``);
            a score equal to it is kept. Scores of exactly 0 are never detections.
        nms_threshold: float in [0, 1], per-class NMS IoU above which the lower-scored box is
            suppressed (``DETECTION_NMS_THRESHOLD``).
        bbox_std_dev: 4 floats (``BBOX_STD_DEV``) the predicted deltas are multiplied by.

    Call arguments:
        inputs: list ``[rois, mrcnn_class, mrcnn_bbox, image_meta]``:
            ``rois`` [B, R, 4] float32 normalized (y1, x1, y2, x2), zero-padded (an all-zero
            row is padding and never yields a detection);
            ``mrcnn_class`` [B, R, NC] float32 class probabilities (class 0 = background);
            ``mrcnn_bbox`` [B, R, NC, 4] float32 per-class deltas (dy, dx, log(dh), log(dw))
            divided by the std dev;
            ``image_meta`` [B, META] float32 rows; ``window`` (pixels of the molded image) is
            normalized by the first image's ``image_shape`` (one molded shape per batch).

    Returns:
        [B, max_instances, 6] float32 rows ``(y1, x1, y2, x2, class_id, score)``, boxes
        normalized and clipped to the image window, in descending score order, zero-padded at
        the end (padding rows are all zeros; ``class_id`` 0 marks them).

    Example:
        >>> detections = DetectionLayer(100, 0.7, 0.3, (0.1, 0.1, 0.2, 0.2),
        ...                             name="mrcnn_detection")(
        ...     [rpn_rois, mrcnn_class, mrcnn_bbox, image_meta])  # [B, 100, 6]
    """

    def __init__(self, max_instances, min_confidence, nms_threshold, bbox_std_dev, **kwargs):
        super().__init__(**kwargs)
        self.max_instances = _positive_int("max_instances", max_instances)
        self.min_confidence = _confidence(min_confidence)
        self.nms_threshold = _iou_threshold("nms_threshold", nms_threshold)
        self.bbox_std_dev = _std_dev("bbox_std_dev", bbox_std_dev)

    @staticmethod
    def _check_inputs(inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 4:
            count = len(inputs) if isinstance(inputs, (list, tuple)) else "n/a"
            raise ValueError("DetectionLayer expects inputs [rois, mrcnn_class, mrcnn_bbox, "
                             f"image_meta]; got {type(inputs).__name__} of length {count}")

    #: Intermediate results :meth:`compute_internals` returns (``MaskRCNN.ancestor`` names
    #: them "mrcnn_detection/<key>"; see :mod:`mrcnn.model.inspect`).
    INTERNALS = ("class_ids", "scores", "refined_rois", "keep", "detections")

    def call(self, inputs):
        return self.compute_internals(inputs)["detections"]

    def compute_internals(self, inputs):
        """The steps of :meth:`call`, for inspection (the inspect_model notebook).

        Returns a dict, per ROI (R) before NMS: ``class_ids`` [B, R] int32 the most likely class;
        ``scores`` [B, R] its probability; ``refined_rois`` [B, R, 4] normalized ROI refined by
        that class's deltas and clipped to the window; ``keep`` [B, R] bool: foreground, not
        padding, finite and scoring at least ``min_confidence`` (the NMS candidates); and
        ``detections`` [B, max_instances, 6] (the layer's output).
        """
        self._check_inputs(inputs)
        rois, probs, deltas = (tf.stop_gradient(tf.cast(x, tf.float32)) for x in inputs[:3])
        meta = parse_image_meta_graph(inputs[3])
        num_classes = probs.shape[-1]
        if num_classes is None:
            num_classes = tf.shape(probs)[-1]

        class_ids = tf.argmax(probs, axis=-1, output_type=tf.int32)  # [B, R]
        scores = tf.gather(probs, class_ids, batch_dims=2)  # [B, R]
        deltas = tf.gather(deltas, class_ids, batch_dims=2)  # [B, R, 4]
        deltas = deltas * tf.constant(self.bbox_std_dev, tf.float32)
        boxes = apply_box_deltas_tf(rois, deltas)
        window = norm_boxes_tf(meta["window"], meta["image_shape"][0, :2])  # [B, 4]
        boxes = clip_boxes_tf(boxes, window[:, tf.newaxis, :])

        # Non-finite outputs of a diverged network are dropped, never passed on to the mask
        # head's crop_and_resize (which rejects them).
        finite = tf.logical_and(tf.reduce_all(tf.math.is_finite(boxes), axis=-1),
                                tf.math.is_finite(scores))
        boxes = tf.where(finite[..., tf.newaxis], boxes, tf.zeros_like(boxes))
        keep = tf.logical_and(finite, tf.reduce_any(tf.not_equal(rois, 0.0), axis=-1))
        keep = tf.logical_and(keep, class_ids > 0)
        keep = tf.logical_and(keep, scores >= self.min_confidence)
        roi_scores = scores
        scores = tf.where(keep, scores, tf.zeros_like(scores))
        # One column per foreground class; a background ROI's one_hot(-1) row is all zeros.
        class_scores = tf.one_hot(class_ids - 1, num_classes - 1) * scores[..., tf.newaxis]

        # score_threshold=0 keeps scores > 0 only: the dropped ROIs (zeroed above) and the
        # off-class columns never enter NMS, even with min_confidence == 0.
        nms = tf.image.combined_non_max_suppression(
            boxes[:, :, tf.newaxis, :], class_scores,
            max_output_size_per_class=self.max_instances, max_total_size=self.max_instances,
            iou_threshold=self.nms_threshold, score_threshold=0.0, pad_per_class=False,
            clip_boxes=False)
        detections = tf.concat([
            nms.nmsed_boxes,
            nms.nmsed_classes[..., tf.newaxis] + 1.0,  # columns count from class 1
            nms.nmsed_scores[..., tf.newaxis],
        ], axis=-1)
        valid = tf.range(self.max_instances)[tf.newaxis, :] < nms.valid_detections[:, tf.newaxis]
        detections = tf.where(valid[..., tf.newaxis], detections, tf.zeros_like(detections))
        return {"class_ids": class_ids, "scores": roi_scores, "refined_rois": boxes, "keep": keep,
                "detections": tf.reshape(detections, [-1, self.max_instances, 6])}

    def compute_output_shape(self, input_shape):
        self._check_inputs(input_shape)
        return (input_shape[0][0], self.max_instances, 6)

    def get_config(self):
        config = super().get_config()
        config.update({
            "max_instances": self.max_instances,
            "min_confidence": self.min_confidence,
            "nms_threshold": self.nms_threshold,
            "bbox_std_dev": list(self.bbox_std_dev),
        })
        return config


@keras.saving.register_keras_serializable(package="mrcnn")
class DetectionBoxes(Float32Layer):
    """detections [B, N, 6] -> their boxes [B, N, 4] (normalized y1, x1, y2, x2; zero-padded).

    Feeds the mask head at inference. No gradient: detections are the end of the graph.
    """

    def call(self, detections):
        return tf.stop_gradient(detections[..., :4])

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (4,)
