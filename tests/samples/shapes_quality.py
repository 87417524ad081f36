"""The learning check of CI: a tiny Mask R-CNN trained a fixed number of steps on shapes.

Used by ``test_shapes_quality.py`` (one seed, the bound) and ``scripts/shapes_quality_probe.py``
(several seeds, to choose the bound on this machine class). Nothing here depends on the
machine's speed: the step count, the data and the seeds are fixed.
"""
from samples.shapes.shapes import ShapesCPUConfig, evaluate_shapes, make_dataset
# Strides 4..64 with "same" padding: the same feature-map sizes as small_backbone's.
from tests.model.distributed_config import tiny_bn_backbone_shapes as small_backbone_shapes

__all__ = ["QualityConfig", "QualityInferenceConfig", "STEPS", "BOUND", "train_and_score"]

#: Training steps of the check (batch 4 at 128 x 128).
STEPS = 300
#: The classic mask mAP@0.5 the trained model must reach on 40 held-out images. Measured with
#: scripts/shapes_quality_probe.py on 2026-12-02 (docs/benchmarks.md): seeds 0, 1, 2 gave 0.179,
#: 0.212, 0.198 on AVX-512 and seed 0 gave 0.098 with oneDNN held to AVX2 (300 steps are early
#: in training, where float differences between kernels still move the result); 2 steps give
#: 0.0. The bound catches a model that stops learning, not a small regression.
BOUND = 0.05


def small_backbone(input_image, stage5=True, train_bn=None):
    """C1..C5 at strides 2..32: two 3x3 convs + BatchNorm + ReLU per stage (about 0.2M weights)."""
    import keras

    from mrcnn.model.layers import BatchNorm

    x = input_image
    outputs = []
    for stage, filters in enumerate((16, 32, 48, 64, 64), start=1):
        for j, stride in enumerate((2, 1)):
            x = keras.layers.Conv2D(filters, 3, strides=stride, padding="same",
                                    name=f"small_conv{stage}_{j}")(x)
            x = BatchNorm(train_bn=train_bn, name=f"small_bn{stage}_{j}")(x)
            x = keras.layers.Activation("relu", name=f"small_relu{stage}_{j}")(x)
        outputs.append(x)
    return outputs


class QualityConfig(ShapesCPUConfig):
    """ShapesCPUConfig (128 x 128) with a small backbone and narrow FPN and heads."""
    NAME = "shapesquality"
    BACKBONE = small_backbone
    COMPUTE_BACKBONE_SHAPE = small_backbone_shapes
    TOP_DOWN_PYRAMID_SIZE = 64
    FPN_CLASSIF_FC_LAYERS_SIZE = 128
    PRE_NMS_LIMIT = 500
    POST_NMS_ROIS_TRAINING = 100
    POST_NMS_ROIS_INFERENCE = 100
    STEPS_PER_EPOCH = 100
    VALIDATION_STEPS = 1


class QualityInferenceConfig(QualityConfig):
    IMAGES_PER_GPU = 1


def train_and_score(logs, steps=STEPS, seed=0, eval_images=40):
    """Train ``steps`` steps from random init (data and weights seeded); classic mAP@0.5 etc.

    Returns the :func:`evaluate_shapes` dict (``mAP50``, COCO AP...) of the last checkpoint on
    ``eval_images`` held-out images, plus ``steps`` and ``seed``.
    """
    import keras

    from mrcnn.model.maskrcnn import MaskRCNN
    from samples.shapes.shapes import train_shapes

    keras.utils.set_random_seed(seed)
    config = QualityConfig()
    epochs = -(-int(steps) // int(config.STEPS_PER_EPOCH))
    config.STEPS_PER_EPOCH = int(steps) // epochs
    model = train_shapes(config, logs=str(logs), epochs=epochs, train_images=400,
                         val_images=4, seed=seed)
    inference = MaskRCNN("inference", QualityInferenceConfig(), str(logs))
    inference.load_weights(model.find_last(), by_name=True)
    metrics = evaluate_shapes(inference, make_dataset(eval_images, "eval", seed, 128, 128))
    metrics.update(steps=config.STEPS_PER_EPOCH * epochs, seed=seed)
    return metrics
