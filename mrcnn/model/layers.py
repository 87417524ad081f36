"""Small Keras 3 building blocks shared by the backbone and the heads.

- :class:`BatchNorm`: ``BatchNormalization`` with the classic ``TRAIN_BN`` switch.
- :class:`MergeRoiBatch` / :class:`SplitRoiBatch`: fold the ROI axis into the batch axis
  (``[B, R, ...] <-> [B*R, ...]``) so that per-ROI convolutions run as plain ``Conv2D`` /
  ``BatchNorm`` layers on one big batch instead of through ``TimeDistributed``; the layer names
  and weight shapes then equal those of the classic model's ``TimeDistributed`` wrappers.
- :class:`WindowConv2D`: a ``Conv2D`` whose kernel covers its whole input window (the classic
  ``mrcnn_class_conv1`` / ``mrcnn_class_conv2``, "fully connected" layers written as convolutions),
  computed as one matrix product; same weights, names and outputs as ``Conv2D``.
- :class:`RoiConv2D`: a ``Conv2D`` that takes ``[B, R, h, w, C]`` directly, for the last layer
  of a head whose *output* users look up by name (``mrcnn_mask``).
- :class:`SqueezeRoiFeatures`: ``[B, R, 1, 1, C] -> [B, R, C]`` (classic ``pool_squeeze``).
- :class:`ReshapeBoxDeltas`: ``[B, R, NC*4] -> [B, R, NC, 4]`` (classic ``mrcnn_bbox``).

None of these layers depends on the batch size or the ROI count: both are read from the
tensors at run time (``tf.shape``), so one model serves any ``B`` and ``R``.
"""
import keras
import tensorflow as tf

from mrcnn.model import folded_norm, recomputed_norm
from mrcnn.model.batch_norm_grad import normalize_with_batch_statistics

__all__ = [
    "BN_MOMENTUM",
    "BatchNorm",
    "MergeRoiBatch",
    "SplitRoiBatch",
    "WindowConv2D",
    "RoiConv2D",
    "SqueezeRoiFeatures",
    "ReshapeBoxDeltas",
]

_PACKAGE = "mrcnn"


def _mixed_shape(x, start):
    """Dimensions ``start:`` of ``x``: static ints where known, scalar tensors otherwise."""
    static = x.shape[start:]
    dynamic = tf.shape(x)
    return [d if d is not None else dynamic[start + i] for i, d in enumerate(static)]


#: Keras 2's BatchNormalization momentum, which the classic model was trained with; the default
#: of every builder's ``bn_momentum`` (``Config.BATCH_NORM_MOMENTUM``).
BN_MOMENTUM = 0.99


