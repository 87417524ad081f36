"""Per-ROI classifier/box head and mask head of the FPN Mask R-CNN (Keras 3 functional API).

Both heads take features already pooled by ``PyramidROIAlign`` (``[B, R, ph, pw, C]``, one crop
per ROI, zero-padded ROIs included) and work for any B and R, also different R between calls.

Instead of the classic ``TimeDistributed`` wrappers, the ROI axis is folded into the batch
(``MergeRoiBatch``), ``Conv2D``/``BatchNorm`` layers run on ``[B*R, h, w, C]`` and
``SplitRoiBatch`` restores ``[B, R, ...]``. The layers keep the classic names (``mrcnn_class_conv1``,
``mrcnn_class_bn1``, ..., ``mrcnn_mask``), so weights match the classic ``.h5`` files name for
name and shape for shape. The layers whose outputs users look up by name (``mrcnn_class_logits``,
``mrcnn_class``, ``mrcnn_bbox``, ``mrcnn_mask``) output the classic per-ROI shapes.
"""
from keras import layers

from mrcnn.model.feature_conv import FeatureConv2D
from mrcnn.model.folded_norm import conv_then_norm
from mrcnn.model.layers import (
    BN_MOMENTUM,
    BatchNorm,
    MergeRoiBatch,
    ReshapeBoxDeltas,
    RoiConv2D,
    SplitRoiBatch,
    SqueezeRoiFeatures,
    WindowConv2D,
)
from mrcnn.model.valid_rois import GatherValidRois, ValidRoisConv2D

__all__ = ["fpn_classifier_graph", "build_fpn_mask_graph"]


def _check_pooled(pooled, what):
    shape = tuple(pooled.shape)
    if len(shape) != 5 or shape[2] is None or shape[3] is None or shape[4] is None:
        raise ValueError(
            f"{what}: pooled must be [B, R, pool_h, pool_w, C] with static pool_h, pool_w and C, "
            f"got shape {shape}"
        )
    return shape


def _check_num_classes(num_classes, what):
    if int(num_classes) != num_classes or num_classes < 2:
        raise ValueError(
            f"{what}: num_classes must be an int >= 2 (background included), got {num_classes!r}"
        )
    return int(num_classes)


def fpn_classifier_graph(pooled, num_classes, fc_layers_size=1024, train_bn=None,
                         bn_momentum=BN_MOMENTUM):
    """Classifier and box-regression head.

    Args:
        pooled: ``[B, R, pool, pool, C]`` float32 ROI features (classic ``POOL_SIZE`` 7, C = 256);
            pool and C must be static, B and R may be None.
        num_classes: classes including background (``NUM_CLASSES``).
        fc_layers_size: width of the two "fully connected" layers, implemented as a pool x pool
            valid convolution and a 1x1 convolution (``FPN_CLASSIF_FC_LAYERS_SIZE``).
        train_bn: the classic ``TRAIN_BN`` (see :class:`~mrcnn.model.layers.BatchNorm`).
        bn_momentum: BatchNorm moving-average momentum (``BATCH_NORM_MOMENTUM``).
    Returns:
        ``(mrcnn_class_logits [B, R, NC], mrcnn_class [B, R, NC] softmax probabilities,
        mrcnn_bbox [B, R, NC, 4])``; box deltas are (dy, dx, log dh, log dw) per class, still
        divided by ``BBOX_STD_DEV`` (the caller multiplies). Padded ROIs get (meaningless) values
        too; callers mask them.
    """
    _, _, pool_h, pool_w, _ = _check_pooled(pooled, "fpn_classifier_graph")
    num_classes = _check_num_classes(num_classes, "fpn_classifier_graph")
    if int(fc_layers_size) != fc_layers_size or fc_layers_size < 1:
        raise ValueError(
            f"fpn_classifier_graph: fc_layers_size must be a positive int, got {fc_layers_size!r}"
        )
    fc_layers_size = int(fc_layers_size)

    x = MergeRoiBatch(name="mrcnn_class_merge_rois")(pooled)
    # The two "fully connected" layers as classic convolutions (classic weight layout and names),
    # computed as matrix products: see WindowConv2D for why.
    x = WindowConv2D(fc_layers_size, (pool_h, pool_w), padding="valid",
                     name="mrcnn_class_conv1")(x)
    x = BatchNorm(train_bn=train_bn, momentum=bn_momentum, name="mrcnn_class_bn1")(x)
    x = layers.Activation("relu", name="mrcnn_class_relu1")(x)
    x = WindowConv2D(fc_layers_size, (1, 1), name="mrcnn_class_conv2")(x)
    x = BatchNorm(train_bn=train_bn, momentum=bn_momentum, name="mrcnn_class_bn2")(x)
    x = layers.Activation("relu", name="mrcnn_class_relu2")(x)
    x = SplitRoiBatch(name="mrcnn_class_split_rois")([x, pooled])
    shared = SqueezeRoiFeatures(name="pool_squeeze")(x)  # [B, R, fc_layers_size]

    # Dense acts on the last axis of [B, R, fc], so no per-ROI wrapping is needed.
    mrcnn_class_logits = layers.Dense(num_classes, name="mrcnn_class_logits")(shared)
    mrcnn_probs = layers.Activation("softmax", name="mrcnn_class")(mrcnn_class_logits)
    x = layers.Dense(num_classes * 4, activation="linear", name="mrcnn_bbox_fc")(shared)
    mrcnn_bbox = ReshapeBoxDeltas(num_classes, name="mrcnn_bbox")(x)
    return mrcnn_class_logits, mrcnn_probs, mrcnn_bbox


