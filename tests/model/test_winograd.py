"""Tests for mrcnn.model.winograd: 3 x 3 convolutions by F(2 x 2, 3 x 3)."""
import numpy as np
import pytest

import keras
import tensorflow as tf

from mrcnn import native
from mrcnn.model import winograd
from mrcnn.model.feature_conv import FeatureConv2D
from mrcnn.model.winograd import (direct_convolutions, winograd_applies, winograd_conv2d,
                                  winograd_conv2d_numpy)
from tests.model.conv_checks import outputs_and_gradients


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


SHAPES = [(1, 8, 6, 3), (1, 9, 7, 3), (2, 5, 11, 4), (1, 1, 1, 2), (3, 2, 3, 5)]


@pytest.mark.parametrize("output_tile, tolerance", [(2, 2e-5), (4, 1e-4)])
@pytest.mark.parametrize("shape", SHAPES + [(1, 13, 10, 3), (2, 4, 4, 2)])
def test_equals_the_convolution_and_the_numpy_reference(shape, output_tile, tolerance):
    x, w, b = _rand(*shape, seed=1), _rand(3, 3, shape[-1], 6, seed=2), _rand(6, seed=3)
    expected = tf.nn.bias_add(tf.nn.conv2d(x, w, 1, "SAME"), b).numpy()
    got = winograd_conv2d(tf.constant(x), tf.constant(w), tf.constant(b), output_tile)
    assert got.shape == expected.shape and got.dtype == tf.float32
    np.testing.assert_allclose(got.numpy(), expected, rtol=tolerance, atol=tolerance)
    # The float64 tile-by-tile reference is the algorithm itself, written out.
    np.testing.assert_allclose(winograd_conv2d_numpy(x, w, b, output_tile), expected,
                               rtol=1e-5, atol=2e-5)


def test_f4x4_on_a_wide_map_and_its_gradient(monkeypatch):
    """F(4 x 4, 3 x 3) over 256 channels, in chunks: about 1e-5 of the range from the direct
    convolution; its gradient (F(2 x 2, 3 x 3)'s) equals the convolution's."""
    x = tf.constant(_rand(1, 20, 18, 256, seed=12))
    w = tf.constant(_rand(3, 3, 256, 8, seed=13) * 0.05)
    expected = tf.nn.conv2d(x, w, 1, "SAME").numpy()
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 1)  # one tile row per chunk
    # A loss linear in y, so that the gradients do not depend on the forward pass's rounding.
    weights = tf.constant(_rand(1, 20, 18, 8, seed=14))
    with tf.GradientTape() as tape:
        tape.watch([x, w])
        y = winograd_conv2d(x, w, output_tile=4)
        loss = tf.reduce_sum(y * weights)
    dx, dw = tape.gradient(loss, [x, w])
    scale = np.abs(expected).max()
    assert np.abs(y.numpy() - expected).max() < 5e-5 * scale
    with tf.GradientTape() as tape:
        tape.watch([x, w])
        loss = tf.reduce_sum(tf.nn.conv2d(x, w, 1, "SAME") * weights)
    for got, want in zip((dx, dw), tape.gradient(loss, [x, w])):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="output_tile"):
        winograd_conv2d(x, w, output_tile=3)


def _loss_gradients(conv, x, w, b):
    """``[y, dx, dw, db]`` of ``sum(conv(x, w, b) * weights)``, weights all different."""
    x, w, b = (tf.constant(t) for t in (x, w, b))
    with tf.GradientTape() as tape:
        tape.watch([x, w, b])
        y = conv(x, w, b)
        loss = tf.reduce_sum(y * tf.constant(_rand(*y.shape, seed=11)))
    return [y.numpy()] + [g.numpy() for g in tape.gradient(loss, [x, w, b])]


def _direct(x, w, b):
    return tf.nn.bias_add(tf.nn.conv2d(x, w, 1, "SAME"), b)


@pytest.mark.parametrize("shape", SHAPES)
def test_gradients_equal_the_convolutions(shape):
    args = _rand(*shape, seed=1), _rand(3, 3, shape[-1], 6, seed=2), _rand(6, seed=3)
    for got, expected in zip(_loss_gradients(winograd_conv2d, *args),
                             _loss_gradients(_direct, *args)):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=5e-5)


