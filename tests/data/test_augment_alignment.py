"""Augmented masks, boxes and crowd regions still match the augmented image, per transform family.

Each object is drawn in its own colour on a grey background; after ``load_image_gt`` with the
augmentation, the pixels of each colour must coincide with that object's mask (IoU), and its box
with the box of those pixels. One object is a crowd region (negative class id). Real
albumentations transforms, real drawing; nothing is mocked.
"""
import cv2
import numpy as np
import pytest

from mrcnn.config import Config
from mrcnn.data.dataset import Dataset
from mrcnn.data.pipeline import load_image_gt
from mrcnn.ops.masks import extract_bboxes

A = pytest.importorskip("albumentations")

SIZE = 128
COLOURS = {1: (230, 30, 30), 2: (30, 220, 40), 3: (40, 60, 235)}  # class id -> RGB
CROWD_CLASS = 3


class Scene(Dataset):
    """One picture: a red square, a green disc and a blue triangle (a crowd region)."""

    def __init__(self):
        super().__init__()
        for k, name in ((1, "square"), (2, "disc"), (3, "triangle")):
            self.add_class("scene", k, name)
        self.add_image("scene", image_id=0, path=None)
        image = np.full((SIZE, SIZE, 3), 128, np.uint8)
        masks = np.zeros((SIZE, SIZE, 3), np.uint8)
        square = np.zeros((SIZE, SIZE), np.uint8)
        square[20:50, 24:60] = 1
        disc = np.zeros((SIZE, SIZE), np.uint8)
        cv2.circle(disc, (88, 40), 18, 1, -1)
        triangle = np.zeros((SIZE, SIZE), np.uint8)
        cv2.fillPoly(triangle, [np.array([[30, 110], [70, 70], [100, 112]], np.int32)], 1)
        for k, mask in enumerate((square, disc, triangle)):
            masks[..., k] = mask
            image[mask > 0] = COLOURS[k + 1]
        self._gt_image, self._gt_masks = image, masks.astype(bool)
        self._gt_ids = np.array([1, 2, -CROWD_CLASS], np.int32)

    def load_image(self, image_id):
        return self._gt_image.copy()

    def load_mask(self, image_id):
        return self._gt_masks.copy(), self._gt_ids.copy()


class SceneConfig(Config):
    NAME = "scene"
    NUM_CLASSES = 4
    IMAGES_PER_GPU = 1
    IMAGE_MIN_DIM = SIZE
    IMAGE_MAX_DIM = SIZE
    USE_MINI_MASK = False


@pytest.fixture(scope="module")
def scene():
    dataset = Scene()
    dataset.prepare()
    return dataset, SceneConfig()


def _colour_pixels(image, class_id):
    distance = np.abs(image.astype(np.int32) - np.array(COLOURS[class_id])).sum(axis=-1)
    return distance < 60


def _iou(a, b):
    union = np.logical_or(a, b).sum()
    return np.logical_and(a, b).sum() / max(union, 1)


FAMILIES = {
    "flip": [A.HorizontalFlip(p=1), A.VerticalFlip(p=1), A.Transpose(p=1)],
    "rot90": [A.RandomRotate90(p=1), A.D4(p=1)],
    "rotate": [A.Rotate(limit=(25, 35), border_mode=cv2.BORDER_CONSTANT, fill=128, p=1),
               A.SafeRotate(limit=(-40, -30), border_mode=cv2.BORDER_CONSTANT, fill=128, p=1)],
    "scale": [A.Affine(scale=(0.7, 0.8), fill=128, p=1),
              A.RandomScale(scale_limit=(-0.4, -0.3), p=1),  # changes the size: fitted back
              A.Affine(scale=(1.1, 1.2), translate_percent=(-0.05, 0.05), rotate=(-10, 10),
                       fill=128, p=1)],
    "crop": [A.RandomResizedCrop(size=(SIZE, SIZE), scale=(0.6, 0.8), p=1),
             A.RandomCrop(100, 100, p=1),  # smaller output: fitted back
             A.CropAndPad(percent=(-0.15, -0.05), p=1),
             A.CenterCrop(96, 96, p=1)],
    "elastic": [A.ElasticTransform(alpha=40, sigma=6, p=1),
                A.GridDistortion(distort_limit=0.3, p=1),
                A.OpticalDistortion(distort_limit=0.3, p=1),
                A.Perspective(scale=(0.05, 0.1), fill=128, p=1),
                A.PiecewiseAffine(scale=(0.02, 0.04), p=1)],
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_masks_boxes_and_crowd_follow_the_image(scene, family):
    dataset, config = scene
    base_image, _, _, _, base_masks = load_image_gt(dataset, config, 0, use_mini_mask=False,
                                                    rng=np.random.default_rng(0))
    for transform in FAMILIES[family]:
        name = type(transform).__name__
        changed = False
        for seed in range(3):
            image, _, class_ids, boxes, masks = load_image_gt(
                dataset, config, 0, augmentation=transform, use_mini_mask=False,
                rng=np.random.default_rng(seed))
            assert image.shape == base_image.shape, name
            assert CROWD_CLASS not in class_ids, f"{name}: crowd lost its sign"
            changed |= not np.array_equal(image, base_image)
            for class_id in COLOURS:
                pixels = _colour_pixels(image, class_id)
                present = [k for k, c in enumerate(class_ids) if abs(c) == class_id]
                if not present:  # cropped away: then its colour is gone too
                    assert pixels.sum() < 10, f"{name}: class {class_id} visible but no mask"
                    continue
                [k] = present
                if class_id == CROWD_CLASS:
                    assert class_ids[k] == -CROWD_CLASS, name
                iou = _iou(pixels, masks[..., k])
                # interpolated image edges against nearest-neighbour masks: > 0.8 (a mask left
                # behind or moved differently scores far lower, see the last lines)
                assert iou > 0.8, f"{name} (seed {seed}): class {class_id} mask IoU {iou:.3f}"
                colour_box = extract_bboxes(pixels[..., None])[0]
                assert np.abs(boxes[k] - colour_box).max() <= 3, (
                    f"{name}: class {class_id} box {boxes[k]} vs pixels {colour_box}")
        assert changed, f"{name} never changed the image: the test would not see a bug"
    # sanity of the check itself: unaugmented masks match; a mask flipped, or shifted by 4
    # pixels (a small misalignment), fails the bound
    pixels = _colour_pixels(base_image, 1)
    assert _iou(pixels, base_masks[..., 0]) > 0.99
    assert _iou(pixels, base_masks[::-1, :, 0]) < 0.2
    assert _iou(pixels, np.roll(base_masks[..., 0], 4, axis=(0, 1))) < 0.8


def test_imgaug_pipeline_is_accepted_the_same_way(scene):
    try:
        import imgaug.augmenters as iaa
    except Exception as exc:  # imgaug 0.4 fails with AttributeError on NumPy 2
        pytest.skip(f"imgaug is not installed or not usable ({type(exc).__name__}: {exc}); "
                    "imgaug 0.4, its last release, does not work with NumPy 2")
    dataset, config = scene
    pipeline = iaa.Sequential([iaa.Fliplr(1.0), iaa.Rot90(1), iaa.Affine(rotate=20)])
    image, _, class_ids, boxes, masks = load_image_gt(dataset, config, 0, augmentation=pipeline,
                                                      use_mini_mask=False)
    for k, class_id in enumerate(class_ids):
        assert _iou(_colour_pixels(image, abs(class_id)), masks[..., k]) > 0.8
