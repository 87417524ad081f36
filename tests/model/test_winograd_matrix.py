"""Tests for mrcnn.model.winograd_matrix: Winograd's F(m x m, 3 x 3) without XLA, forward and
gradient, against the direct convolution and the NumPy tile-by-tile reference."""
import numpy as np
import pytest

import tensorflow as tf

from mrcnn import native
from mrcnn.model import winograd
from mrcnn.model.winograd import winograd_conv2d, winograd_conv2d_numpy
from mrcnn.model.winograd_matrix import matrix_winograd_conv2d
from tests.model.conv_checks import xla_compiled_calls


@pytest.fixture(autouse=True, params=["native transforms", "patches"])
def transforms(request, monkeypatch):
    """Each test twice: with mrcnn's native transforms (mrcnn/native, where built), which the
    XLA-free form uses in float32, and with its own patches and Kronecker products."""
    if request.param == "patches":
        monkeypatch.setattr(native, "ENABLED", False)
    elif native.winograd_ops() is None:
        pytest.skip("the native library is not built here (tests/native)")
    return request.param


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _compiled_calls(fn, *specs):
    """Ops of ``fn``'s traced graph that call an XLA-compiled function."""
    return xla_compiled_calls(tf.function(fn).get_concrete_function(*specs).graph)


def _gradients(conv, x, k, b, dy):
    """``(y, dx, dk, db)`` of ``sum(conv(x, k, b) * dy)``."""
    x, k, b = (tf.Variable(v) for v in (x, k, b))
    with tf.GradientTape() as tape:
        y = conv(x, k, b)
        loss = tf.reduce_sum(y * dy)
    return [y.numpy()] + [g.numpy() for g in tape.gradient(loss, [x, k, b])]


def _direct(x, k, b):
    return tf.nn.bias_add(tf.nn.conv2d(x, k, 1, "SAME"), b)


@pytest.mark.parametrize("shape, output_tile", [((2, 13, 10, 8), 4), ((1, 16, 16, 4), 2),
                                                ((3, 7, 9, 5), 4)])
def test_the_forward_pass_equals_the_reference(shape, output_tile, monkeypatch):
    x, k = _rand(*shape, seed=31), _rand(3, 3, shape[3], 6, seed=32) * 0.2
    b = _rand(6, seed=33)
    want = winograd_conv2d_numpy(x, k, b, output_tile=output_tile)
    got = winograd_conv2d(tf.constant(x), tf.constant(k), tf.constant(b),
                          output_tile=output_tile, compiled=False)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-5)
    # Dynamic shapes too, and no XLA-compiled call in the graph (the compiled form has some).
    spec = [tf.TensorSpec([None, None, None, shape[3]]), tf.TensorSpec(k.shape),
            tf.TensorSpec([6])]
    dynamic = tf.function(lambda x, k, b: winograd_conv2d(x, k, b, output_tile, compiled=False),
                          input_signature=spec)
    np.testing.assert_allclose(dynamic(x, k, b), want, rtol=1e-5, atol=2e-5)
    assert not _compiled_calls(lambda x, k, b: winograd_conv2d(
        x, k, b, output_tile, compiled=False), *spec)
    monkeypatch.setattr(native, "ENABLED", False)  # else its transforms are native ops
    assert _compiled_calls(lambda x, k, b: winograd_conv2d(x, k, b, output_tile), *spec)


def test_the_forward_pass_in_chunks_without_bias(monkeypatch):
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 4096)
    x, k = _rand(2, 30, 22, 8, seed=34), _rand(3, 3, 8, 6, seed=35) * 0.2
    assert len(winograd._Tiling(tf.constant(x), 6, winograd.CHUNK_BYTES, 4).chunks) > 4
    np.testing.assert_allclose(matrix_winograd_conv2d(tf.constant(x), tf.constant(k)),
                               winograd_conv2d_numpy(x, k, output_tile=4),
                               rtol=1e-5, atol=5e-5)


