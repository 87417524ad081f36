"""One exported tiny model shared by the deployment tests (session scope: exporting is slow)."""
from pathlib import Path

import numpy as np
import pytest

from mrcnn.cli import load_object

TINY = Path(__file__).resolve().parent / "tiny_config.py"


def tiny_config_spec(name="TinyExportConfig"):
    return f"{TINY}:{name}"


def make_images():
    """Two test images of different sizes and aspect ratios (smooth blobs on noise)."""
    rng = np.random.default_rng(7)
    images = []
    for h, w in ((50, 40), (30, 64)):
        yy, xx = np.mgrid[0:h, 0:w]
        image = rng.integers(0, 60, size=(h, w, 3)).astype(np.float32)
        for _ in range(3):
            cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(4, 12)
            inside = (yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2
            image[inside] += rng.uniform(100, 190, size=3)
        images.append(np.clip(image, 0, 255).astype(np.uint8))
    return images


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    import keras

    from mrcnn.model.maskrcnn import MaskRCNN

    keras.utils.set_random_seed(0)  # the same tiny model on every machine and every run
    config = load_object(tiny_config_spec())()
    model = MaskRCNN(mode="inference", config=config,
                     model_dir=str(tmp_path_factory.mktemp("logs")))
    load_object(tiny_config_spec("make_confident"))(model)
    return model


@pytest.fixture(scope="session")
def exported(tiny_model, tmp_path_factory):
    """(model, SavedModel folder), written by the command line from the model's saved weights."""
    from mrcnn.export.__main__ import main

    work = tmp_path_factory.mktemp("export")
    weights = work / "tiny.h5"
    tiny_model.save_weights(str(weights))
    export_dir = work / "saved_model"
    assert main(["--config", tiny_config_spec(), "--weights", str(weights), "--output",
                 str(export_dir), "--logs", str(work)]) == 0
    return tiny_model, export_dir


@pytest.fixture(scope="session")
def loaded(exported):
    import tensorflow as tf

    return tf.saved_model.load(str(exported[1]))


@pytest.fixture(scope="session")
def images():
    return make_images()


@pytest.fixture(scope="session")
def detect_results(tiny_model, images):
    return [tiny_model.detect([image])[0] for image in images]


def assert_same_detections(result, boxes, classes, scores, masks):
    """``detect()`` result vs one image's serving outputs (already cut to num_detections).

    masks: [H, W, n] bool. Same count and classes, boxes within 2 px, scores within 1e-3, each
    mask IoU >= 0.95 (two empty masks count as equal).
    """
    n = result["class_ids"].shape[0]
    assert n > 0, "detect() found nothing: the comparison would be empty"
    assert classes.shape == (n,), (classes, result["class_ids"])
    np.testing.assert_array_equal(classes, result["class_ids"])
    assert np.abs(boxes - result["rois"]).max() <= 2
    np.testing.assert_allclose(scores, result["scores"], atol=1e-3, rtol=0)
    assert masks.shape == result["masks"].shape
    inter = (masks & result["masks"]).sum(axis=(0, 1))
    union = (masks | result["masks"]).sum(axis=(0, 1))
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    assert iou.min() >= 0.95, iou


@pytest.fixture(scope="session")
def same_detections():
    return assert_same_detections
