"""Tests for mrcnn.model.layers.WindowConv2D: the head's "fully connected" convolutions as GEMMs.

The layer must be the convolution in everything but speed: same outputs and gradients (input and
kernel) as ``keras.layers.Conv2D`` with the same weights, the same weight names and shapes, the
convolution itself for inputs whose window the kernel does not cover.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn.model.heads import fpn_classifier_graph
from mrcnn.model.layers import WindowConv2D
from tests.model.conv_checks import outputs_and_gradients


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _pair(filters, kernel_size, input_shape, **kwargs):
    """A WindowConv2D and a plain Conv2D with the same (random, non-zero bias) weights."""
    window = WindowConv2D(filters, kernel_size, **kwargs)
    window.build((None,) + input_shape)
    rng = np.random.default_rng(1)
    window.set_weights([rng.normal(size=w.shape).astype("float32") for w in window.weights])
    plain = keras.layers.Conv2D(filters, kernel_size, **kwargs)
    plain.build((None,) + input_shape)
    plain.set_weights(window.get_weights())
    return window, plain


@pytest.mark.parametrize("kernel_size,input_shape,filters", [
    ((7, 7), (7, 7, 12), 10),     # mrcnn_class_conv1: pool-sized valid conv
    ((1, 1), (1, 1, 16), 9),      # mrcnn_class_conv2: 1x1 conv over a 1x1 map
    ((3, 5), (3, 5, 4), 6),       # a non-square window
])
def test_window_conv_equals_conv2doutputs_and_gradients(kernel_size, input_shape, filters):
    window, plain = _pair(filters, kernel_size, input_shape, padding="valid", activation="relu")
    x = _rand(5, *input_shape, seed=3)
    got = outputs_and_gradients(window, x)
    want = outputs_and_gradients(plain, x)
    assert got[0].shape == (5, 1, 1, filters)
    for name, g, w in zip(("output", "d input", "d kernel", "d bias"), got, want):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-4, err_msg=name)
    assert np.abs(got[2]).sum() > 0  # the loss reaches the kernel


def test_window_conv_runs_as_matmul_not_conv():
    """The covered-window case has no convolution op in its graph; other inputs do."""
    layer, _ = _pair(4, (7, 7), (7, 7, 3), padding="valid")

    def op_types(shape):
        fn = tf.function(lambda x: layer(x)).get_concrete_function(
            tf.TensorSpec(shape, tf.float32))
        return {op.type for op in fn.graph.get_operations()}

    covered = op_types((None, 7, 7, 3))
    assert "MatMul" in covered and not any("Conv" in t for t in covered)
    assert any("Conv2D" in t for t in op_types((None, 9, 9, 3)))


def test_window_conv_falls_back_to_convolution_elsewhere():
    window, plain = _pair(4, (3, 3), (9, 9, 2), padding="valid")
    x = _rand(2, 9, 9, 2)
    np.testing.assert_allclose(np.asarray(window(x)), np.asarray(plain(x)), rtol=1e-5, atol=1e-5)
    same_w, same_p = _pair(4, (3, 3), (3, 3, 2), padding="same")
    x = _rand(2, 3, 3, 2)
    np.testing.assert_allclose(np.asarray(same_w(x)), np.asarray(same_p(x)), rtol=1e-5,
                               atol=1e-5)


def test_window_conv_keeps_conv2d_weights_and_config():
    layer = WindowConv2D(8, (7, 7), padding="valid", name="mrcnn_class_conv1")
    layer.build((None, 7, 7, 5))
    assert [w.name for w in layer.weights] == ["kernel", "bias"]
    assert tuple(layer.kernel.shape) == (7, 7, 5, 8)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is WindowConv2D and restored.get_config() == layer.get_config()
    assert keras.saving.get_registered_name(WindowConv2D) == "mrcnn>WindowConv2D"


def test_classifier_head_uses_window_convs_with_classic_kernel_layout():
    pooled = keras.Input((None, 7, 7, 8))
    logits, _, _ = fpn_classifier_graph(pooled, 3, fc_layers_size=16, train_bn=False)
    model = keras.Model(pooled, logits)
    conv1, conv2 = model.get_layer("mrcnn_class_conv1"), model.get_layer("mrcnn_class_conv2")
    assert isinstance(conv1, WindowConv2D) and isinstance(conv2, WindowConv2D)
    assert tuple(conv1.kernel.shape) == (7, 7, 8, 16)
    assert tuple(conv2.kernel.shape) == (1, 1, 16, 16)