def test_gradients_without_bias_and_in_chunks(monkeypatch):
    x, w = tf.constant(_rand(2, 11, 6, 3, seed=4)), tf.constant(_rand(3, 3, 3, 4, seed=5))

    def gradients():
        with tf.GradientTape() as tape:
            tape.watch([x, w])
            loss = tf.reduce_sum(tf.sin(winograd_conv2d(x, w)))
        return [g.numpy() for g in tape.gradient(loss, [x, w])]

    with tf.GradientTape() as tape:
        tape.watch([x, w])
        loss = tf.reduce_sum(tf.sin(tf.nn.conv2d(x, w, 1, "SAME")))
    expected = [g.numpy() for g in tape.gradient(loss, [x, w])]
    whole = gradients()
    monkeypatch.setattr(winograd, "GRADIENT_CHUNK_BYTES", 1)  # six chunks, one tile row each
    chunked = gradients()
    for a, b, c in zip(whole, chunked, expected):
        np.testing.assert_allclose(a, c, rtol=1e-5, atol=5e-5)
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)  # dkernel: summed per chunk


@pytest.mark.parametrize("shape", [(1, 9, 7, 3), (2, 16, 5, 4)])
def test_chunks_of_tile_rows_give_the_same_output(monkeypatch, shape):
    x, w = tf.constant(_rand(*shape, seed=4)), tf.constant(_rand(3, 3, shape[-1], 5, seed=5))
    whole = winograd_conv2d(x, w).numpy()
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 1)  # one tile row per chunk
    assert len(winograd._tile_row_chunks(shape[0], (shape[1] + 1) // 2, (shape[2] + 1) // 2,
                                         5, 4, winograd.CHUNK_BYTES)) == (shape[1] + 1) // 2
    np.testing.assert_allclose(winograd_conv2d(x, w).numpy(), whole, rtol=1e-6, atol=1e-6)


def test_dynamic_shapes_and_bfloat16():
    w = tf.constant(_rand(3, 3, 4, 5, seed=6))

    @tf.function(input_signature=[tf.TensorSpec((None, None, None, 4), tf.float32)])
    def conv(x):
        return winograd_conv2d(x, w)

    @tf.function(input_signature=[tf.TensorSpec((None, None, None, 4), tf.float32)])
    def input_gradient(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.sin(winograd_conv2d(x, w)))
        return tape.gradient(loss, x)

    for shape in ((1, 9, 6, 4), (2, 4, 5, 4)):
        x = tf.constant(_rand(*shape, seed=7))
        np.testing.assert_allclose(conv(x).numpy(), tf.nn.conv2d(x, w, 1, "SAME").numpy(),
                                   rtol=1e-5, atol=2e-5)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.sin(tf.nn.conv2d(x, w, 1, "SAME")))
        np.testing.assert_allclose(input_gradient(x).numpy(), tape.gradient(loss, x).numpy(),
                                   rtol=1e-5, atol=5e-5)
    x16 = tf.cast(_rand(1, 6, 6, 4, seed=8), tf.bfloat16)
    y16 = winograd_conv2d(x16, tf.cast(w, tf.bfloat16))
    assert y16.dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(y16, tf.float32).numpy(),
                               tf.nn.conv2d(tf.cast(x16, tf.float32), w, 1, "SAME").numpy(),
                               rtol=0.05, atol=0.1)


def test_which_convolutions_use_it(monkeypatch):
    def applies(shape, kernel=(3, 3), strides=(1, 1), padding="same"):
        return winograd_applies(shape, kernel, strides, padding, (1, 1), 1, "channels_last")

    assert applies((1, 64, 64, 256)) and applies((None, None, None, 512))
    assert not applies((1, 64, 64, winograd.MIN_CHANNELS - 1))
    assert not applies((1, 64, 64, None))
    assert not applies((1, 64, 64, 256), kernel=(5, 5))
    assert not applies((1, 64, 64, 256), strides=(2, 2))
    assert not applies((1, 64, 64, 256), padding="valid")
    with direct_convolutions():
        assert not applies((1, 64, 64, 256))
    assert applies((1, 64, 64, 256))
    # Training: only with the compiled training form switched on (XLA's memory, module
    # docstring), over maps whose size is known when traced (the chunks bound the memory),
    # from MIN_TRAINING_MAP pixels per image.
    train = dict(kernel_size=(3, 3), strides=(1, 1), padding="same", dilation_rate=(1, 1),
                 groups=1, data_format="channels_last", training=True)
    assert winograd.COMPILED_TRAINING is False
    assert not winograd_applies((2, 128, 128, 256), **train)
    monkeypatch.setattr(winograd, "COMPILED_TRAINING", True)
    assert winograd_applies((2, 128, 128, 256), **train)  # P2 of 512 x 512 batch 2
    assert not winograd_applies((None, 128, 128, 256), **train)
    assert not winograd_applies((2, 128, 128, 128), **train)
    assert winograd_applies((2, 64, 64, 256), **train)  # P3
    small = (8, 32, 32, 256)  # P2 of 128 x 128 batch 8: under MIN_TRAINING_MAP
    assert 32 * 32 < winograd.MIN_TRAINING_MAP <= 64 * 64
    assert not winograd_applies(small, **train)
    assert winograd_applies(small, **{**train, "training": False})


