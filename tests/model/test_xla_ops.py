"""XLA-compatible RoIAlign (gather four neighbours + bilinear) against tf.image.crop_and_resize."""
import numpy as np
import tensorflow as tf

from mrcnn.model.roi_align import PyramidROIAlign
from mrcnn.model.xla_ops import crop_and_resize, multilevel_crop_and_resize


def _boxes(rng, b, r):
    # Boxes inside, across and outside the image (extrapolation), plus degenerate ones.
    y = np.sort(rng.uniform(-0.3, 1.3, size=(b, r, 2)), axis=-1)
    x = np.sort(rng.uniform(-0.3, 1.3, size=(b, r, 2)), axis=-1)
    boxes = np.stack([y[..., 0], x[..., 0], y[..., 1], x[..., 1]], axis=-1).astype(np.float32)
    boxes[:, 0] = 0.0
    boxes[:, 1] = [0.25, 0.25, 0.25, 0.75]
    return boxes


def test_crop_and_resize_matches_tf_and_compiles():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(2, 9, 13, 3)).astype(np.float32)
    boxes = _boxes(rng, 2, 6)
    for crop in ((7, 7), (1, 1), (3, 5)):
        expected = tf.image.crop_and_resize(images, boxes.reshape(-1, 4),
                                            np.repeat(np.arange(2), 6), crop).numpy()
        got = tf.function(lambda i, b: crop_and_resize(i, b, crop), jit_compile=True)(
            images, boxes).numpy()
        np.testing.assert_allclose(got.reshape(expected.shape), expected, atol=1e-5)


def test_multilevel_crop_matches_each_level_and_gradients_flow():
    rng = np.random.default_rng(1)
    maps = [tf.constant(rng.normal(size=(2, s, s, 4)).astype(np.float32)) for s in (16, 8, 4)]
    boxes = _boxes(rng, 2, 5)
    levels = rng.integers(0, 3, size=(2, 5)).astype(np.int32)
    with tf.GradientTape() as tape:
        tape.watch(maps)
        got = multilevel_crop_and_resize(maps, boxes, levels, (3, 3))
        loss = tf.reduce_sum(got)
    for b in range(2):
        for r in range(5):
            expected = tf.image.crop_and_resize(maps[levels[b, r]], boxes[b, r][None], [b],
                                                (3, 3))[0]
            np.testing.assert_allclose(got[b, r], expected, atol=1e-5)
    grads = tape.gradient(loss, maps)
    assert all(g is not None for g in grads) and float(tf.reduce_sum(grads[0])) != 0.0


def test_pyramid_roi_align_xla_variant_equals_the_classic_one():
    rng = np.random.default_rng(2)
    maps = [rng.normal(size=(1, s, s, 4)).astype(np.float32) for s in (32, 16, 8, 4)]
    boxes = np.clip(_boxes(rng, 1, 8), 0.0, 1.0)
    meta = np.zeros((1, 14), np.float32)
    meta[0, 4:7] = [128, 128, 3]  # image_shape of the molded image
    inputs = [boxes, meta] + maps
    classic = PyramidROIAlign(7)(inputs).numpy()
    xla = PyramidROIAlign(7, xla_compatible=True)
    np.testing.assert_allclose(xla(inputs).numpy(), classic, atol=1e-5)
    assert PyramidROIAlign.from_config(xla.get_config()).xla_compatible