@keras.saving.register_keras_serializable(package=_PACKAGE)
class BatchNorm(keras.layers.BatchNormalization):
    """Batch normalization with the classic ``TRAIN_BN`` semantics.

    Input and output: any float tensor ``[..., C]`` (normalized over the last axis).

    Args:
        train_bn: the classic ``config.TRAIN_BN``.
            ``False``: always inference mode. The layer normalizes with its moving statistics and
            never updates them, whatever ``training`` flag the model is called with (the usual
            choice for small batches; gamma and beta stay trainable weights, as in the classic
            model, unless ``Config.TRAIN_BN_AFFINE = False``). ``None`` (classic: "train BN
            layers", the normal mode) and ``True``: follow the ``training`` flag, i.e. batch
            statistics and moving-average updates while training, moving statistics at
            inference. The classic code documented ``True`` as "training mode even at
            inference (don't use)"; here it is the same as ``None`` so that inference is never
            silently run with batch statistics.
        momentum, epsilon: Keras 2 defaults (0.99, 1e-3), as the classic model was trained with.
        **kwargs: any other ``keras.layers.BatchNormalization`` argument (``name``, ``axis``...).

    Note: in Keras 3 a BN layer with ``trainable=False`` also runs in inference mode.

    With batch statistics (training, ``train_bn`` not False) the layer computes what Keras'
    does, with the backward pass as one fused op (:mod:`mrcnn.model.batch_norm_grad`), which
    recomputes the layer's input from the linked convolution's where that is cheap
    (:mod:`mrcnn.model.recomputed_norm`) instead of keeping it; synchronized
    (``SYNC_BATCH_NORM``), renormalising, masked or non-last-axis calls are Keras' own.

    Linked to the convolution before it (:func:`mrcnn.model.folded_norm.link`, done by the
    model builder) and with ``folded_norm.FOLD_BATCH_NORM`` on (off by default), the layer is
    folded into that convolution wherever it uses its moving statistics, and then passes its
    input through.
    """

    def __init__(self, train_bn=None, momentum=BN_MOMENTUM, epsilon=1e-3, **kwargs):
        if train_bn not in (None, True, False):
            raise ValueError(
                f"BatchNorm: train_bn must be None, True or False, got {train_bn!r}"
            )
        super().__init__(momentum=momentum, epsilon=epsilon, **kwargs)
        self.train_bn = train_bn

    def call(self, inputs, training=None, mask=None):
        # Taken on every call (it holds the linked convolution's traced tensors).
        recompute = recomputed_norm.recompute_function(self, inputs)
        if folded_norm.passes_through(self, training):
            # Folded into the convolution before it, which has normalised already
            # (mrcnn/model/folded_norm.py). An identity op, so that the layer has an output
            # of its own; Grappler removes it.
            return tf.identity(inputs)
        if self.train_bn is False:
            training = False
        if training and self._fused_gradient_applies(inputs, mask):
            return self._call_with_batch_statistics(inputs, recompute)
        return super().call(inputs, training=training, mask=mask)

    def _fused_gradient_applies(self, inputs, mask):
        rank = len(inputs.shape)
        return (self.trainable and mask is None and not self.synchronized and not self.renorm
                and rank >= 2 and self.axis in (-1, rank - 1) and inputs.shape[-1] is not None)

    def _call_with_batch_statistics(self, inputs, recompute=None):
        """Keras' training branch (float32 statistics, moving averages updated with the
        biased batch variance, output in the compute dtype) with a fused gradient, which
        computes ``inputs`` again by ``recompute()`` if given (mrcnn/model/recomputed_norm.py)."""
        x = tf.cast(inputs, "float32")
        gamma = tf.cast(self.gamma, x.dtype) if self.scale else None
        beta = tf.cast(self.beta, x.dtype) if self.center else None
        recompute_x = None if recompute is None else (lambda: tf.cast(recompute(), "float32"))
        y, mean, variance = normalize_with_batch_statistics(x, gamma, beta, self.epsilon,
                                                            recompute_x=recompute_x)
        momentum = self.momentum
        self.moving_mean.assign(tf.cast(self.moving_mean, x.dtype) * momentum
                                + mean * (1.0 - momentum))
        self.moving_variance.assign(tf.cast(self.moving_variance, x.dtype) * momentum
                                    + variance * (1.0 - momentum))
        return tf.cast(y, self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config["train_bn"] = self.train_bn
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MergeRoiBatch(keras.layers.Layer):
    """``[B, R, d1, d2, ...] -> [B*R, d1, d2, ...]``; image-major order (all ROIs of image 0 first).

    B and R may be unknown (None); the trailing dimensions are kept as they are (static where
    known). Undo with :class:`SplitRoiBatch`, passing the un-merged tensor as reference.
    """

    def call(self, inputs):
        if len(inputs.shape) < 3:
            raise ValueError(
                f"{self.name}: input must have rank >= 3 ([B, R, ...]), got shape {inputs.shape}"
            )
        return tf.reshape(inputs, [-1] + _mixed_shape(inputs, 2))

    def compute_output_shape(self, input_shape):
        batch, rois = input_shape[0], input_shape[1]
        merged = batch * rois if batch is not None and rois is not None else None
        return (merged,) + tuple(input_shape[2:])


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SplitRoiBatch(keras.layers.Layer):
    """Inverse of :class:`MergeRoiBatch`: ``[[B*R, d1, ...], reference [B, R, ...]] -> [B, R, d1, ...]``.

    B and R are read from the reference tensor at run time (``tf.shape``), so the layer works
    for any batch size and ROI count; only the reference's first two axes are used.
    """

    def call(self, inputs):
        x, reference = inputs
        leading = _mixed_shape(reference, 0)[:2]
        return tf.reshape(x, leading + _mixed_shape(x, 1))

    def compute_output_shape(self, input_shape):
        x_shape, ref_shape = input_shape
        return tuple(ref_shape[:2]) + tuple(x_shape[1:])


@keras.saving.register_keras_serializable(package=_PACKAGE)
class WindowConv2D(keras.layers.Conv2D):
    """``Conv2D`` computed as a matrix product when the kernel covers the whole input window.

    Input ``[N, kh, kw, C]`` with (kh, kw) equal to ``kernel_size``, "valid" padding, no dilation,
    one group: the output ``[N, 1, 1, filters]`` is ``reshape(x, [N, kh*kw*C]) @
    reshape(kernel, [kh*kw*C, filters]) + bias``, which is exactly the convolution (both flatten
    (row, column, channel) in row-major order). Any other input falls back to the convolution.

    Why: the classic head's first "fully connected" layer is a 7x7 valid convolution over
    ``[R, 7, 7, 256]``. oneDNN's convolution kernels for this shape, above all the backward
    ones (Conv2DBackpropInput/Filter), are orders of magnitude slower on AVX2-only CPUs than on
    AVX-512 ones (33 s of a 41 s training step at 128x128 batch 2 on one AVX2 core), while the
    same work as a GEMM takes a fraction of a second on every ISA.

    Weights are those of ``keras.layers.Conv2D`` (``kernel [kh, kw, C, filters]``, ``bias``), so
    classic ``.h5`` files load unchanged and the layer keeps its classic name.
    """

    def _covers_window(self, inputs):
        return (self.data_format == "channels_last" and self.padding == "valid"
                and tuple(self.dilation_rate) == (1, 1) and self.groups == 1
                and tuple(inputs.shape[1:3]) == tuple(self.kernel_size))

    def convolution_op(self, inputs, kernel):
        if not self._covers_window(inputs):
            return super().convolution_op(inputs, kernel)
        kh, kw, channels, filters = kernel.shape
        flat = tf.reshape(inputs, [-1, kh * kw * channels])
        out = tf.matmul(flat, tf.reshape(kernel, [kh * kw * channels, filters]))
        return tf.reshape(out, [-1, 1, 1, filters])


@keras.saving.register_keras_serializable(package=_PACKAGE)
class RoiConv2D(keras.layers.Conv2D):
    """``Conv2D`` applied to every ROI: ``[B, R, h, w, C] -> [B, R, h', w', filters]``.

    Same constructor arguments, weights (``kernel`` ``[kh, kw, C, filters]``, ``bias``) and
    config as ``keras.layers.Conv2D``; the ROI axis is folded into the batch internally. Used
    for the final layer of a head so that the layer's own output keeps the classic per-ROI
    shape (``get_layer("mrcnn_mask").output`` is ``[B, R, 28, 28, NC]`` as in the classic model).
    Only ``data_format="channels_last"`` is supported.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.data_format != "channels_last":
            raise ValueError(
                f"{self.name}: RoiConv2D supports data_format='channels_last' only, "
                f"got {self.data_format!r}"
            )

    def build(self, input_shape):
        if len(input_shape) != 5:
            raise ValueError(
                f"{self.name}: input must be [B, R, h, w, C], got shape {tuple(input_shape)}"
            )
        # Conv2D.build pins an input spec of rank >= 4 on the channel axis; that also
        # accepts the rank-5 input.
        super().build(tuple(input_shape[1:]))

    def call(self, inputs):
        merged = tf.reshape(inputs, [-1] + _mixed_shape(inputs, 2))
        out = super().call(merged)
        return tf.reshape(out, _mixed_shape(inputs, 0)[:2] + _mixed_shape(out, 1))

    def compute_output_shape(self, input_shape):
        if len(input_shape) == 4:
            # Conv2D.build asks for the output shape of the merged [B*R, h, w, C] input.
            return super().compute_output_shape(input_shape)
        inner = super().compute_output_shape(tuple(input_shape[1:]))
        return (input_shape[0],) + tuple(inner)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SqueezeRoiFeatures(keras.layers.Layer):
    """``[B, R, 1, 1, C] -> [B, R, C]``: drop the unit spatial axes after a pool-sized conv.

    Raises ValueError when a spatial axis is statically known and not 1.
    """

    def call(self, inputs):
        return tf.squeeze(inputs, axis=[2, 3])

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 5:
            raise ValueError(
                f"{self.name}: input must be [B, R, 1, 1, C], got shape {tuple(input_shape)}"
            )
        for axis in (2, 3):
            if input_shape[axis] not in (1, None):
                raise ValueError(
                    f"{self.name}: spatial axes must be 1, got shape {tuple(input_shape)}"
                )
        return (input_shape[0], input_shape[1], input_shape[4])


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ReshapeBoxDeltas(keras.layers.Layer):
    """``[B, R, num_classes*4] -> [B, R, num_classes, 4]`` per-class box deltas (dy, dx, log dh, log dw).

    Args:
        num_classes: number of classes including background (the classic ``NUM_CLASSES``).
    """

    def __init__(self, num_classes, **kwargs):
        super().__init__(**kwargs)
        if int(num_classes) != num_classes or num_classes < 1:
            raise ValueError(
                f"ReshapeBoxDeltas: num_classes must be a positive int, got {num_classes!r}"
            )
        self.num_classes = int(num_classes)

    def build(self, input_shape):
        if input_shape[-1] is not None and input_shape[-1] != self.num_classes * 4:
            raise ValueError(
                f"{self.name}: last axis must be num_classes*4 = {self.num_classes * 4}, "
                f"got shape {tuple(input_shape)}"
            )
        super().build(input_shape)

    def call(self, inputs):
        return tf.reshape(inputs, _mixed_shape(inputs, 0)[:-1] + [self.num_classes, 4])

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.num_classes, 4)

    def get_config(self):
        config = super().get_config()
        config["num_classes"] = self.num_classes
        return config
