"""The five Mask R-CNN training losses: graph functions and one Keras layer each.

Every function takes batched tensors, never loops over images and returns a scalar float32
tensor (shape ``()``); a loss with nothing to average over (no positive anchor, no positive ROI)
is exactly 0, never NaN. The layers (:class:`RpnClassLoss`, ...) only compute the value: the
training step weights them with ``LOSS_WEIGHTS`` and sums them (no ``add_loss``).

Smooth L1 is the classic one (sigma 1): ``0.5 d^2`` where ``|d| < 1``, else ``|d| - 0.5``.
"""
import keras
import tensorflow as tf

from mrcnn.model.distribution import global_count
from mrcnn.model.precision import Float32Layer

__all__ = [
    "LOSS_NAMES",
    "smooth_l1",
    "rpn_class_loss",
    "rpn_bbox_loss",
    "mrcnn_class_loss",
    "mrcnn_bbox_loss",
    "mrcnn_mask_loss",
    "RpnClassLoss",
    "RpnBboxLoss",
    "MrcnnClassLoss",
    "MrcnnBboxLoss",
    "MrcnnMaskLoss",
]

#: Names of the losses, in the classic order (the keys of ``Config.LOSS_WEIGHTS``).
LOSS_NAMES = ("rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss",
              "mrcnn_mask_loss")

# Keras' binary_crossentropy clips probabilities to [eps, 1 - eps] with this epsilon.
_EPSILON = 1e-7


def _f32(x):
    return tf.cast(x, tf.float32)


def _mean(total, count):
    """total / count, 0 when count is 0; under tf.distribute ``count`` is the replicas' mean.

    With ``n`` replicas each loss is ``total_r / mean_r(count_r)``; the training step divides by
    ``n`` and the gradient all-reduce sums, which gives ``sum(total) / sum(count)``: the average
    over the global batch, as one replica with all the images computes it.
    """
    return tf.math.divide_no_nan(total, global_count(count))


def smooth_l1(y_true, y_pred):
    """Element-wise classic smooth L1: ``0.5 d^2`` if ``|d| < 1`` else ``|d| - 0.5``.

    Args:
        y_true, y_pred: float tensors of the same (broadcastable) shape.

    Returns:
        float32 tensor of the broadcast shape.
    """
    diff = tf.abs(_f32(y_true) - _f32(y_pred))
    return tf.where(diff < 1.0, 0.5 * tf.square(diff), diff - 0.5)


def rpn_class_loss(rpn_match, rpn_class_logits):
    """RPN anchor classifier loss.

    Args:
        rpn_match: [B, A, 1] (or [B, A]) int: 1 positive, -1 negative, 0 neutral anchor.
        rpn_class_logits: [B, A, 2] float logits (background, foreground).

    Returns:
        () float32: softmax cross-entropy averaged over the non-neutral anchors of the whole
        batch; 0 if there are none.
    """
    match = tf.reshape(tf.cast(rpn_match, tf.int32), tf.shape(rpn_class_logits)[:2])
    labels = tf.cast(tf.equal(match, 1), tf.int32)
    active = _f32(tf.not_equal(match, 0))
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                        logits=_f32(rpn_class_logits))
    return _mean(tf.reduce_sum(ce * active), tf.reduce_sum(active))


def rpn_bbox_loss(target_bbox, rpn_match, rpn_bbox):
    """RPN box regression loss.

    Args:
        target_bbox: [B, K, 4] float deltas of each image's positive anchors, in anchor-index
            order, zero-padded (the classic ``build_rpn_targets`` layout, already divided by
            ``RPN_BBOX_STD_DEV``).
        rpn_match: [B, A, 1] (or [B, A]) int: 1 positive, -1 negative, 0 neutral anchor.
        rpn_bbox: [B, A, 4] float predicted deltas.

    Returns:
        () float32: smooth L1 between the predicted deltas of the positive anchors and the first
        ``pos_count`` rows of each image's ``target_bbox``, averaged over all 4 * (positive
        anchors) elements; 0 if there is no positive anchor. Positives beyond K in an image
        have no target and are ignored.
    """
    rpn_bbox = _f32(rpn_bbox)
    target_bbox = _f32(target_bbox)
    match = tf.reshape(tf.cast(rpn_match, tf.int32), tf.shape(rpn_bbox)[:2])
    positive = tf.equal(match, 1)  # [B, A]
    # The r-th positive anchor of an image (anchor order) pairs with target row r.
    rank = tf.cumsum(tf.cast(positive, tf.int32), axis=1) - 1
    num_targets = tf.shape(target_bbox)[1]
    positive = tf.logical_and(positive, rank < num_targets)
    targets = tf.gather(target_bbox, tf.clip_by_value(rank, 0, num_targets - 1), batch_dims=1)
    loss = smooth_l1(targets, rpn_bbox) * _f32(positive)[..., tf.newaxis]
    return _mean(tf.reduce_sum(loss), 4 * tf.reduce_sum(tf.cast(positive, tf.int32)))


