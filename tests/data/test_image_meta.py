"""Tests for mrcnn.data.image_meta: layout, NumPy/TF parsing, mold/unmold."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mrcnn.config import Config
from mrcnn.data.image_meta import (
    IMAGE_META_FIXED_SIZE,
    compose_image_meta,
    image_meta_size,
    mold_image,
    parse_image_meta,
    parse_image_meta_graph,
    unmold_image,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
MEAN = np.array([123.7, 116.8, 103.9])


def _two_metas():
    a = compose_image_meta(7, (480, 640, 3), (1024, 1024, 3), (192, 0, 832, 1024), 1.6,
                           [1, 1, 0, 1])
    b = compose_image_meta(123456, (100, 50, 3), (128, 128, 3), (0, 32, 128, 96), 1.28,
                           np.array([1, 0, 1, 1], dtype=np.int32))
    return np.stack([a, b])


def test_fixed_size_and_size_helper():
    assert IMAGE_META_FIXED_SIZE == 12
    assert image_meta_size(81) == 93
    assert image_meta_size(np.int64(1)) == 13
    assert image_meta_size(4) == type("C", (Config,), {"NUM_CLASSES": 4})().IMAGE_META_SIZE
    for bad in (0, -2, 2.0, True):
        with pytest.raises(ValueError, match="num_classes"):
            image_meta_size(bad)


def test_compose_layout_hand_built():
    meta = compose_image_meta(7, (480, 640, 3), (1024, 1024, 3), (192, 0, 832, 1024), 1.6,
                              [1, 1, 0, 1])
    assert meta.dtype == np.float32 and meta.shape == (16,)
    expected = [7, 480, 640, 3, 1024, 1024, 3, 192, 0, 832, 1024, 1.6, 1, 1, 0, 1]
    np.testing.assert_allclose(meta, np.array(expected, dtype=np.float32))


def test_numpy_round_trip():
    parsed = parse_image_meta(_two_metas())
    assert set(parsed) == {"image_id", "original_image_shape", "image_shape", "window",
                           "scale", "active_class_ids"}
    assert parsed["image_id"].tolist() == [7, 123456]
    assert parsed["original_image_shape"].tolist() == [[480, 640, 3], [100, 50, 3]]
    assert parsed["image_shape"].tolist() == [[1024, 1024, 3], [128, 128, 3]]
    assert parsed["window"].tolist() == [[192, 0, 832, 1024], [0, 32, 128, 96]]
    np.testing.assert_allclose(parsed["scale"], [1.6, 1.28], rtol=1e-6)
    assert parsed["active_class_ids"].tolist() == [[1, 1, 0, 1], [1, 0, 1, 1]]
    for key in ("image_id", "original_image_shape", "image_shape", "window",
                "active_class_ids"):
        assert parsed[key].dtype == np.int32, key
    assert parsed["scale"].dtype == np.float32


def test_numpy_parse_single_row():
    parsed = parse_image_meta(_two_metas()[1])
    assert parsed["image_id"].shape == () and int(parsed["image_id"]) == 123456
    assert parsed["window"].tolist() == [0, 32, 128, 96]


def test_compose_rejects_bad_lengths():
    good = dict(image_id=1, original_image_shape=(10, 10, 3), image_shape=(64, 64, 3),
                window=(0, 0, 64, 64), scale=1.0, active_class_ids=[1, 1])
    for field, bad in (("original_image_shape", (10, 10)), ("image_shape", (64, 64, 3, 1)),
                       ("window", (0, 0, 64)), ("active_class_ids", []),
                       ("active_class_ids", [[1, 1]]), ("scale", [1.0, 2.0])):
        with pytest.raises(ValueError, match=field):
            compose_image_meta(**{**good, field: bad})


def test_parse_rejects_meta_without_classes():
    with pytest.raises(ValueError, match="meta"):
        parse_image_meta(np.zeros((2, 12), np.float32))


def test_module_import_does_not_load_tensorflow():
    # A fresh interpreter: tensorflow may already be loaded in this one by other tests.
    code = ("import sys, mrcnn.data.image_meta, mrcnn.config; "
            "print('tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO_ROOT, check=True)
    assert result.stdout.strip() == "False"


def test_tf_parse_matches_numpy():
    import tensorflow as tf
    metas = _two_metas()
    graph = parse_image_meta_graph(tf.constant(metas))
    numpy_parsed = parse_image_meta(metas)
    assert set(graph) == set(numpy_parsed)
    for key, value in graph.items():
        assert value.dtype == tf.float32, key
        assert tuple(value.shape) == numpy_parsed[key].shape, key
        np.testing.assert_allclose(value.numpy(), numpy_parsed[key], rtol=1e-6, err_msg=key)


def test_tf_parse_inside_tf_function_with_unknown_batch():
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, 16], tf.float64)])
    def windows(meta):
        return parse_image_meta_graph(meta)["window"]

    out = windows(tf.constant(_two_metas(), tf.float64))
    assert out.dtype == tf.float32
    assert out.numpy().tolist() == [[192, 0, 832, 1024], [0, 32, 128, 96]]


def test_mold_unmold_round_trip():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(2, 8, 6, 3), dtype=np.uint8)
    images[0, 0, 0] = [0, 255, 0]
    molded = mold_image(images, MEAN)
    assert molded.dtype == np.float32 and molded.shape == images.shape
    np.testing.assert_allclose(molded[0, 0, 0], [-123.7, 138.2, -103.9], rtol=1e-6)
    restored = unmold_image(molded, MEAN)
    assert restored.dtype == np.uint8
    np.testing.assert_array_equal(restored, images)


def test_mold_accepts_config_like_classic():
    image = np.full((4, 4, 3), 200, np.uint8)
    config = Config()
    np.testing.assert_allclose(mold_image(image, config), mold_image(image, config.MEAN_PIXEL))
    np.testing.assert_array_equal(unmold_image(mold_image(image, config), config), image)


def test_unmold_clips_and_rounds():
    out = unmold_image(np.array([[[-200.0, 0.4999, 200.0]]]), [0.0, 99.2, 100.0])
    assert out.tolist() == [[[0, 100, 255]]]


def test_mold_rejects_channel_mismatch():
    with pytest.raises(ValueError, match="mean_pixel"):
        mold_image(np.zeros((4, 4, 1), np.uint8), MEAN)
