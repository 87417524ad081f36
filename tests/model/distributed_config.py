"""The tiny config of the distribution, precision and XLA tests (no TensorFlow import)."""
from mrcnn.config import Config

__all__ = ["StrategyConfig"]


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