def build_fpn_mask_graph(pooled, num_classes, train_bn=None, bn_momentum=BN_MOMENTUM,
                         valid=None, valid_column=None):
    """Mask head.

    Args:
        pooled: ``[B, R, mp, mp, C]`` float32 ROI features (classic ``MASK_POOL_SIZE`` 14,
            C = 256); mp and C static, B and R may be None.
        num_classes: classes including background (``NUM_CLASSES``).
        train_bn: the classic ``TRAIN_BN``.
        bn_momentum: BatchNorm moving-average momentum (``BATCH_NORM_MOMENTUM``).
        valid: optional ``[B, R]`` tensor (> 0, e.g. a class id: the ROI needs a mask), or
            ``[B, R, K]`` with ``valid_column``: the convolutions then run on the valid ROIs
            only and the others get all-zero masks (:mod:`mrcnn.model.valid_rois`).
            None: every ROI.
    Returns:
        ``mrcnn_mask [B, R, 2*mp, 2*mp, NC]`` float32 sigmoid probabilities, one mask per class
        (the caller picks the channel of the ROI's class), in the ROI's box frame.
    """
    _check_pooled(pooled, "build_fpn_mask_graph")
    num_classes = _check_num_classes(num_classes, "build_fpn_mask_graph")

    x = MergeRoiBatch(name="mrcnn_mask_merge_rois")(pooled)
    if valid is not None:
        x, valid_indices = GatherValidRois(valid_column, name="mrcnn_mask_valid_rois")(
            [x, valid])
    for i in range(1, 5):
        # Winograd's algorithm at inference (0.6-0.8 of the direct convolution's time); in
        # training (valid ROIs: a count unknown when traced) the convolution with its own
        # filter gradient. See FeatureConv2D.
        # Linked, so that the BatchNorm can be folded into the convolution where it uses its
        # moving statistics (mrcnn/model/folded_norm.py, off by default).
        x = conv_then_norm(
            x, FeatureConv2D(256, (3, 3), padding="same", gemm_filter_gradient=False,
                             name=f"mrcnn_mask_conv{i}"),
            BatchNorm(train_bn=train_bn, momentum=bn_momentum, name=f"mrcnn_mask_bn{i}"))
        x = layers.Activation("relu", name=f"mrcnn_mask_relu{i}")(x)
    x = layers.Conv2DTranspose(256, (2, 2), strides=2, activation="relu",
                               name="mrcnn_mask_deconv")(x)
    # The last layer outputs [B, R, ...] itself so that get_layer("mrcnn_mask").output has the
    # classic shape [B, R, 2mp, 2mp, NC] (the inspection notebooks index it that way).
    if valid is not None:
        # Its 1x1 convolution runs on the valid rows, then scatters NC channels (not 256).
        return ValidRoisConv2D(num_classes, (1, 1), strides=1, activation="sigmoid",
                               column=valid_column, name="mrcnn_mask")(
            [x, valid_indices, valid])
    x = SplitRoiBatch(name="mrcnn_mask_split_rois")([x, pooled])
    return RoiConv2D(num_classes, (1, 1), strides=1, activation="sigmoid", name="mrcnn_mask")(x)
