"""Tests for mrcnn.model.row_bands: a single image's convolution as a batch of row bands."""
import numpy as np
import pytest

import keras
import tensorflow as tf

from mrcnn.model import feature_conv, row_bands
from mrcnn.model.feature_conv import FeatureConv2D
from mrcnn.model.row_bands import row_band_conv2d, row_bands_apply
from tests.model.conv_checks import outputs_and_gradients


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


@pytest.mark.parametrize("shape, kernel, bands", [
    ((1, 10, 7, 3), (3, 3), 2),
    ((1, 9, 7, 3), (3, 3), 2),   # odd height: the last band is padded, the rows cut
    ((1, 13, 11, 2), (5, 3), 3),  # taller kernel: 2 halo rows per side
    ((3, 8, 5, 4), (3, 3), 2),   # several images: bands stay image-major
    ((1, 1, 4, 2), (3, 3), 2),   # fewer rows than bands
])
def test_equals_the_same_convolution(shape, kernel, bands):
    x = tf.constant(_rand(*shape, seed=1))
    w = tf.constant(_rand(*kernel, shape[-1], 6, seed=2))
    b = tf.constant(_rand(6, seed=3))
    expected = tf.nn.bias_add(tf.nn.conv2d(x, w, 1, "SAME"), b)
    got = row_band_conv2d(x, w, b, bands=bands)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)


def test_dynamic_shapes():
    w = tf.constant(_rand(3, 3, 4, 5, seed=4))

    @tf.function(input_signature=[tf.TensorSpec((None, None, None, 4), tf.float32)])
    def banded(x):
        return row_band_conv2d(x, w)

    for shape in ((1, 9, 6, 4), (2, 12, 5, 4), (1, 2, 3, 4)):
        x = tf.constant(_rand(*shape, seed=5))
        np.testing.assert_allclose(banded(x).numpy(), tf.nn.conv2d(x, w, 1, "SAME").numpy(),
                                   rtol=1e-5, atol=1e-5)
    assert banded.get_concrete_function().structured_outputs.shape.as_list() == [
        None, None, None, 5]


def test_which_convolutions_run_in_bands(monkeypatch):
    def applies(shape, kernel=(3, 3), strides=(1, 1), padding="same", dilation=(1, 1)):
        return row_bands_apply(shape, kernel, strides, padding, dilation, 1, "channels_last")

    assert applies((1, 256, 256, 256))
    assert applies((1, None, None, 256))        # height unknown when traced
    assert applies((1, 32, 32, 64), kernel=(5, 5))
    assert not applies((2, 256, 256, 256))      # oneDNN's fast kernel takes batches of 2
    assert not applies((None, 256, 256, 256))   # batch unknown when traced
    assert not applies((1, 256, 256, 256), kernel=(1, 1))
    assert not applies((1, 256, 256, 256), strides=(2, 2))
    # Strided 1 x 1: over a known height that the bands divide into whole strides.
    assert applies((1, 256, 256, 256), kernel=(1, 1), strides=(2, 2))
    assert applies((1, 256, 255, 256), kernel=(1, 1), strides=(2, 2), padding="valid")
    assert not applies((1, 254, 256, 256), kernel=(1, 1), strides=(2, 2))  # 127 rows a band
    assert not applies((1, None, 256, 256), kernel=(1, 1), strides=(2, 2))
    assert not applies((2, 256, 256, 256), kernel=(1, 1), strides=(2, 2))
    assert not applies((1, 256, 256, 256), kernel=(1, 1), strides=(2, 1))
    assert not applies((1, 256, 256, 256), padding="valid")
    assert not applies((1, 256, 256, 256), dilation=(2, 2))
    assert not applies((1, row_bands.MIN_ROWS - 1, 64, 64))
    assert not row_bands_apply((1, 64, 64, 8), (3, 3), (1, 1), "same", (1, 1), 1,
                               "channels_first")
    monkeypatch.setattr(row_bands, "ROW_BANDS", False)
    assert not applies((1, 256, 256, 256))


def _conv_batches(layer, shape):
    """Batch sizes of the forward convolutions in ``layer``'s traced call on ``shape``."""
    graph = tf.function(layer).get_concrete_function(tf.TensorSpec(shape, tf.float32)).graph
    return [op.inputs[0].shape[0] for op in graph.get_operations() if op.type == "Conv2D"]


def _same_weights(shape, kernel, **kwargs):
    """A keras Conv2D and a FeatureConv2D of 4 filters built on ``shape``, same random weights."""
    plain = keras.layers.Conv2D(4, kernel, **kwargs)
    ours = FeatureConv2D(4, kernel, **kwargs)
    plain.build(shape)
    ours.build(shape)
    ours.set_weights([_rand(*w.shape, seed=6 + i) for i, w in enumerate(plain.get_weights())])
    plain.set_weights(ours.get_weights())
    return plain, ours


@pytest.mark.parametrize("gemm_filter_gradient", [True, False])
def test_feature_conv_on_one_image_equals_the_convolution(monkeypatch, gemm_filter_gradient):
    """FeatureConv2D on a batch of one: bands in the forward pass, every gradient the
    convolution's, with the custom filter gradient and without."""
    monkeypatch.setattr(feature_conv, "GEMM_FILTER_GRADIENT", gemm_filter_gradient)
    monkeypatch.setattr(feature_conv, "MIN_GEMM_ROWS", 0)
    shape = (1, 11, 9, 5)
    plain, ours = _same_weights(shape, (3, 3), padding="same", activation="relu")
    assert _conv_batches(ours, shape) == [row_bands.BANDS]
    x = _rand(*shape, seed=8)
    for a, b in zip(outputs_and_gradients(plain, x), outputs_and_gradients(ours, x)):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape, strides", [((1, 12, 9, 5), (2, 2)), ((1, 12, 7, 3), (3, 3))])
def test_strided_1x1_on_one_image_equals_the_convolution(shape, strides):
    plain, ours = _same_weights(shape, (1, 1), strides=strides, activation="relu")
    assert _conv_batches(ours, shape) == [row_bands.BANDS]
    x = _rand(*shape, seed=10)
    for a, b in zip(outputs_and_gradients(plain, x), outputs_and_gradients(ours, x)):
        assert a.shape == b.shape
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)


def test_feature_conv_keeps_the_plain_convolution_for_batches(monkeypatch):
    layer = FeatureConv2D(4, (3, 3), padding="same")
    layer.build((None, 12, 12, 3))
    assert _conv_batches(layer, (2, 12, 12, 3)) == [2]
    assert _conv_batches(layer, (1, 12, 12, 3)) == [row_bands.BANDS]
    monkeypatch.setattr(row_bands, "ROW_BANDS", False)
    assert _conv_batches(layer, (1, 12, 12, 3)) == [1]