def _op_types(fn, shape):
    graph = tf.function(fn).get_concrete_function(tf.TensorSpec(shape, tf.float32)).graph
    return {op.type for op in graph.get_operations()}


@pytest.fixture(scope="module")
def conv_pair():
    """A FeatureConv2D over 256 channels and the keras Conv2D with its weights."""
    shape = (1, 6, 5, 256)
    ours = FeatureConv2D(8, (3, 3), padding="same", activation="relu")
    plain = keras.layers.Conv2D(8, (3, 3), padding="same", activation="relu")
    ours.build(shape)
    plain.build(shape)
    ours.set_weights([_rand(*w.shape, seed=9 + i) * 0.1 for i, w in
                      enumerate(plain.get_weights())])
    plain.set_weights(ours.get_weights())
    return shape, ours, plain


def _step_op_types(layer, shape):
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x, training=True))
        return tape.gradient(loss, [x, layer.kernel])
    return _op_types(step, shape)


def test_feature_conv_uses_it_with_its_gradient_in_training(conv_pair, monkeypatch):
    shape, ours, plain = conv_pair
    assert "Conv2D" in _step_op_types(ours, shape)   # by default training is direct
    monkeypatch.setattr(winograd, "COMPILED_TRAINING", True)
    monkeypatch.setattr(winograd, "MIN_TRAINING_MAP", 6 * 5)
    inference = _op_types(lambda x: ours(x, training=False), shape)
    assert "BatchMatMulV2" in inference and "Conv2D" not in inference
    step = _step_op_types(ours, shape)
    assert "BatchMatMulV2" in step
    assert not {"Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter"} & step
    # Maps below MIN_TRAINING_MAP train by the convolution; nested models pass the
    # training flag down (the RPN is a model of its own).
    monkeypatch.setattr(winograd, "MIN_TRAINING_MAP", 6 * 5 + 1)
    assert "Conv2D" in _step_op_types(ours, shape)
    inputs = keras.Input(shape[1:])
    nested = keras.Model(inputs, ours(inputs))
    assert "BatchMatMulV2" not in _op_types(lambda x: nested(x, training=True), shape)
    assert "BatchMatMulV2" in _op_types(lambda x: nested(x, training=False), shape)


def test_feature_conv_outputs_and_gradients_equal_the_convolution(conv_pair):
    shape, ours, plain = conv_pair
    x = _rand(*shape, seed=12)
    np.testing.assert_allclose(ours(x, training=False).numpy(), plain(x).numpy(),
                               rtol=1e-4, atol=1e-4)
    # outputs_and_gradients calls the layer without a training flag: Winograd's forward pass
    # and gradient (the same as in training over this static shape).
    for a, b in zip(outputs_and_gradients(plain, x), outputs_and_gradients(ours, x)):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("native_transforms", [False, True])
@pytest.mark.parametrize("defer", [False, True])
def test_the_kernel_transform_waits_for_the_input_only_when_deferred(defer, native_transforms,
                                                                     monkeypatch):
    """In training the kernel transform is tied to x (not made at the start of the step and
    held to the memory peak); at inference it may run as early as the executor likes. With
    the XLA-compiled transforms it is a compiled call taking k, with the native ones
    (mrcnn/native) a product by kron(G, G) of k reshaped."""
    if native_transforms and native.winograd_ops() is None:
        pytest.skip("the native library is not built here (tests/native)")
    monkeypatch.setattr(native, "ENABLED", native_transforms)

    def fn(x, k):
        return winograd_conv2d(tf.nn.relu(x), k, output_tile=4, defer_kernel_transform=defer)

    graph = tf.function(fn).get_concrete_function(
        tf.TensorSpec([1, 8, 8, 4]), tf.TensorSpec([3, 3, 4, 5])).graph
    kernel = graph.inputs[1].name
    takes_kernel = [op for op in graph.get_operations()
                    if kernel in [t.name for t in op.inputs]]
    kinds = ("Reshape",) if native_transforms else ("PartitionedCall", "StatefulPartitionedCall")
    transforms = [op for op in takes_kernel if op.type in kinds]
    assert len(transforms) == 1
    assert ("Relu" in _ancestor_types(transforms[0])) == defer


def _ancestor_types(op):
    """Types of the ops that ``op`` waits for, through inputs and control inputs."""
    seen, todo = set(), list(op.control_inputs) + [t.op for t in op.inputs]
    while todo:
        current = todo.pop()
        if current.name not in seen:
            seen.add(current.name)
            todo += list(current.control_inputs) + [t.op for t in current.inputs]
    return {op.graph.get_operation_by_name(name).type for name in seen}
