"""Tests for mrcnn.model.folded_norm: BatchNorm folded into the convolution before it."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn.model import folded_norm
from mrcnn.model.backbone import conv_block, identity_block
from mrcnn.model.feature_conv import FeatureConv2D
from mrcnn.model.folded_norm import (conv_then_norm, fold_kernel_and_bias, link,
                                     uses_moving_statistics)
from mrcnn.model.layers import BatchNorm


@pytest.fixture(autouse=True)
def folding_on(monkeypatch):
    """Folding is off by default (FOLD_BATCH_NORM); these tests check it switched on."""
    monkeypatch.setattr(folded_norm, "FOLD_BATCH_NORM", True)


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _randomise_norm(norm, seed):
    """Moving statistics and affine weights far from their initial values, so that a fold
    that skipped any of them would show."""
    rng = np.random.default_rng(seed)
    values = {"gamma": rng.uniform(0.5, 2.0), "beta": rng.normal(),
              "moving_mean": rng.normal(), "moving_variance": rng.uniform(0.2, 3.0)}
    for weight in norm.weights:
        name = weight.path.split("/")[-1]
        weight.assign(np.broadcast_to(values[name], weight.shape) * rng.uniform(
            0.8, 1.2, size=weight.shape).astype("float32"))


def _conv_and_norm(train_bn, kernel=(3, 3), strides=(1, 1), use_bias=True, seed=0, shape=None):
    conv = FeatureConv2D(6, kernel, strides=strides, padding="same", use_bias=use_bias)
    norm = BatchNorm(train_bn=train_bn)
    shape = shape or (2, 8, 8, 5)
    conv.build(shape)
    norm.build(conv.compute_output_shape(shape))
    conv.set_weights([_rand(*w.shape, seed=seed + i) for i, w in enumerate(conv.weights)])
    _randomise_norm(norm, seed + 10)
    return conv, norm


def _run(conv, norm, x, training):
    """Output and gradients (input, every conv and BN weight) of ``norm(conv(x))``."""
    x = tf.constant(x)
    weights = [w for w in conv.weights + norm.weights if w.trainable]
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = norm(conv(x, training=training), training=training)
        loss = tf.reduce_sum(y * tf.reshape(tf.range(tf.size(y), dtype=y.dtype), tf.shape(y)))
    grads = tape.gradient(loss, [x] + weights)
    return [np.asarray(y)] + [np.asarray(g) for g in grads]


def _assert_all_close(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        scale = max(1.0, float(np.abs(u).max()))
        np.testing.assert_allclose(v, u, rtol=1e-4, atol=1e-5 * scale)


def test_fold_kernel_and_bias_matches_the_formula():
    conv, norm = _conv_and_norm(train_bn=False)
    kernel, bias = fold_kernel_and_bias(conv.kernel, conv.bias, norm)
    gamma, beta, mean, var = (np.asarray(w) for w in norm.weights)
    s = gamma / np.sqrt(var + norm.epsilon)
    np.testing.assert_allclose(np.asarray(kernel), np.asarray(conv.kernel) * s, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(bias), (np.asarray(conv.bias) - mean) * s + beta,
                               rtol=1e-5, atol=1e-6)


def test_fold_without_bias_gamma_or_beta():
    conv = FeatureConv2D(4, (1, 1), use_bias=False)
    conv.build((1, 3, 3, 2))
    norm = keras.layers.BatchNormalization(scale=False, center=False)
    norm.build((1, 3, 3, 4))
    norm.moving_mean.assign([1.0, 2.0, 3.0, 4.0])
    norm.moving_variance.assign([4.0] * 4)
    kernel, bias = fold_kernel_and_bias(conv.kernel, None, norm)
    s = 1 / np.sqrt(4.0 + norm.epsilon)
    np.testing.assert_allclose(np.asarray(kernel), np.asarray(conv.kernel) * s, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(bias), -np.array([1.0, 2, 3, 4]) * s, rtol=1e-6)


@pytest.mark.parametrize("kernel, strides, use_bias", [
    ((3, 3), (1, 1), True),      # Winograd / row bands / GEMM filter gradient paths
    ((1, 1), (1, 1), False),
    ((1, 1), (2, 2), True),
    ((7, 7), (2, 2), True),
])
def test_frozen_norm_folded_equals_unfolded_outputs_and_gradients(kernel, strides, use_bias):
    """TRAIN_BN = False in training: folded, with the same output and the same gradients for
    the input and for the kernel, bias, gamma and beta."""
    x = _rand(2, 8, 8, 5, seed=3)
    conv, norm = _conv_and_norm(False, kernel, strides, use_bias)
    unfolded = _run(conv, norm, x, training=True)
    link(conv, norm)
    assert folded_norm.folded_norm(conv, True) is norm
    folded = _run(conv, norm, x, training=True)
    _assert_all_close(unfolded, folded)
    assert len(folded) == 1 + 1 + (2 if use_bias else 1) + 2    # gamma and beta: gradients


@pytest.mark.parametrize("batch", [1, 2])
def test_inference_folded_equals_unfolded(batch):
    x = _rand(batch, 16, 16, 5, seed=4)
    conv, norm = _conv_and_norm(None, shape=x.shape)
    unfolded = np.asarray(norm(conv(x, training=False), training=False))
    link(conv, norm)
    folded_conv_output = np.asarray(conv(x, training=False))
    folded = np.asarray(norm(folded_conv_output, training=False))
    np.testing.assert_allclose(folded, unfolded, rtol=1e-4, atol=1e-4)
    # Folded, the convolution's output is already normalised and BatchNorm passes it through.
    np.testing.assert_array_equal(folded, folded_conv_output)


def test_trainable_norm_in_training_is_not_folded():
    """Batch statistics (train_bn None, training=True): BatchNorm runs as its own layer."""
    x = _rand(2, 8, 8, 5, seed=5)
    conv, norm = _conv_and_norm(None)
    link(conv, norm)
    assert folded_norm.folded_norm(conv, True) is None
    assert not folded_norm.passes_through(norm, True)
    y = np.asarray(norm(conv(x, training=True), training=True))
    # Normalised by the batch's own statistics: mean about 0 per channel (beta aside).
    beta = np.asarray(norm.beta)
    np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), beta, atol=1e-4)
    # A symbolic training flag counts as training.
    assert not uses_moving_statistics(norm, tf.constant(True))
    assert uses_moving_statistics(norm, None) and uses_moving_statistics(norm, False)


def test_switch_off_runs_unfolded(monkeypatch):
    conv, norm = _conv_and_norm(False)
    link(conv, norm)
    monkeypatch.setattr(folded_norm, "FOLD_BATCH_NORM", False)
    assert folded_norm.folded_norm(conv, False) is None
    assert not folded_norm.passes_through(norm, False)
    x = _rand(1, 8, 8, 5, seed=6)
    conv_output = np.asarray(conv(x, training=False))
    assert not np.allclose(np.asarray(norm(conv_output, training=False)), conv_output)


def test_unlinked_norm_is_never_passed_through():
    conv, norm = _conv_and_norm(False)
    assert folded_norm.folded_norm(conv, False) is None
    assert not folded_norm.passes_through(norm, False)


def _block_model():
    inputs = keras.Input((16, 16, 8))
    x = conv_block(inputs, 3, [4, 4, 12], stage=2, block="a", train_bn=False)
    x = identity_block(x, 3, [4, 4, 12], stage=2, block="b", train_bn=False)
    model = keras.Model(inputs, x)
    for layer in model.layers:
        if isinstance(layer, BatchNorm):
            _randomise_norm(layer, seed=len(layer.name))
        elif isinstance(layer, FeatureConv2D):
            layer.set_weights([_rand(*w.shape, seed=len(layer.name) + i) * 0.3
                               for i, w in enumerate(layer.weights)])
    return model


def test_resnet_blocks_fold_without_changing_weights_names_or_results(monkeypatch):
    model = _block_model()
    x = _rand(1, 16, 16, 8, seed=7)
    folded = np.asarray(model(x, training=False))
    monkeypatch.setattr(folded_norm, "FOLD_BATCH_NORM", False)
    unfolded = np.asarray(model(x, training=False))
    np.testing.assert_allclose(folded, unfolded, rtol=1e-4, atol=1e-4)
    # Every conv of the blocks is linked to its BatchNorm, and neither lists the other's weights.
    convs = [layer for layer in model.layers if isinstance(layer, FeatureConv2D)]
    assert len(convs) == 7 and all(c._folded_norm_ref() is not None for c in convs)
    for conv in convs:
        assert [w.path.split("/")[-1] for w in conv.weights] == ["kernel", "bias"]
    names = [w.path for w in model.weights]
    assert len(names) == len(set(names)) == 7 * 2 + 7 * 4
    assert "bn2a_branch2c/moving_variance" in names and "res2b_branch2a/kernel" in names


def test_model_from_config_runs_unfolded_with_the_same_results():
    """The link is the builder's, not part of either layer's config."""
    model = _block_model()
    x = _rand(1, 16, 16, 8, seed=8)
    clone = keras.Model.from_config(model.get_config(),
                                    custom_objects={"FeatureConv2D": FeatureConv2D,
                                                    "BatchNorm": BatchNorm})
    clone.set_weights(model.get_weights())
    assert not any(getattr(layer, "_folded_into_conv", False) for layer in clone.layers)
    np.testing.assert_allclose(np.asarray(clone(x, training=False)),
                               np.asarray(model(x, training=False)), rtol=1e-4, atol=1e-4)


def test_conv_then_norm_links_and_applies():
    conv, norm = _conv_and_norm(False)
    x = _rand(2, 8, 8, 5, seed=9)
    expected = np.asarray(norm(conv(x, training=False), training=False))
    y = conv_then_norm(tf.constant(x), conv, norm)
    assert norm._folded_into_conv and conv._folded_norm_ref() is norm
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-4, atol=1e-4)
