"""Tests for mrcnn.model.feature_conv: the filter gradient as matrix products."""
import numpy as np
import pytest

import keras
import tensorflow as tf

from mrcnn.model import feature_conv
from mrcnn.model.feature_conv import FeatureConv2D, gemm_filter_gradient, supports
from tests.model.conv_checks import outputs_and_gradients, xla_free_winograd_transform_op


@pytest.fixture(autouse=True)
def gemm_for_small_maps(monkeypatch):
    """The test maps are small: use the products whatever the size (MIN_GEMM_ROWS)."""
    monkeypatch.setattr(feature_conv, "MIN_GEMM_ROWS", 0)


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


CASES = [  # (kernel, strides, padding, input shape)
    ((3, 3), (1, 1), "same", (2, 9, 7, 5)),
    ((5, 3), (1, 1), "same", (1, 6, 8, 4)),
    ((1, 1), (1, 1), "valid", (2, 5, 5, 6)),
]
FALLBACK = [  # not eligible: the plain convolution and its gradient
    ((3, 3), (2, 2), "same", (1, 9, 9, 3)),
    ((7, 7), (2, 2), "valid", (1, 15, 15, 3)),
    ((3, 3), (1, 1), "valid", (1, 8, 8, 3)),
    ((1, 1), (2, 2), "valid", (2, 7, 6, 3)),  # strided 1 x 1: the strided copy costs more
]


def _pair(kernel, strides, padding, activation=None):
    plain = keras.layers.Conv2D(4, kernel, strides=strides, padding=padding,
                                activation=activation)
    ours = FeatureConv2D(4, kernel, strides=strides, padding=padding, activation=activation)
    return plain, ours


@pytest.mark.parametrize("kernel, strides, padding, shape", CASES + FALLBACK)
def test_outputs_and_all_gradients_equal_the_convolution(kernel, strides, padding, shape):
    plain, ours = _pair(kernel, strides, padding, activation="relu")
    x = _rand(*shape, seed=1)
    plain.build(shape)
    ours.build(shape)
    ours.set_weights([_rand(*w.shape, seed=2 + i) for i, w in enumerate(plain.get_weights())])
    plain.set_weights(ours.get_weights())
    for a, b in zip(outputs_and_gradients(plain, x), outputs_and_gradients(ours, x)):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
    assert [w.path.split("/")[-1] for w in ours.weights] == ["kernel", "bias"]


@pytest.mark.parametrize("kernel, strides, padding, shape", CASES)
def test_eligible_gradients_have_no_filter_backprop_op(kernel, strides, padding, shape):
    _, ours = _pair(kernel, strides, padding)
    ours.build(shape)
    types = _gradient_op_types(ours, shape)
    assert "Conv2DBackpropFilter" not in types and "MatMul" in types


def _gradient_op_types(layer, shape):
    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(x) ** 2)
        return tape.gradient(loss, layer.kernel)

    graph = step.get_concrete_function(tf.TensorSpec(shape, tf.float32)).graph
    return {op.type for op in graph.get_operations()}


def test_small_maps_keep_the_convolution_gradient(monkeypatch):
    monkeypatch.setattr(feature_conv, "MIN_GEMM_ROWS", 2 * 9 * 7 + 1)
    layer = FeatureConv2D(4, (3, 3), padding="same")
    types = _gradient_op_types(layer, (2, 9, 7, 5))  # 126 output pixels: below the threshold
    assert "Conv2DBackpropFilter" in types and "MatMul" not in types


def test_gemm_filter_gradient_false_keeps_the_convolution_gradient():
    layer = FeatureConv2D(4, (3, 3), padding="same", gemm_filter_gradient=False)
    types = _gradient_op_types(layer, (2, 9, 7, 5))  # eligible, and MIN_GEMM_ROWS is 0 here
    assert "Conv2DBackpropFilter" in types and "MatMul" not in types
    clone = FeatureConv2D.from_config(layer.get_config())
    assert clone.gemm_filter_gradient is False
    assert FeatureConv2D.from_config(FeatureConv2D(4, 3).get_config()).gemm_filter_gradient


