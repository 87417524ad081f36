"""Training-mode BatchNorm with the fused gradient equals Keras' BatchNormalization."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn.model.batch_norm_grad import normalize_with_batch_statistics
from mrcnn.model.layers import BatchNorm

EPS = 1e-3


def _composite(x, gamma, beta):
    mean, variance = tf.nn.moments(x, list(range(len(x.shape) - 1)))
    return tf.nn.batch_normalization(x, mean, variance, beta, gamma, EPS)


def _gradients(fn, x, gamma, beta, weights):
    """Gradients of ``sum(fn(x) * weights)`` w.r.t. x and whichever of gamma, beta exist."""
    sources = [t for t in (x, gamma, beta) if t is not None]
    with tf.GradientTape() as tape:
        tape.watch(sources)
        loss = tf.reduce_sum(fn(x, gamma, beta) * weights)
    return tape.gradient(loss, sources)


def _relative(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / (np.max(np.abs(b)) + 1e-12))


@pytest.mark.parametrize("shape", [(37, 5), (3, 6, 7, 8), (2, 3, 4, 4, 6)])
@pytest.mark.parametrize("affine", [(True, True), (True, False), (False, True), (False, False)])
def test_outputs_and_gradients_equal_the_composite(shape, affine):
    rng = np.random.default_rng(sum(shape))
    channels = shape[-1]
    x = tf.constant(rng.normal(2.0, 3.0, shape), tf.float32)
    gamma = tf.constant(rng.uniform(0.5, 1.5, channels), tf.float32) if affine[0] else None
    beta = tf.constant(rng.normal(0, 1, channels), tf.float32) if affine[1] else None
    # Non-uniform weights, so that dx is not the zero that a plain sum of a normalised
    # output would give.
    weights = tf.constant(rng.normal(0, 1, shape), tf.float32)

    def fused(x, g, b):
        return normalize_with_batch_statistics(x, g, b, EPS)[0]

    def reference(x, g, b):
        return _composite(x, g, b)

    np.testing.assert_allclose(fused(x, gamma, beta), reference(x, gamma, beta),
                               rtol=1e-5, atol=1e-5)
    got = _gradients(fused, x, gamma, beta, weights)
    want = _gradients(reference, x, gamma, beta, weights)
    assert len(got) == len(want) == 1 + sum(affine)
    for g, w in zip(got, want):
        assert _relative(g, w) < 1e-4


def test_statistics_are_the_biased_batch_moments():
    x = tf.constant(np.random.default_rng(0).normal(1, 2, (4, 3, 3, 5)), tf.float32)
    _, mean, variance = normalize_with_batch_statistics(x, None, None, EPS)
    flat = x.numpy().reshape(-1, 5)
    np.testing.assert_allclose(mean, flat.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(variance, flat.var(0), rtol=1e-5)


def test_xla_compiled_gradient_equals_the_eager_one():
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(0, 2, (6, 5, 5, 8)), tf.float32)
    gamma = tf.constant(rng.uniform(0.5, 1.5, 8), tf.float32)
    beta = tf.constant(rng.normal(0, 1, 8), tf.float32)
    weights = tf.constant(rng.normal(0, 1, x.shape), tf.float32)

    def fused(x, g, b):
        return normalize_with_batch_statistics(x, g, b, EPS)[0]

    compiled = tf.function(lambda x, g, b: _gradients(fused, x, g, b, weights), jit_compile=True)
    for g, w in zip(compiled(x, gamma, beta), _gradients(fused, x, gamma, beta, weights)):
        assert _relative(g, w) < 1e-4


def test_rejects_rank_one_input():
    with pytest.raises(ValueError, match="must be"):
        normalize_with_batch_statistics(tf.zeros([4]), None, None, EPS)


def _pair(channels, seed):
    """Our BatchNorm and Keras' BatchNormalization with the same (non-default) weights."""
    rng = np.random.default_rng(seed)
    ours, keras_bn = BatchNorm(train_bn=None), keras.layers.BatchNormalization(momentum=0.99,
                                                                                  epsilon=1e-3)
    weights = [rng.uniform(0.5, 1.5, channels), rng.normal(0, 1, channels),
               rng.normal(0, 1, channels), rng.uniform(0.5, 2, channels)]
    for layer in (ours, keras_bn):
        layer.build((None, 4, 4, channels))
        layer.set_weights([w.astype(np.float32) for w in weights])
    return ours, keras_bn


def test_layer_in_training_equals_keras_outputs_gradients_and_moving_statistics():
    ours, reference = _pair(6, seed=2)
    initial_mean = ours.moving_mean.numpy().copy()
    rng = np.random.default_rng(3)
    x = tf.constant(rng.normal(1, 2, (5, 4, 4, 6)), tf.float32)
    weights = tf.constant(rng.normal(0, 1, x.shape), tf.float32)
    results = []
    for layer in (ours, reference):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * weights)
        grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
        results.append((y, grads, [v.numpy() for v in (layer.moving_mean,
                                                        layer.moving_variance)]))
    (y1, g1, m1), (y2, g2, m2) = results
    np.testing.assert_allclose(y1, y2, rtol=1e-5, atol=1e-5)
    for a, b in zip(g1, g2):
        assert _relative(a, b) < 1e-4
    for a, b in zip(m1, m2):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    # The moving mean did move, by 1 % of the way to the batch's (momentum 0.99).
    batch_mean = x.numpy().reshape(-1, 6).mean(0)
    np.testing.assert_allclose(m1[0], 0.99 * initial_mean + 0.01 * batch_mean, rtol=1e-5,
                               atol=1e-6)
    assert np.max(np.abs(m1[0] - initial_mean)) > 1e-3


def test_layer_keeps_the_compute_dtype_under_mixed_precision():
    layer = BatchNorm(train_bn=None, dtype="mixed_float16")
    x = tf.constant(np.random.default_rng(4).normal(0, 1, (3, 2, 2, 4)), tf.float16)
    y = layer(x, training=True)
    assert y.dtype == tf.float16
    assert layer.moving_mean.dtype == "float32"


def test_train_bn_false_and_inference_use_the_moving_statistics():
    ours, reference = _pair(3, seed=5)
    x = tf.constant(np.random.default_rng(6).normal(0, 1, (2, 4, 4, 3)), tf.float32)
    np.testing.assert_allclose(ours(x, training=False), reference(x, training=False),
                               rtol=1e-5, atol=1e-5)
    frozen = BatchNorm(train_bn=False)
    frozen.build((None, 4, 4, 3))
    frozen.set_weights(ours.get_weights())
    before = frozen.moving_mean.numpy().copy()
    np.testing.assert_allclose(frozen(x, training=True), reference(x, training=False),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(frozen.moving_mean.numpy(), before)
