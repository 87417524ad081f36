"""MomentumSGD: Keras' SGD rule, computed by one in-place kernel per weight."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn.model.optimizer import MomentumSGD, classic_sgd

SHAPES = ((5, 3), (3,), (2, 2, 4, 6))


def _run(optimizer_cls, steps=4, seed=0, dtype="float32", **kwargs):
    """Weights and momentum slots after ``steps`` updates with the same random gradients."""
    rng = np.random.default_rng(seed)
    weights = [keras.Variable(rng.normal(size=s).astype(dtype)) for s in SHAPES]
    optimizer = optimizer_cls(**kwargs)

    @tf.function(autograph=False)
    def step(grads):
        optimizer.apply(grads, weights)

    for _ in range(steps):
        step([tf.constant(rng.normal(size=s).astype(dtype)) for s in SHAPES])
    slots = [np.asarray(m) for m in getattr(optimizer, "momentums", [])]
    return [np.asarray(w) for w in weights], slots


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("clipnorm", [None, 1.0])
def test_updates_equal_keras_sgd(nesterov, clipnorm):
    kwargs = dict(learning_rate=0.1, momentum=0.9, nesterov=nesterov, clipnorm=clipnorm)
    ours_w, ours_m = _run(MomentumSGD, **kwargs)
    keras_w, keras_m = _run(keras.optimizers.SGD, **kwargs)
    start_w, _ = _run(MomentumSGD, steps=0, **kwargs)
    for ours, theirs, start in zip(ours_w + ours_m, keras_w + keras_m, start_w + [0] * 3):
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)
    assert all(np.abs(w - s).max() > 1e-3 for w, s in zip(ours_w, start_w))  # it did move


def _slot_readers(optimizer_cls):
    """Op types that take the momentum slot's handle in one traced update step."""
    weight = keras.Variable(np.ones((4, 4), "float32"))
    optimizer = optimizer_cls(learning_rate=0.1, momentum=0.9)
    optimizer.build([weight])

    @tf.function(autograph=False)
    def step(grad):
        optimizer.apply([grad], [weight])

    graph = step.get_concrete_function(tf.TensorSpec([4, 4], tf.float32)).graph
    slot = optimizer.momentums[0].value.handle
    captured = [inner for outer, inner in graph.captures if outer is slot]
    assert len(captured) == 1
    return sorted(op.type for op in captured[0].consumers())


def test_the_update_is_one_fused_kernel_that_alone_reads_the_slot():
    # Keras' own rule reads the slot into a multiplication that needs no gradient (so it runs,
    # and holds a weight-sized result, from the start of the step); here only the kernel does.
    assert _slot_readers(MomentumSGD) == ["ResourceApplyKerasMomentum"]
    assert "ReadVariableOp" in _slot_readers(keras.optimizers.SGD)


def test_plain_sgd_and_float64_use_the_keras_rule_with_the_same_result():
    ours, _ = _run(MomentumSGD, learning_rate=0.1, momentum=0.0)
    theirs, _ = _run(keras.optimizers.SGD, learning_rate=0.1, momentum=0.0)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    ours, _ = _run(MomentumSGD, dtype="float64", learning_rate=0.1, momentum=0.9)
    theirs, _ = _run(keras.optimizers.SGD, dtype="float64", learning_rate=0.1, momentum=0.9)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_config_round_trip_and_classic_factory():
    optimizer = classic_sgd(0.02, 0.9, clipnorm=5.0)
    assert isinstance(optimizer, keras.optimizers.SGD)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert type(restored) is MomentumSGD
    assert restored.get_config()["momentum"] == 0.9 and restored.get_config()["clipnorm"] == 5.0
    assert float(restored.learning_rate) == pytest.approx(0.02)