def test_dynamic_shapes_choose_at_run_time(monkeypatch):
    monkeypatch.setattr(feature_conv, "MIN_GEMM_ROWS", 100)
    layer = FeatureConv2D(4, (3, 3), padding="same")
    plain = keras.layers.Conv2D(4, (3, 3), padding="same")
    plain.build((None, None, None, 3))
    layer.build((None, None, None, 3))
    plain.set_weights(layer.get_weights())

    @tf.function(input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)])
    def kernel_grad(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.sin(layer(x)))
        return tape.gradient(loss, layer.kernel)

    for shape in ((1, 5, 5, 3), (2, 10, 10, 3)):  # 25 and 200 output pixels: both branches
        x = tf.constant(_rand(*shape, seed=7))
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.sin(plain(x)))
        np.testing.assert_allclose(kernel_grad(x).numpy(),
                                   tape.gradient(loss, plain.kernel).numpy(),
                                   rtol=1e-4, atol=1e-5)


def test_fallback_cases_keep_the_convolution_gradient():
    for kernel, strides, padding, shape in FALLBACK:
        assert not supports(kernel, strides, padding, (1, 1), 1, "channels_last")
    assert not supports((3, 3), (1, 1), "same", (2, 2), 1, "channels_last")
    assert supports((3, 3), (1, 1), "same", (1, 1), 1, "channels_last")


def test_gemm_filter_gradient_of_a_strided_1x1_matches_tf():
    x = tf.constant(_rand(2, 7, 6, 4, seed=8))  # odd size: ceil(7 / 2) output rows
    dy = tf.constant(_rand(2, 4, 3, 5, seed=9))
    expected = tf.compat.v1.nn.conv2d_backprop_filter(x, [1, 1, 4, 5], dy, [1, 2, 2, 1], "VALID")
    got = gemm_filter_gradient(x, dy, (1, 1), (2, 2))
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)


def test_gemm_filter_gradient_matches_tf_backprop_filter_directly():
    x = tf.constant(_rand(2, 10, 12, 6, seed=3))
    dy = tf.constant(_rand(2, 10, 12, 5, seed=4))
    expected = tf.compat.v1.nn.conv2d_backprop_filter(x, [3, 3, 6, 5], dy, [1, 1, 1, 1], "SAME")
    got = gemm_filter_gradient(x, dy, (3, 3), (1, 1))
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)


def test_config_round_trip_and_mixed_precision():
    layer = FeatureConv2D(3, (3, 3), padding="same", name="fpn_p2", dtype="mixed_bfloat16")
    clone = FeatureConv2D.from_config(layer.get_config())
    assert clone.name == "fpn_p2" and clone.padding == "same"
    x = tf.constant(_rand(1, 6, 6, 2, seed=5))
    with tf.GradientTape() as tape:
        y = layer(x)
        loss = tf.reduce_sum(tf.cast(y, tf.float32))
    assert y.dtype == tf.bfloat16
    grad = tape.gradient(loss, layer.kernel)
    assert grad.dtype == tf.float32 and np.isfinite(grad.numpy()).all()


def test_training_over_256_channels_takes_winograd_without_xla():
    """In training, a 3 x 3 convolution over 256 channels and 2048 output pixels runs by the
    XLA-free F(4 x 4, 3 x 3) (mrcnn/model/winograd_matrix.py): outputs and all gradients equal
    the convolution's to about 1e-5 of their range, and no convolution op is left."""
    shape = (2, 32, 32, 256)
    plain, ours = _pair((3, 3), (1, 1), "same")
    plain.build(shape)
    ours.build(shape)
    ours.set_weights([_rand(*w.shape, seed=5 + i) * 0.05
                      for i, w in enumerate(plain.get_weights())])
    plain.set_weights(ours.get_weights())
    x = tf.constant(_rand(*shape, seed=4))

    def results(layer):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * tf.reshape(tf.range(tf.size(y), dtype=y.dtype) / 1e3,
                                                tf.shape(y)))
        return [y] + tape.gradient(loss, [x, layer.kernel, layer.bias])

    for name, got, want in zip(("y", "dx", "dkernel", "dbias"), results(ours), results(plain)):
        np.testing.assert_allclose(got, want, rtol=0, atol=5e-5 * np.abs(want).max(),
                                   err_msg=name)

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(ours(x, training=True) ** 2)
        return tape.gradient(loss, [x, ours.kernel])

    types = {op.type for op in step.get_concrete_function(
        tf.TensorSpec(shape, tf.float32)).graph.get_operations()}
    assert xla_free_winograd_transform_op() in types
    assert not {"Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter"} & types