def mrcnn_class_loss(target_class_ids, pred_class_logits, active_class_ids, rois,
                     class_weights=None):
    """Classifier head loss.

    Args:
        target_class_ids: [B, T] int class of each ROI (0 = background or padding).
        pred_class_logits: [B, T, NC] float logits.
        active_class_ids: [B, NC] float/int, 1 where the class belongs to the image's dataset
            (``image_meta``'s active_class_ids), else 0.
        rois: [B, T, 4] the ROIs (normalized); all-zero rows are padding.
        class_weights: None, or [NC] float: each ROI's term is multiplied by the weight of its
            *target* class, and the sum is divided by the sum of those weights (a weighted mean,
            as torch's ``CrossEntropyLoss(weight=...)``). None is the classic loss.

    Returns:
        () float32: softmax cross-entropy per ROI, weighted by whether the *predicted* class
        is active in the image's dataset (a wrong guess of a class the dataset never labels is
        not penalised), averaged over the weight sum; 0 if the weights sum to 0.

    Two fixes of classic bugs: each image uses its own ``active_class_ids`` (the classic loss
    used the first image's for the whole batch), and zero-padded ROIs are ignored (the classic
    loss counted them as background examples).
    """
    logits = _f32(pred_class_logits)
    target_class_ids = tf.cast(target_class_ids, tf.int32)
    pred_class_ids = tf.argmax(logits, axis=2, output_type=tf.int32)  # [B, T]
    pred_active = tf.gather(_f32(active_class_ids), pred_class_ids, batch_dims=1)
    real_roi = _f32(tf.reduce_any(tf.not_equal(_f32(rois), 0.0), axis=-1))
    weight = pred_active * real_roi
    if class_weights is not None:
        weight = weight * tf.gather(tf.constant(class_weights, tf.float32), target_class_ids)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=target_class_ids, logits=logits)
    return _mean(tf.reduce_sum(ce * weight), tf.reduce_sum(weight))


def mrcnn_bbox_loss(target_bbox, target_class_ids, pred_bbox):
    """Box head loss.

    Args:
        target_bbox: [B, T, 4] float target deltas (divided by ``BBOX_STD_DEV``).
        target_class_ids: [B, T] int, > 0 for positive ROIs.
        pred_bbox: [B, T, NC, 4] float per-class predicted deltas.

    Returns:
        () float32: smooth L1 between the target and the target class's predicted deltas of
        the positive ROIs, averaged over 4 * (positive ROIs) elements; 0 if there are none.
    """
    target_class_ids = tf.cast(target_class_ids, tf.int32)
    positive = target_class_ids > 0
    # Clipping keeps the gather in range; the clipped rows are not positive.
    pred = tf.gather(_f32(pred_bbox), tf.maximum(target_class_ids, 0), batch_dims=2)
    loss = smooth_l1(target_bbox, pred) * _f32(positive)[..., tf.newaxis]
    return _mean(tf.reduce_sum(loss), 4 * tf.reduce_sum(tf.cast(positive, tf.int32)))


