"""A tiny inference config for the deployment tests: a 5-conv backbone, 64 x 64 images.

Loaded by path (``tests/export/tiny_config.py:TinyExportConfig``) by the export and predict CLIs.
"""
import keras
import numpy as np

from mrcnn.config import Config

__all__ = ["TinyExportConfig", "tiny_backbone", "tiny_backbone_shapes", "make_confident"]


def tiny_backbone(input_image, stage5=True, train_bn=None):
    """C1..C5 at strides 2, 4, 8, 16, 32 from one strided 3x3 conv each (a few thousand weights)."""
    x = input_image
    outputs = []
    for i, filters in enumerate((8, 8, 16, 16, 16)):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu",
                                name=f"tiny_c{i + 1}")(x)
        outputs.append(x)
    return outputs


def tiny_backbone_shapes(image_shape):
    return np.array([[int(np.ceil(image_shape[0] / s)), int(np.ceil(image_shape[1] / s))]
                     for s in (4, 8, 16, 32, 64)])


class TinyExportConfig(Config):
    NAME = "tinyexport"
    GPU_COUNT = 1
    IMAGES_PER_GPU = 1
    NUM_CLASSES = 4
    BACKBONE = tiny_backbone
    COMPUTE_BACKBONE_SHAPE = tiny_backbone_shapes
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64
    RPN_ANCHOR_SCALES = (8, 16, 24, 32, 48)
    TOP_DOWN_PYRAMID_SIZE = 16
    FPN_CLASSIF_FC_LAYERS_SIZE = 32
    POST_NMS_ROIS_INFERENCE = 32
    PRE_NMS_LIMIT = 200
    # All proposals can become detections: no cut at the top-k where two scores may tie.
    DETECTION_MAX_INSTANCES = 32
    # Random weights score about 1 / NUM_CLASSES: keep every detection so lists are not empty.
    DETECTION_MIN_CONFIDENCE = 0.0
    DETECTION_NMS_THRESHOLD = 0.3


def make_confident(model):
    """Deterministic weights whose outputs are far from decision boundaries.

    A randomly initialised model predicts mask probabilities near 0.5, where the last float bit
    decides a pixel, and class scores that saturate at 1.0 for every ROI, where it decides the
    order of two detections. Scaling the mask logits up (decisive masks) and the class logits
    down (scores spread over 0.8-0.95, at least ~2e-4 apart on the test images) makes the
    comparisons between two implementations test the implementations, not rounding.

    Random weights can also make background (class 0) the top class of every ROI on an image,
    and then ``detect()`` has nothing to compare: a large negative background bias keeps every
    ROI a detection whatever the random draw (the CI machine drew such weights once).
    The weights of ``model`` were drawn when it was built: seed Keras before building it
    (``keras.utils.set_random_seed``) for a reproducible model.
    """
    for name, factor in (("mrcnn_mask", 20.0), ("mrcnn_class_logits", 0.3)):
        layer = model.keras_model.get_layer(name)
        weights = layer.get_weights()
        layer.set_weights([weights[0] * factor] + weights[1:])
    logits = model.keras_model.get_layer("mrcnn_class_logits")
    kernel, bias = logits.get_weights()
    bias = bias.copy()
    bias[0] = -30.0
    logits.set_weights([kernel, bias])
    return model
