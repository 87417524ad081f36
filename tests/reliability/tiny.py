"""A tiny Mask R-CNN for the reliability catalogue: a 4-conv backbone, 64 x 64 images.

Builds in a few seconds and runs a training step in well under a second on 2 cores, so the
catalogue and the kill -9 rounds (one fresh process each) stay cheap. Real layers, real graph:
only the backbone is small.
"""
import numpy as np

from mrcnn.config import Config
from mrcnn.data.dataset import Dataset

__all__ = ["TinyConfig", "TinyInferenceConfig", "SquaresDataset", "tiny_backbone"]


def tiny_backbone(input_image, stage5=True, train_bn=None):
    """[C1, C2, C3, C4, C5] at strides 2, 4, 8, 16, 32 with 8..32 channels (no BatchNorm)."""
    import keras
    outputs, x = [], input_image
    for k, channels in enumerate((8, 8, 16, 16, 32)):
        x = keras.layers.Conv2D(channels, 3, strides=2, padding="same", activation="relu",
                                name=f"tiny_c{k + 1}")(x)
        outputs.append(x)
    return outputs


def tiny_backbone_shapes(image_shape):
    return np.array([[int(np.ceil(image_shape[0] / s)), int(np.ceil(image_shape[1] / s))]
                     for s in (4, 8, 16, 32, 64)])


class TinyConfig(Config):
    NAME = "tiny"
    BACKBONE = tiny_backbone
    COMPUTE_BACKBONE_SHAPE = tiny_backbone_shapes
    IMAGES_PER_GPU = 2
    NUM_CLASSES = 3
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    TOP_DOWN_PYRAMID_SIZE = 16
    FPN_CLASSIF_FC_LAYERS_SIZE = 32
    POOL_SIZE = 3
    MASK_POOL_SIZE = 4
    MASK_SHAPE = [8, 8]
    MINI_MASK_SHAPE = (8, 8)
    PRE_NMS_LIMIT = 200
    POST_NMS_ROIS_TRAINING = 32
    POST_NMS_ROIS_INFERENCE = 16
    RPN_TRAIN_ANCHORS_PER_IMAGE = 16
    TRAIN_ROIS_PER_IMAGE = 8
    MAX_GT_INSTANCES = 4
    DETECTION_MAX_INSTANCES = 4
    DETECTION_MIN_CONFIDENCE = 0.0
    STEPS_PER_EPOCH = 2
    VALIDATION_STEPS = 1
    LEARNING_RATE = 0.01


class TinyInferenceConfig(TinyConfig):
    IMAGES_PER_GPU = 1


class SquaresDataset(Dataset):
    """``count`` 64 x 64 images with one or two axis-aligned squares of classes 1 and 2.

    ``image_hook(image_id, image)`` and ``mask_hook(image_id, masks, class_ids)`` let a case
    return a bad image or bad ground truth for one image, the rest staying valid.
    """

    def __init__(self, count=4, size=64, image_hook=None, mask_hook=None):
        super().__init__()
        self.size = size
        self.image_hook, self.mask_hook = image_hook, mask_hook
        self.add_class("squares", 1, "small")
        self.add_class("squares", 2, "large")
        for i in range(count):
            self.add_image("squares", i, path=f"squares/{i}.png")
        self.prepare()

    def _boxes(self, image_id):
        rng = np.random.default_rng(int(image_id))
        boxes = []
        for class_id, side in ((1, 10), (2, 20)):
            y, x = rng.integers(0, self.size - side, 2)
            boxes.append((class_id, y, x, side))
        return boxes

    def load_image(self, image_id):
        image = np.full((self.size, self.size, 3), 30, dtype=np.uint8)
        for class_id, y, x, side in self._boxes(image_id):
            image[y:y + side, x:x + side] = (200, 80 * class_id, 40)
        if self.image_hook is not None:
            image = self.image_hook(image_id, image)
        return image

    def load_mask(self, image_id):
        boxes = self._boxes(image_id)
        masks = np.zeros((self.size, self.size, len(boxes)), dtype=bool)
        for k, (_, y, x, side) in enumerate(boxes):
            masks[y:y + side, x:x + side, k] = True
        class_ids = np.array([b[0] for b in boxes], dtype=np.int32)
        if self.mask_hook is not None:
            masks, class_ids = self.mask_hook(image_id, masks, class_ids)
        return masks, class_ids