def mrcnn_mask_loss(target_masks, target_class_ids, pred_masks):
    """Mask head loss.

    Args:
        target_masks: [B, M, h, w] float in {0, 1}, the masks of the first M ROI slots.
        target_class_ids: [B, T] int (T >= M), > 0 for positive ROIs.
        pred_masks: [B, M, h, w, NC] float sigmoid probabilities.

    Returns:
        () float32: binary cross-entropy (probabilities clipped to [1e-7, 1 - 1e-7], as Keras)
        between the target and the target class's predicted mask, averaged over all pixels of
        the positive ROIs among the first M; 0 if there are none.
    """
    pred_masks = _f32(pred_masks)
    target_masks = _f32(target_masks)
    m = tf.shape(pred_masks)[1]
    class_ids = tf.cast(target_class_ids, tf.int32)[:, :m]
    positive = _f32(class_ids > 0)  # [B, M]
    # [B, M, NC, h, w] so that batch_dims=2 picks each ROI's own class channel.
    per_class = tf.transpose(pred_masks, [0, 1, 4, 2, 3])
    pred = tf.gather(per_class, tf.maximum(class_ids, 0), batch_dims=2)  # [B, M, h, w]
    pred = tf.clip_by_value(pred, _EPSILON, 1.0 - _EPSILON)
    bce = -(target_masks * tf.math.log(pred) + (1.0 - target_masks) * tf.math.log(1.0 - pred))
    bce = bce * positive[:, :, tf.newaxis, tf.newaxis]
    pixels = tf.reduce_sum(positive) * _f32(tf.shape(pred)[2] * tf.shape(pred)[3])
    return _mean(tf.reduce_sum(bce), pixels)


class _LossLayer(Float32Layer):
    """A layer that evaluates one loss function on a list of inputs; output shape ()."""

    _fn = None
    _default_name = None
    _arg_names = ()

    def __init__(self, name=None, **kwargs):
        super().__init__(name=name or self._default_name, **kwargs)

    def _check_inputs(self, inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) != len(self._arg_names):
            raise ValueError(
                f"{type(self).__name__} expects inputs [{', '.join(self._arg_names)}]; got "
                f"{type(inputs).__name__} of length "
                f"{len(inputs) if isinstance(inputs, (list, tuple)) else 'n/a'}")

    def call(self, inputs):
        self._check_inputs(inputs)
        return type(self)._fn(*inputs)

    def compute_output_shape(self, input_shape):
        return ()


@keras.saving.register_keras_serializable(package="mrcnn")
class RpnClassLoss(_LossLayer):
    """:func:`rpn_class_loss` on ``[rpn_match, rpn_class_logits]`` -> () float32."""

    _fn = staticmethod(rpn_class_loss)
    _default_name = "rpn_class_loss"
    _arg_names = ("rpn_match", "rpn_class_logits")


@keras.saving.register_keras_serializable(package="mrcnn")
class RpnBboxLoss(_LossLayer):
    """:func:`rpn_bbox_loss` on ``[target_bbox, rpn_match, rpn_bbox]`` -> () float32."""

    _fn = staticmethod(rpn_bbox_loss)
    _default_name = "rpn_bbox_loss"
    _arg_names = ("target_bbox", "rpn_match", "rpn_bbox")


@keras.saving.register_keras_serializable(package="mrcnn")
class MrcnnClassLoss(_LossLayer):
    """:func:`mrcnn_class_loss` on ``[target_class_ids, pred_class_logits, active_class_ids,
    rois]`` -> () float32; ``class_weights`` ([NC] floats or None) as there."""

    _fn = staticmethod(mrcnn_class_loss)
    _default_name = "mrcnn_class_loss"
    _arg_names = ("target_class_ids", "pred_class_logits", "active_class_ids", "rois")

    def __init__(self, name=None, class_weights=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]

    def call(self, inputs):
        self._check_inputs(inputs)
        return mrcnn_class_loss(*inputs, class_weights=self.class_weights)

    def get_config(self):
        config = super().get_config()
        config["class_weights"] = self.class_weights
        return config


@keras.saving.register_keras_serializable(package="mrcnn")
class MrcnnBboxLoss(_LossLayer):
    """:func:`mrcnn_bbox_loss` on ``[target_bbox, target_class_ids, pred_bbox]`` -> () float32."""

    _fn = staticmethod(mrcnn_bbox_loss)
    _default_name = "mrcnn_bbox_loss"
    _arg_names = ("target_bbox", "target_class_ids", "pred_bbox")


@keras.saving.register_keras_serializable(package="mrcnn")
class MrcnnMaskLoss(_LossLayer):
    """:func:`mrcnn_mask_loss` on ``[target_masks, target_class_ids, pred_masks]`` -> ()
    float32."""

    _fn = staticmethod(mrcnn_mask_loss)
    _default_name = "mrcnn_mask_loss"
    _arg_names = ("target_masks", "target_class_ids", "pred_masks")