@pytest.mark.parametrize("shape, output_tile", [((2, 12, 8, 16), 4), ((1, 13, 10, 8), 4),
                                                ((3, 5, 7, 6), 2), ((1, 1, 1, 3), 4)])
def test_outputs_and_gradients_equal_the_convolution(shape, output_tile):
    """Outputs, input, kernel and bias gradients of the matrix form equal the direct
    convolution's to float32 rounding of F(m x m, 3 x 3): whole and partial tiles, a map
    smaller than one tile."""
    x, k = _rand(*shape, seed=41), _rand(3, 3, shape[3], 5, seed=42) * 0.2
    b, dy = _rand(5, seed=43), _rand(*shape[:3], 5, seed=44)
    want = _gradients(_direct, x, k, b, dy)
    got = _gradients(lambda x, k, b: matrix_winograd_conv2d(x, k, b, output_tile), x, k, b, dy)
    for name, g, w in zip(("y", "dx", "dkernel", "dbias"), got, want):
        assert g.shape == w.shape, name
        scale = np.abs(w).max()
        np.testing.assert_allclose(g, w, rtol=0, atol=3e-5 * scale, err_msg=name)


def test_gradients_in_chunks_and_with_a_batch_unknown_when_traced(monkeypatch):
    """The gradient's chunks (several tile rows each, overlapping rows of x) add up to the
    whole; a batch and map size unknown when traced run as one chunk, same result."""
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 4096)
    monkeypatch.setattr(winograd, "GRADIENT_CHUNK_BYTES", 4096)
    shape = (2, 26, 14, 8)
    x, k = _rand(*shape, seed=51), _rand(3, 3, 8, 8, seed=52) * 0.2
    b, dy = _rand(8, seed=53), _rand(*shape[:3], 8, seed=54)
    assert len(winograd._Tiling(tf.constant(x), 8, winograd.GRADIENT_CHUNK_BYTES, 4).chunks) > 3
    want = _gradients(_direct, x, k, b, dy)
    got = _gradients(lambda x, k, b: matrix_winograd_conv2d(x, k, b), x, k, b, dy)

    spec = [tf.TensorSpec([None, None, None, 8]), tf.TensorSpec(k.shape), tf.TensorSpec([8])]

    @tf.function(input_signature=spec + [tf.TensorSpec([None, None, None, 8])])
    def dynamic(x, k, b, dy):
        with tf.GradientTape() as tape:
            tape.watch([x, k, b])
            y = matrix_winograd_conv2d(x, k, b)
            loss = tf.reduce_sum(y * dy)
        return [y] + tape.gradient(loss, [x, k, b])

    unknown = [t.numpy() for t in dynamic(x, k, b, dy)]
    for name, g, u, w in zip(("y", "dx", "dkernel", "dbias"), got, unknown, want):
        scale = np.abs(w).max()
        np.testing.assert_allclose(g, w, rtol=0, atol=3e-5 * scale, err_msg=name)
        np.testing.assert_allclose(u, w, rtol=0, atol=3e-5 * scale, err_msg=name)


def test_which_training_convolutions_take_it(monkeypatch):
    args = dict(kernel_size=(3, 3), strides=(1, 1), padding="same", dilation_rate=(1, 1),
                groups=1, data_format="channels_last")
    applies = winograd.matrix_training_applies
    assert applies((2, 32, 32, 256), dtype="float32", **args)       # 2048 output pixels
    assert not applies((2, 16, 16, 512), dtype="float32", **args)   # stage 5 at 512 x 512
    assert applies((None, 14, 14, 256), dtype="float32", **args)    # mask head, ROIs unknown
    assert not applies((2, 32, 32, 128), dtype="float32", **args)   # too few channels
    assert not applies((2, 32, 32, 256), dtype="float16", **args)   # F(4 x 4)'s coefficients
    assert not applies((2, 32, 32, 256), dtype="float32",
                       **dict(args, strides=(2, 2)))
    monkeypatch.setattr(winograd, "MATRIX_TRAINING", False)
    assert not applies((2, 32, 32, 256), dtype="float32", **args)
