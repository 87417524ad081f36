"""Run a per-ROI head on the ROIs that matter only: gather them, run the head, scatter back.

The mask head's ROI axis is padded: at inference it holds ``DETECTION_MAX_INSTANCES`` slots
(100 by default) however few objects were detected, and in training the leading
``TRAIN_ROIS_PER_IMAGE * ROI_POSITIVE_RATIO`` slots of :class:`~mrcnn.model.targets.
DetectionTargetLayer` hold the positives first and then negatives, whose predicted masks the
mask loss ignores. The four 3 x 3 convolutions and the deconvolution of the mask head cost the
same for a padded slot as for a real one, so a head over the merged ROI batch ``[B*R, ...]``
runs as::

    rows, indices = GatherValidRois()([merged, valid])     # [P, ...], P = max(#valid, 1)
    rows = head(rows)
    merged = ScatterValidRois()([rows, indices, valid])    # [B*R, ...], zeros where not valid

or, when the head ends in a convolution, with that last convolution and the scatter in one layer,
``ValidRoisConv2D()([rows, indices, valid])`` ``-> [B, R, ...]``: the scatter then writes the
convolution's output (the mask head's ``NUM_CLASSES`` channels) instead of its 256-channel input.
That matters for memory: in training the scattered ``[B*R, 28, 28, 256]`` tensor and its gradient
were the two largest live tensors at the step's peak (2 x 196 MiB at 128 x 128 batch 8).

``valid`` is ``[B, R]`` (any numeric dtype, > 0 = valid: a class id) or, with ``column=k``, ``[B, R, K]`` whose
column ``k`` is tested (the class id column of the detections). The merged batch is image-major,
as :class:`~mrcnn.model.layers.MergeRoiBatch` makes it.

At least one row is always gathered (row 0 when nothing is valid, zeroed again by the scatter):
an empty batch would give BatchNorm NaN statistics in training. BatchNorm layers of the head
then see the valid ROIs only (in training: batch statistics of the positives, the ROIs that the
head meets at inference). The number of rows is dynamic, so XLA-compiled models keep the padded
head (the builders skip these layers when ``Config.XLA`` is set).
"""
import keras
import tensorflow as tf

__all__ = ["GatherValidRois", "ScatterValidRois", "ValidRoisConv2D"]

_PACKAGE = "mrcnn"


def _scatter_rows(rows, indices, valid, column):
    """``rows [P, ...]`` back at ``indices`` of ``[B*R, ...]``, zeros where ``valid`` is not."""
    flags = tf.cast(_valid_flags(valid, column), rows.dtype)
    shape = tf.concat([tf.shape(flags), tf.shape(rows)[1:]], axis=0)
    merged = tf.scatter_nd(indices[:, tf.newaxis], rows, shape)
    # The stand-in row 0 (nothing valid) is zeroed here.
    return merged * tf.reshape(flags, [-1] + [1] * (len(rows.shape) - 1))


def _checked_column(owner, column):
    """``column`` as an int (or None); ValueError naming ``owner`` otherwise."""
    if column is not None and (int(column) != column or column < 0):
        raise ValueError(f"{owner}: column must be None or an int >= 0, got {column!r}")
    return None if column is None else int(column)


def _valid_flags(valid, column):
    """``[B*R]`` bool from ``valid`` ``[B, R]`` (or ``[B, R, K]`` with ``column``)."""
    if column is not None:
        valid = valid[..., column]
    return tf.reshape(tf.greater(valid, tf.zeros([], valid.dtype)), [-1])


class _ValidRoisLayer(keras.layers.Layer):
    def __init__(self, column=None, **kwargs):
        super().__init__(**kwargs)
        self.column = _checked_column(type(self).__name__, column)

    def get_config(self):
        config = super().get_config()
        config["column"] = self.column
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class GatherValidRois(_ValidRoisLayer):
    """``[x [B*R, ...], valid] -> (rows [P, ...], indices [P] int32)``.

    ``rows`` are the entries of ``x`` whose ROI is valid, in order; ``indices`` their positions
    in ``x``; ``P = max(number of valid ROIs, 1)`` (row 0 when none is valid). ``x`` keeps its
    dtype; ``valid`` is described in the module docstring.
    """

    def call(self, inputs):
        x, valid = inputs
        indices = tf.cast(tf.where(_valid_flags(valid, self.column))[:, 0], tf.int32)
        # Append row 0 and keep max(P, 1) entries: no tf.cond, never an empty batch.
        count = tf.maximum(tf.size(indices), 1)
        indices = tf.concat([indices, tf.zeros([1], tf.int32)], axis=0)[:count]
        return tf.gather(x, indices), indices

    def compute_output_shape(self, input_shape):
        x_shape = tuple(input_shape[0])
        return (None,) + x_shape[1:], (None,)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ScatterValidRois(_ValidRoisLayer):
    """``[rows [P, ...], indices [P], valid] -> [B*R, ...]``: each row back at its index, zeros
    for every ROI that is not valid (also for row 0 when it was gathered as a stand-in).

    The gradient reaches the gathered rows of valid ROIs only, exactly (multiplied by 1).
    """

    def call(self, inputs):
        rows, indices, valid = inputs
        return _scatter_rows(rows, indices, valid, self.column)

    def compute_output_shape(self, input_shape):
        rows_shape, _, valid_shape = (tuple(s) for s in input_shape)
        batch, rois = valid_shape[0], valid_shape[1]
        merged = batch * rois if batch is not None and rois is not None else None
        return (merged,) + rows_shape[1:]


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ValidRoisConv2D(keras.layers.Conv2D):
    """``Conv2D`` on the gathered rows, then the scatter: ``[rows [P, h, w, C], indices [P],
    valid [B, R] (or [B, R, K] with column)] -> [B, R, h', w', filters]``, zeros for every ROI
    that is not valid.

    The last layer of a head run on valid ROIs only: it keeps the classic per-ROI output shape
    (``get_layer("mrcnn_mask").output`` is ``[B, R, 28, 28, NC]``) and the ``Conv2D`` weights
    (``kernel [kh, kw, C, filters]``, ``bias``, so classic ``.h5`` files load unchanged), while
    the scatter moves the convolution's output rather than its wider input. Same constructor
    arguments as ``keras.layers.Conv2D`` plus ``column``; ``channels_last`` only.
    """

    def __init__(self, *args, column=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.column = _checked_column(self.name, column)
        if self.data_format != "channels_last":
            raise ValueError(f"{self.name}: ValidRoisConv2D supports data_format="
                             f"'channels_last' only, got {self.data_format!r}")
        # Conv2D pins a single-input spec (here and in build); this layer takes three inputs.
        self.input_spec = None

    def build(self, input_shape):
        super().build(tuple(input_shape[0]))
        self.input_spec = None

    def call(self, inputs):
        rows, indices, valid = inputs
        out = _scatter_rows(super().call(rows), indices, valid, self.column)
        batch_rois = tf.shape(valid)[:2]
        return tf.reshape(out, tf.concat([batch_rois, tf.shape(out)[1:]], axis=0))

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3 or not all(isinstance(s, (tuple, list)) for s in input_shape):
            # Conv2D.build asks for the output shape of the rows alone.
            return super().compute_output_shape(input_shape)
        rows_shape, _, valid_shape = (tuple(s) for s in input_shape)
        inner = super().compute_output_shape(rows_shape)
        return (valid_shape[0], valid_shape[1]) + tuple(inner[1:])

    def get_config(self):
        config = super().get_config()
        config["column"] = self.column
        return config
