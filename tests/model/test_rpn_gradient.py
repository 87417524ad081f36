"""The RPN head's gradient at the positions its losses reach equals the dense gradient."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn import native
from mrcnn.config import Config
from mrcnn.data.pipeline import make_training_dataset, pyramid_anchors_for_config
from mrcnn.model import rpn_gradient, winograd
from mrcnn.model.maskrcnn import MaskRCNN
from mrcnn.model.rpn import RpnModel, build_rpn_model
from mrcnn.model.rpn_gradient import rpn_head_with_sparse_gradient
from samples.shapes.shapes import make_dataset
from tests.model.conv_checks import xla_compiled_calls, xla_free_winograd_transform_op


def _relative(a, b):
    b = np.asarray(b)
    return float(np.max(np.abs(np.asarray(a) - b)) / (np.max(np.abs(b)) + 1e-12))


def _weights(rng, channels, filters, outputs):
    return [tf.constant(rng.normal(0, s, shape), tf.float32) for s, shape in (
        (0.05, (3, 3, channels, filters)), (0.1, (filters,)), (0.1, (filters, outputs)),
        (0.1, (outputs,)))]


def _dense_reference(x, kernel, bias, head_kernel, head_bias):
    hidden = tf.nn.relu(tf.nn.conv2d(x, kernel, 1, "SAME") + bias)
    return tf.einsum("bhwf,fk->bhwk", hidden, head_kernel) + head_bias


def _direct(x, kernel, bias):
    return tf.nn.conv2d(x, kernel, 1, "SAME") + bias


def _gradients(fn, inputs, dy):
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        out = fn(*inputs)
    return out, tape.gradient(out, inputs, output_gradients=dy)


def _sparse_dy(rng, shape, positions):
    dy = np.zeros(shape, np.float32)
    for b, i, j in positions:
        dy[b, i, j] = rng.normal(0, 1, shape[-1])
    return tf.constant(dy)


@pytest.mark.parametrize("shape", [(2, 9, 13, 8), (1, 1, 1, 4), (3, 4, 2, 5)])
def test_sparse_gradient_equals_the_dense_one(shape):
    rng = np.random.default_rng(sum(shape))
    batch, height, width, channels = shape
    x = tf.constant(rng.normal(0, 1, shape), tf.float32)
    weights = _weights(rng, channels, 6, 18)
    # Corners and edges (windows partly outside the map), an interior point, both images.
    positions = {(0, 0, 0), (batch - 1, height - 1, width - 1), (0, height // 2, width // 2),
                 (batch - 1, 0, width - 1), (0, height - 1, 0)}
    dy = _sparse_dy(rng, (batch, height, width, 18), positions)
    inputs = [x] + weights

    def sparse(*args):
        return rpn_head_with_sparse_gradient(*args, conv_forward=_direct)

    out, got = _gradients(sparse, inputs, dy)
    want_out, want = _gradients(_dense_reference, inputs, dy)
    np.testing.assert_allclose(out, want_out, rtol=1e-5, atol=1e-5)
    for g, w in zip(got, want):
        assert _relative(g, w) < 1e-5


def test_a_gradient_over_most_positions_takes_the_dense_form_with_the_same_values(monkeypatch):
    rng = np.random.default_rng(3)
    x = tf.constant(rng.normal(0, 1, (2, 6, 7, 8)), tf.float32)
    inputs = [x] + _weights(rng, 8, 6, 18)
    dy = tf.constant(rng.normal(0, 1, (2, 6, 7, 18)), tf.float32)   # every position

    def sparse(*args):
        return rpn_head_with_sparse_gradient(*args, conv_forward=_direct)

    _, want = _gradients(_dense_reference, inputs, dy)
    for fraction in (rpn_gradient.MAX_SPARSE_FRACTION, 1.0):   # dense branch, then sparse
        monkeypatch.setattr(rpn_gradient, "MAX_SPARSE_FRACTION", fraction)
        _, got = _gradients(sparse, inputs, dy)
        for g, w in zip(got, want):
            assert _relative(g, w) < 1e-5


def test_no_gradient_gives_zeros():
    rng = np.random.default_rng(4)
    inputs = [tf.constant(rng.normal(0, 1, (1, 5, 5, 4)), tf.float32)] + _weights(rng, 4, 3, 6)
    _, got = _gradients(lambda *a: rpn_head_with_sparse_gradient(*a, conv_forward=_direct),
                        inputs, tf.zeros([1, 5, 5, 6]))
    for g, t in zip(got, inputs):
        assert g.shape == t.shape and not np.any(np.asarray(g))


def test_bad_shapes_are_refused():
    rng = np.random.default_rng(5)
    weights = _weights(rng, 4, 3, 6)
    with pytest.raises(ValueError, match=r"\[B, H, W, C\]"):
        rpn_head_with_sparse_gradient(tf.zeros([5, 5, 4]), *weights, conv_forward=_direct)
    with pytest.raises(ValueError, match=r"\[3, 3, C, F\]"):
        rpn_head_with_sparse_gradient(tf.zeros([1, 5, 5, 4]), tf.zeros([1, 1, 4, 3]),
                                      *weights[1:], conv_forward=_direct)


@pytest.fixture(scope="module")
def rpn():
    keras.utils.set_random_seed(11)
    return build_rpn_model(anchor_stride=1, anchors_per_location=3, depth=16,
                           conv_channels=24)


def _rpn_step(model, maps, chosen, sparse):
    """Outputs and gradients (w.r.t. the maps and the weights) of a loss on ``chosen``
    anchors, like the RPN losses."""
    rpn_gradient.SPARSE_RPN_GRADIENT = sparse
    try:
        @tf.function
        def step(maps):
            with tf.GradientTape() as tape:
                tape.watch(maps)
                outs = [model(m, training=True) for m in maps]
                logits = tf.concat([o[0] for o in outs], axis=1)
                deltas = tf.concat([o[2] for o in outs], axis=1)
                loss = tf.reduce_sum(chosen * (tf.reduce_logsumexp(logits, -1) - logits[..., 1]))
                loss += tf.reduce_sum(chosen[..., None] * tf.square(deltas))
            return outs, tape.gradient(loss, maps + model.trainable_variables)
        return step(maps)
    finally:
        rpn_gradient.SPARSE_RPN_GRADIENT = True


def test_rpn_model_in_training_equals_the_plain_graph(rpn):
    rng = np.random.default_rng(6)
    maps = [tf.constant(rng.normal(0, 1, (2, s, s, 16)), tf.float32) for s in (12, 6, 3)]
    total = sum(3 * s * s for s in (12, 6, 3))
    chosen = np.zeros([2, total], np.float32)
    for image in range(2):
        chosen[image, rng.choice(total, 20, replace=False)] = 1.0
    chosen = tf.constant(chosen)
    outs, grads = _rpn_step(rpn, maps, chosen, sparse=True)
    want_outs, want_grads = _rpn_step(rpn, maps, chosen, sparse=False)
    for level, want_level in zip(outs, want_outs):
        for got, want in zip(level, want_level):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert len(grads) == 3 + 6
    for got, want in zip(grads, want_grads):
        assert _relative(got, want) < 1e-5


def test_rpn_model_outside_training_is_the_functional_graph(rpn):
    x = tf.constant(np.random.default_rng(7).normal(0, 1, (1, 8, 8, 16)), tf.float32)
    plain = keras.Model(rpn.inputs, rpn.outputs)   # the same layers, plain Functional
    for got, want in zip(rpn(x, training=False), plain(x, training=False)):
        np.testing.assert_array_equal(got, want)


def test_rpn_model_config_round_trip_keeps_the_setting():
    model = build_rpn_model(1, 3, 8, conv_channels=12, sparse_gradient=False)
    assert isinstance(model, RpnModel) and model.sparse_gradient is False
    clone = RpnModel.from_config(model.get_config())
    assert isinstance(clone, RpnModel) and clone.sparse_gradient is False
    assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers]
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    assert isinstance(restored, RpnModel) and restored.sparse_gradient is False


def test_bfloat16_head_trains():
    rng = np.random.default_rng(8)
    x = tf.constant(rng.normal(0, 1, (2, 6, 6, 8)), tf.bfloat16)
    weights = [tf.cast(w, tf.bfloat16) for w in _weights(rng, 8, 6, 18)]
    dy = tf.cast(_sparse_dy(rng, (2, 6, 6, 18), {(0, 0, 0), (1, 3, 4)}), tf.bfloat16)
    out, got = _gradients(lambda *a: rpn_head_with_sparse_gradient(*a, conv_forward=_direct),
                          [x] + weights, dy)
    _, want = _gradients(_dense_reference, [tf.cast(t, tf.float32) for t in [x] + weights],
                         tf.cast(dy, tf.float32))
    assert out.dtype == tf.bfloat16
    for g, w in zip(got, want):
        assert g.dtype == tf.bfloat16 and _relative(tf.cast(g, tf.float32), w) < 2e-2


class _TinyConfig(Config):
    NAME = "rpngrad"
    IMAGES_PER_GPU = 2
    NUM_CLASSES = 4
    BACKBONE = "resnet50"
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    TRAIN_BN = None
    PRE_NMS_LIMIT = 300
    POST_NMS_ROIS_TRAINING = 64
    RPN_TRAIN_ANCHORS_PER_IMAGE = 32
    TRAIN_ROIS_PER_IMAGE = 16
    MAX_GT_INSTANCES = 6
    TOP_DOWN_PYRAMID_SIZE = 32
    RPN_CONV_CHANNELS = 48


def test_training_model_gradients_equal_the_dense_rpn_gradient(tmp_path, monkeypatch):
    # Direct convolutions on both sides, so that the proposals (and so the heads' work) are
    # the same; the Winograd forward pass differs from them by float rounding only.
    monkeypatch.setattr(winograd, "WINOGRAD", False)
    config = _TinyConfig()
    keras.utils.set_random_seed(12)
    model = MaskRCNN(mode="training", config=config, model_dir=str(tmp_path))
    km = model.keras_model
    rpn_model = km.get_layer("rpn_model")
    assert isinstance(rpn_model, RpnModel) and rpn_model.sparse_gradient
    anchors_px, anchors = pyramid_anchors_for_config(config)
    data = make_training_dataset(make_dataset(4, split="train", seed=5, height=128, width=128),
                                 config, anchors, anchors_px, seed=0)
    batch = next(iter(data))
    results = {}
    for sparse in (True, False):
        rpn_gradient.SPARSE_RPN_GRADIENT = sparse
        try:
            @tf.function
            def gradients(batch):
                with tf.GradientTape() as tape:
                    named, total = km._named_losses(batch, training=True)
                return named, tape.gradient(total, km.trainable_variables)
            results[sparse] = gradients(batch)
        finally:
            rpn_gradient.SPARSE_RPN_GRADIENT = True
    (named, grads), (want_named, want_grads) = results[True], results[False]
    for name in named:
        np.testing.assert_allclose(named[name], want_named[name], rtol=1e-4, atol=1e-6)
    paths = [v.path for v in km.trainable_variables]
    rpn_paths = [p for p in paths if p.startswith("rpn_")]
    assert len(rpn_paths) == 6
    # The biases of convolutions followed by a batch-statistics BatchNorm have a zero gradient
    # in exact arithmetic: both sides hold rounding noise there, so they are not compared.
    zero_gradient = {f"{layer.name}/bias" for layer in km.layers
                     if getattr(layer, "_folded_norm_ref", None) is not None}
    assert "res2a_branch2a/bias" in zero_gradient
    compared = 0
    for path, got, want in zip(paths, grads, want_grads):
        assert got is not None, path
        if path not in zero_gradient:
            # The two sides' float rounding differs (the RPN's gradient summed in another
            # order), and every batch-statistics BatchNorm on the way back amplifies it: at
            # conv1, 50 layers down, it reached 2.0e-3 and 4.5e-3 of the gradient's size in 2
            # of 8 runs. A wrong sparse gradient differs by its own size.
            limit = 1e-3 if path.startswith(("rpn_", "fpn_", "mrcnn_")) else 1e-2
            assert _relative(got, want) < limit, path
            compared += 1
    assert compared > 150


def test_xla_config_builds_the_dense_rpn(tmp_path):
    class XlaConfig(_TinyConfig):
        XLA = True
    model = MaskRCNN(mode="training", config=XlaConfig(), model_dir=str(tmp_path))
    assert model.keras_model.get_layer("rpn_model").sparse_gradient is False


def test_the_training_pass_runs_winograd_without_xla():
    """Over 256 channels the shared convolution runs by Winograd's algorithm; in training in
    its XLA-free form (XLA's compiler would cost the process ~300 MiB), at inference by the
    native transforms where they are built (mrcnn/native), else XLA-compiled."""
    model = build_rpn_model(anchor_stride=1, anchors_per_location=3, depth=256,
                            conv_channels=16)
    spec = tf.TensorSpec([2, 32, 32, 256], tf.float32)   # MIN_TRAINING_PIXELS

    def compiled_calls(training):
        graph = tf.function(lambda x: model(x, training=training)).get_concrete_function(
            spec).graph
        return xla_compiled_calls(graph), {op.type for op in graph.get_operations()}

    calls, types = compiled_calls(True)
    assert not calls and "Conv2D" not in types and xla_free_winograd_transform_op() in types
    calls, types = compiled_calls(False)
    if native.winograd_ops() is not None:
        assert not calls and "MrcnnWinogradInputTransform" in types
    else:
        assert calls
