"""BatchNorm inputs recomputed in the backward pass: same gradients, the cheap convolutions only."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn.model import recomputed_norm
from mrcnn.model.backbone import resnet_graph
from mrcnn.model.feature_conv import FeatureConv2D
from mrcnn.model.folded_norm import conv_then_norm, link
from mrcnn.model.layers import BatchNorm


def _relative(a, b):
    b = np.asarray(b)
    return float(np.max(np.abs(np.asarray(a) - b)) / (np.max(np.abs(b)) + 1e-12))


@pytest.fixture(scope="module")
def resnet():
    keras.utils.set_random_seed(21)
    image = keras.Input([64, 64, 3])
    return keras.Model(image, resnet_graph(image, "resnet50", stage5=True, train_bn=None)[1:])


def _train_pass(model, x, recompute):
    """(loss, gradients of every trainable weight, moving statistics after the pass, the
    number of Conv2D ops in the traced pass) with recomputation on or off."""
    recomputed_norm.RECOMPUTE_NORM_INPUT = recompute
    statistics = [v for v in model.non_trainable_variables]
    saved = [v.numpy() for v in statistics]
    try:
        @tf.function
        def step(x):
            with tf.GradientTape() as tape:
                outputs = model(x, training=True)
                loss = tf.add_n([tf.reduce_sum(tf.sin(y)) for y in outputs])
            return loss, tape.gradient(loss, model.trainable_variables)
        graph = step.get_concrete_function(x).graph
        loss, grads = step(x)
        after = [v.numpy() for v in statistics]
    finally:
        recomputed_norm.RECOMPUTE_NORM_INPUT = True
        for v, value in zip(statistics, saved):
            v.assign(value)
    convs = sum(op.type == "Conv2D" for op in graph.get_operations())
    return loss, grads, after, convs


def test_resnet_gradients_and_statistics_equal_those_with_the_inputs_kept(resnet):
    x = tf.constant(np.random.default_rng(0).normal(0, 1, (2, 64, 64, 3)), tf.float32)
    loss, grads, stats, convs = _train_pass(resnet, x, recompute=True)
    want_loss, want_grads, want_stats, want_convs = _train_pass(resnet, x, recompute=False)
    assert float(loss) == pytest.approx(float(want_loss), rel=1e-6)
    assert len(grads) == len(want_grads) == 212
    for got, want in zip(grads, want_grads):
        assert _relative(got, want) < 1e-5
    for got, want in zip(stats, want_stats):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    # One more convolution per recomputed input: exactly the cheap ones of ResNet-50 (the stem,
    # stage 2 but its 3 x 3s, stage 3's branch2c / branch1 / first branch2a, stage 4's
    # branch2c).
    cheap = [layer.name for layer in resnet.layers if isinstance(layer, FeatureConv2D)
             and recomputed_norm.recompute_applies(layer, True)]
    assert len(cheap) == 20 and "conv1" in cheap and "res4f_branch2c" in cheap
    assert "res2a_branch2b" not in cheap and "res5a_branch2c" not in cheap
    assert convs - want_convs == len(cheap)


def test_the_recomputation_waits_for_the_backward_pass(resnet):
    """Each recomputed convolution is ordered after its BatchNorm's incoming gradient (else the
    executor would run it in the forward pass and hold its output just the same)."""
    @tf.function
    def gradients(x):
        with tf.GradientTape() as tape:
            loss = tf.add_n([tf.reduce_sum(y) for y in resnet(x, training=True)])
        return tape.gradient(loss, resnet.trainable_variables)

    graph = gradients.get_concrete_function(tf.zeros([2, 64, 64, 3])).graph
    fused_grads = [op for op in graph.get_operations() if op.type == "FusedBatchNormGradV3"]
    recomputed = []
    for op in fused_grads:
        # x's producer: the recomputed convolution (+ bias) or the forward pass's output.
        producer = op.inputs[1].op
        while producer.type in ("Reshape", "Cast", "Identity", "AddV2"):
            producer = producer.inputs[0].op
        if producer.control_inputs:
            recomputed.append(producer)
    assert len(recomputed) == 20
    assert all(p.type == "Conv2D" for p in recomputed)


def _conv(kernel, channels, **kwargs):
    conv = FeatureConv2D(8, kernel, **kwargs)
    conv.build((None, 8, 8, channels))
    return conv


@pytest.mark.parametrize("kernel, channels, applies", [
    ((1, 1), 256, True), ((1, 1), 257, False), ((7, 7), 3, True), ((3, 3), 28, True),
    ((3, 3), 64, False)])
def test_which_convolutions_are_cheap_enough(kernel, channels, applies):
    conv = _conv(kernel, channels)
    link(conv, BatchNorm())
    assert recomputed_norm.recompute_applies(conv, True) is applies


def test_unlinked_frozen_activated_or_moving_statistics_convolutions_keep_the_input():
    assert not recomputed_norm.recompute_applies(_conv((1, 1), 8), True)   # no BatchNorm
    frozen = _conv((1, 1), 8)
    link(frozen, BatchNorm())
    frozen.trainable = False
    assert not recomputed_norm.recompute_applies(frozen, True)
    activated = _conv((1, 1), 8, activation="relu")
    link(activated, BatchNorm())
    assert not recomputed_norm.recompute_applies(activated, True)
    moving = _conv((1, 1), 8)
    link(moving, BatchNorm(train_bn=False))
    assert not recomputed_norm.recompute_applies(moving, True)
    inference = _conv((1, 1), 8)
    link(inference, BatchNorm())
    assert not recomputed_norm.recompute_applies(inference, False)


def test_a_batchnorm_on_another_tensor_keeps_its_input_and_drops_the_record():
    conv, norm = _conv((1, 1), 4), BatchNorm()
    link(conv, norm)
    x = tf.random.normal([2, 8, 8, 4])
    y = conv(x, training=True)
    assert getattr(conv, "_recomputable_output", None) is not None
    other = y * 2.0
    assert recomputed_norm.recompute_function(norm, other) is None
    assert getattr(conv, "_recomputable_output", None) is None   # taken all the same
    y = conv(x, training=True)
    recompute = recomputed_norm.recompute_function(norm, y)
    np.testing.assert_array_equal(recompute(), y)
    assert recomputed_norm.recompute_function(norm, y) is None   # used once


def test_mixed_precision_gradients_equal_those_with_the_inputs_kept():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        keras.utils.set_random_seed(22)
        image = keras.Input([16, 16, 32])
        out = conv_then_norm(image, FeatureConv2D(64, (1, 1), name="c"), BatchNorm(name="n"))
        model = keras.Model(image, out)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    x = tf.constant(np.random.default_rng(1).normal(0, 1, (2, 16, 16, 32)), tf.float32)
    weights = tf.constant(np.random.default_rng(2).normal(0, 1, (2, 16, 16, 64)), tf.float32)
    results = []
    for recompute in (True, False):
        recomputed_norm.RECOMPUTE_NORM_INPUT = recompute
        try:
            @tf.function
            def step(x):
                with tf.GradientTape() as tape:
                    y = model(x, training=True)
                    loss = tf.reduce_sum(tf.cast(y, tf.float32) * weights)
                return y, tape.gradient(loss, model.trainable_variables)
            results.append(step(x))
        finally:
            recomputed_norm.RECOMPUTE_NORM_INPUT = True
    (y, grads), (want_y, want_grads) = results
    assert y.dtype == tf.bfloat16
    np.testing.assert_array_equal(tf.cast(y, tf.float32), tf.cast(want_y, tf.float32))
    for got, want in zip(grads, want_grads):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
