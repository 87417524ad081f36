"""The tiny config of the distribution, precision and XLA tests (no TensorFlow import)."""
from mrcnn.config import Config

__all__ = ["StrategyConfig", "TinyStrategyConfig", "tiny_bn_backbone", "tiny_bn_backbone_shapes"]


class StrategyConfig(Config):
    """Tiny, frozen BatchNorm, every positive candidate sampled (ROI_POSITIVE_RATIO 1: no random
    negatives), so that the in-graph sampling cannot differ between replica layouts."""
    NAME = "strategy"
    IMAGES_PER_GPU = 1
    NUM_CLASSES = 4
    BACKBONE = "resnet50"
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    TOP_DOWN_PYRAMID_SIZE = 32
    FPN_CLASSIF_FC_LAYERS_SIZE = 64
    TRAIN_BN = False
    PRE_NMS_LIMIT = 200
    POST_NMS_ROIS_TRAINING = 16
    POST_NMS_ROIS_INFERENCE = 16
    RPN_TRAIN_ANCHORS_PER_IMAGE = 32
    TRAIN_ROIS_PER_IMAGE = 24
    ROI_POSITIVE_RATIO = 1.0
    TRAIN_ROIS_INCLUDE_GT = True
    MAX_GT_INSTANCES = 6
    DETECTION_MAX_INSTANCES = 8
    STEPS_PER_EPOCH = 2
    VALIDATION_STEPS = 1
    WEIGHT_DECAY = 0.01
    GRADIENT_CLIP_NORM = 0.05


def tiny_bn_backbone(input_image, stage5=True, train_bn=None):
    """C1..C5 at strides 2..32: one strided 3x3 conv + BatchNorm + ReLU each (about 20k weights).

    The strategy tests need BatchNorm layers (frozen, trainable, synchronised) and a real
    convolutional trunk, not ResNet-50's 23M weights: building and stepping that several times
    in one process cost minutes of the suite.
    """
    import keras

    from mrcnn.model.layers import BatchNorm

    x = input_image
    outputs = []
    for i, filters in enumerate((8, 16, 16, 32, 32)):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", name=f"tiny_conv{i + 1}")(x)
        x = BatchNorm(train_bn=train_bn, name=f"tiny_bn{i + 1}")(x)
        outputs.append(keras.layers.Activation("relu", name=f"tiny_relu{i + 1}")(x))
    return outputs


def tiny_bn_backbone_shapes(image_shape):
    """[[h, w]] of C2..C5 and P6 (strides 4..64, "same" padding) for ``tiny_bn_backbone``."""
    import math

    return [[math.ceil(image_shape[0] / s), math.ceil(image_shape[1] / s)]
            for s in (4, 8, 16, 32, 64)]


class TinyStrategyConfig(StrategyConfig):
    """:class:`StrategyConfig` on :func:`tiny_bn_backbone` (the strategy and XLA checks)."""
    BACKBONE = tiny_bn_backbone
    COMPUTE_BACKBONE_SHAPE = tiny_bn_backbone_shapes
