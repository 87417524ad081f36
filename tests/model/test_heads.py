"""Tests for mrcnn.model.heads, mrcnn.model.rpn and the shape layers of mrcnn.model.layers.

Small channel counts keep the models tiny; the full-size layout is checked in test_backbone.py.
"""
import numpy as np
import pytest

import keras
import tensorflow as tf

from mrcnn.model.feature_conv import FeatureConv2D
from mrcnn.model.heads import build_fpn_mask_graph, fpn_classifier_graph  # noqa: E402
from mrcnn.model.layers import (  # noqa: E402
    BatchNorm,
    MergeRoiBatch,
    ReshapeBoxDeltas,
    RoiConv2D,
    SplitRoiBatch,
    SqueezeRoiFeatures,
)
from mrcnn.model.rpn import build_rpn_model, rpn_graph  # noqa: E402
from mrcnn.model import winograd as winograd_module  # noqa: E402
from mrcnn.model.winograd import direct_convolutions  # noqa: E402
from tests.model.conv_checks import (  # noqa: E402
    xla_compiled_calls, xla_free_winograd_transform_op)

NUM_CLASSES = 4
CH = 8
FC = 16


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


# ----------------------------------------------------------------------------------------------
# shape layers
# ----------------------------------------------------------------------------------------------
def test_merge_and_split_rois_round_trip_dynamic():
    inp = keras.Input((None, 3, 2))
    merged = MergeRoiBatch()(inp)
    assert tuple(merged.shape) == (None, 3, 2)
    split = SplitRoiBatch()([merged, inp])
    assert tuple(split.shape) == (None, None, 3, 2)
    model = keras.Model(inp, [merged, split])
    for batch, rois in ((2, 3), (1, 5)):
        x = _rand(batch, rois, 3, 2, seed=rois)
        m, s = (np.asarray(t) for t in model(x))
        # image-major order: all ROIs of image 0, then image 1
        np.testing.assert_array_equal(m, x.reshape(batch * rois, 3, 2))
        if batch > 1:
            np.testing.assert_array_equal(m[rois], x[1, 0])
        np.testing.assert_array_equal(s, x)


def test_split_rois_uses_reference_leading_axes_only():
    x = np.arange(6 * 5, dtype="float32").reshape(6, 5)
    ref = np.zeros((2, 3, 7, 7, 1), "float32")
    out = np.asarray(SplitRoiBatch()([x, ref]))
    np.testing.assert_array_equal(out, x.reshape(2, 3, 5))


def test_squeeze_roi_features():
    x = _rand(2, 3, 1, 1, 5)
    np.testing.assert_array_equal(np.asarray(SqueezeRoiFeatures()(x)), x[:, :, 0, 0])
    with pytest.raises(ValueError, match="spatial"):
        SqueezeRoiFeatures()(keras.Input((None, 2, 1, 5)))


def test_reshape_box_deltas():
    x = _rand(2, 3, NUM_CLASSES * 4)
    out = np.asarray(ReshapeBoxDeltas(NUM_CLASSES)(x))
    assert out.shape == (2, 3, NUM_CLASSES, 4)
    np.testing.assert_array_equal(out[1, 2, 3], x[1, 2, 12:16])
    with pytest.raises(ValueError, match="num_classes"):
        ReshapeBoxDeltas(NUM_CLASSES)(keras.Input((None, 15)))
    with pytest.raises(ValueError, match="num_classes"):
        ReshapeBoxDeltas(0)


def test_roi_conv2d_equals_conv2d_per_roi():
    x = _rand(2, 3, 4, 4, CH)
    roi_conv = RoiConv2D(5, (3, 3), padding="same", activation="relu")
    out = np.asarray(roi_conv(x))
    assert out.shape == (2, 3, 4, 4, 5)
    plain = keras.layers.Conv2D(5, (3, 3), padding="same", activation="relu")
    plain.build((None, 4, 4, CH))
    plain.set_weights(roi_conv.get_weights())
    ref = np.asarray(plain(x.reshape(6, 4, 4, CH))).reshape(2, 3, 4, 4, 5)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    assert [w.name for w in roi_conv.weights] == ["kernel", "bias"]
    assert tuple(roi_conv.kernel.shape) == (3, 3, CH, 5)
    with pytest.raises(ValueError, match=r"\[B, R, h, w, C\]"):
        RoiConv2D(5, 1)(keras.Input((4, 4, CH)))


@pytest.mark.parametrize("layer", [
    MergeRoiBatch(name="m"),
    SplitRoiBatch(name="s"),
    SqueezeRoiFeatures(name="pool_squeeze"),
    ReshapeBoxDeltas(7, name="mrcnn_bbox"),
    RoiConv2D(3, (1, 1), activation="sigmoid", name="mrcnn_mask"),
    BatchNorm(train_bn=False, name="bn"),
], ids=lambda layer: type(layer).__name__)
def test_custom_layer_config_round_trip(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer) and restored.get_config() == config
    assert keras.saving.get_registered_name(type(layer)) == f"mrcnn>{type(layer).__name__}"


# ----------------------------------------------------------------------------------------------
# heads
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def heads_model():
    pooled = keras.Input((None, 7, 7, CH), name="pooled")
    pooled_mask = keras.Input((None, 14, 14, CH), name="pooled_mask")
    logits, probs, bbox = fpn_classifier_graph(pooled, NUM_CLASSES, FC, train_bn=False)
    mask = build_fpn_mask_graph(pooled_mask, NUM_CLASSES, train_bn=False)
    return keras.Model([pooled, pooled_mask], [logits, probs, bbox, mask])


def test_heads_symbolic_shapes(heads_model):
    assert [tuple(t.shape) for t in heads_model.outputs] == [
        (None, None, NUM_CLASSES), (None, None, NUM_CLASSES), (None, None, NUM_CLASSES, 4),
        (None, None, 28, 28, NUM_CLASSES)]
    shapes = {layer.name: [tuple(w.shape) for w in layer.weights]
              for layer in heads_model.layers if layer.weights}
    assert shapes["mrcnn_class_conv1"] == [(7, 7, CH, FC), (FC,)]
    assert shapes["mrcnn_class_bn1"] == [(FC,)] * 4
    assert shapes["mrcnn_class_conv2"] == [(1, 1, FC, FC), (FC,)]
    assert shapes["mrcnn_class_logits"] == [(FC, NUM_CLASSES), (NUM_CLASSES,)]
    assert shapes["mrcnn_bbox_fc"] == [(FC, NUM_CLASSES * 4), (NUM_CLASSES * 4,)]
    assert shapes["mrcnn_mask_conv1"] == [(3, 3, CH, 256), (256,)]
    assert shapes["mrcnn_mask_conv4"] == [(3, 3, 256, 256), (256,)]
    assert shapes["mrcnn_mask_deconv"] == [(2, 2, 256, 256), (256,)]
    assert shapes["mrcnn_mask"] == [(1, 1, 256, NUM_CLASSES), (NUM_CLASSES,)]


@pytest.mark.parametrize("batch,rois", [(2, 3), (1, 3), (1, 5)])
def test_heads_dynamic_batch_and_rois(heads_model, batch, rois):
    x = _rand(batch, rois, 7, 7, CH, seed=batch)
    xm = _rand(batch, rois, 14, 14, CH, seed=rois)
    logits, probs, bbox, mask = (np.asarray(t) for t in heads_model([x, xm], training=False))
    assert logits.shape == probs.shape == (batch, rois, NUM_CLASSES)
    assert bbox.shape == (batch, rois, NUM_CLASSES, 4)
    assert mask.shape == (batch, rois, 28, 28, NUM_CLASSES)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(probs, e / e.sum(-1, keepdims=True), rtol=1e-5, atol=1e-6)
    assert ((mask >= 0) & (mask <= 1)).all()


def test_heads_rois_are_independent_and_keep_their_slot(heads_model):
    """Each ROI's outputs depend on its own crop only and land at its own [b, r] position."""
    x = _rand(2, 3, 7, 7, CH, seed=3)
    xm = _rand(2, 3, 14, 14, CH, seed=4)
    full = [np.asarray(t) for t in heads_model([x, xm], training=False)]
    for b, r in ((0, 0), (1, 2), (1, 0)):
        single = [np.asarray(t) for t in heads_model([x[b:b + 1, r:r + 1], xm[b:b + 1, r:r + 1]],
                                                       training=False)]
        for f, s in zip(full, single):
            np.testing.assert_allclose(f[b, r], s[0, 0], rtol=1e-4, atol=1e-5)


def test_mrcnn_bbox_is_bbox_fc_grouped_per_class(heads_model):
    taps = keras.Model(heads_model.inputs, [heads_model.get_layer("mrcnn_bbox_fc").output,
                                            heads_model.get_layer("mrcnn_bbox").output])
    x = _rand(1, 2, 7, 7, CH, seed=5)
    fc, bbox = (np.asarray(t) for t in taps([x, _rand(1, 2, 14, 14, CH)]))
    np.testing.assert_array_equal(bbox, fc.reshape(1, 2, NUM_CLASSES, 4))


def _mask_head_op_types(model, training, rois):
    """Op types of the graph of the mask head's gradient (:func:`_mask_head_gradient_graph`)."""
    return {op.type for op in _mask_head_gradient_graph(model, training, rois).get_operations()}


def _mask_head_gradient_graph(model, training, rois):
    """The traced graph of the mask head's gradient with respect to ``mrcnn_mask_conv2``,
    ``rois`` per image (None: unknown when traced, as in the training model after the
    valid-ROI gather)."""
    x = tf.TensorSpec((1, rois, 7, 7, CH), tf.float32)
    xm = tf.TensorSpec((1, rois, 14, 14, CH), tf.float32)

    @tf.function
    def gradients(x, xm):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model([x, xm], training=training)[3])
        return tape.gradient(loss, model.get_layer("mrcnn_mask_conv2").kernel)

    return gradients.get_concrete_function(x, xm).graph


def test_mask_head_convolutions_are_winograd_where_shapes_allow(heads_model, monkeypatch):
    convs = [heads_model.get_layer(f"mrcnn_mask_conv{i}") for i in range(1, 5)]
    assert all(isinstance(c, FeatureConv2D) and not c.gemm_filter_gradient for c in convs)
    x = _rand(2, 3, 7, 7, CH, seed=8)
    xm = _rand(2, 3, 14, 14, CH, seed=9)
    winograd = np.asarray(heads_model([x, xm], training=False)[3])
    with direct_convolutions():
        direct = np.asarray(heads_model([x, xm], training=False)[3])
    np.testing.assert_allclose(winograd, direct, rtol=1e-4, atol=1e-5)
    # conv2..4 take 256 channels: Winograd's products at inference (compiled), and in
    # training in the XLA-free form, over an unknown ROI count too (forward, input and
    # filter gradient; no convolution op left for them).
    assert "BatchMatMulV2" in _mask_head_op_types(heads_model, False, None)
    dynamic = _mask_head_op_types(heads_model, True, None)
    assert xla_free_winograd_transform_op() in dynamic and "BatchMatMulV2" in dynamic
    # With the compiled training form switched on, a ROI count known when traced (maps of
    # MIN_TRAINING_MAP pixels) takes it; an unknown count the XLA-free form again.
    monkeypatch.setattr(winograd_module, "COMPILED_TRAINING", True)
    monkeypatch.setattr(winograd_module, "MIN_TRAINING_MAP", 14 * 14)
    static = _mask_head_gradient_graph(heads_model, True, 3)
    assert "BatchMatMulV2" in {op.type for op in static.get_operations()}
    assert xla_compiled_calls(static)  # the compiled form's gradient; the XLA-free form has none


def test_heads_reject_bad_inputs():
    with pytest.raises(ValueError, match="pooled"):
        fpn_classifier_graph(keras.Input((7, 7, CH)), NUM_CLASSES)
    with pytest.raises(ValueError, match="num_classes"):
        build_fpn_mask_graph(keras.Input((None, 14, 14, CH)), 1)
    with pytest.raises(ValueError, match="fc_layers_size"):
        fpn_classifier_graph(keras.Input((None, 7, 7, CH)), NUM_CLASSES, fc_layers_size=0)


def test_heads_model_save_and_reload(heads_model, tmp_path):
    path = tmp_path / "heads.keras"
    heads_model.save(path)
    reloaded = keras.saving.load_model(path)  # safe_mode: fails if anything were a Lambda
    x = _rand(1, 2, 7, 7, CH, seed=6)
    xm = _rand(1, 2, 14, 14, CH, seed=7)
    for a, b in zip(heads_model([x, xm]), reloaded([x, xm])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
    assert reloaded.get_layer("mrcnn_class_bn1").train_bn is False


# ----------------------------------------------------------------------------------------------
# RPN
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rpn_model():
    return build_rpn_model(anchor_stride=1, anchors_per_location=3, depth=CH)


def test_rpn_model_structure(rpn_model):
    assert rpn_model.name == "rpn_model"
    assert rpn_model.inputs[0].name == "input_rpn_feature_map"
    assert tuple(rpn_model.inputs[0].shape) == (None, None, None, CH)
    weights = [(layer.name, w.name, tuple(w.shape))
               for layer in rpn_model.layers for w in layer.weights]
    assert weights == [
        ("rpn_conv_shared", "kernel", (3, 3, CH, 512)), ("rpn_conv_shared", "bias", (512,)),
        ("rpn_class_raw", "kernel", (1, 1, 512, 6)), ("rpn_class_raw", "bias", (6,)),
        ("rpn_bbox_pred", "kernel", (1, 1, 512, 12)), ("rpn_bbox_pred", "bias", (12,)),
    ]


def test_rpn_model_outputs_on_16x16(rpn_model):
    x = _rand(2, 16, 16, CH, seed=8)
    logits, probs, bbox = (np.asarray(t) for t in rpn_model(x))
    assert logits.shape == probs.shape == (2, 16 * 16 * 3, 2)
    assert bbox.shape == (2, 16 * 16 * 3, 4)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(probs, e / e.sum(-1, keepdims=True), rtol=1e-5, atol=1e-6)


def test_rpn_anchor_order_is_row_col_anchor(rpn_model):
    taps = keras.Model(rpn_model.input, [rpn_model.get_layer("rpn_class_raw").output,
                                          rpn_model.get_layer("rpn_bbox_pred").output,
                                          *rpn_model.outputs])
    x = _rand(1, 5, 6, CH, seed=9)
    raw_class, raw_bbox, logits, _, bbox = (np.asarray(t) for t in taps(x))
    y, xx, a = 3, 4, 2
    index = (y * 6 + xx) * 3 + a
    np.testing.assert_array_equal(logits[0, index], raw_class[0, y, xx, 2 * a:2 * a + 2])
    np.testing.assert_array_equal(bbox[0, index], raw_bbox[0, y, xx, 4 * a:4 * a + 4])


def test_rpn_conv_channels_option():
    """RPN_CONV_CHANNELS: 256 as torchvision/detectron2 (512, the classic layout, by default)."""
    model = build_rpn_model(1, 3, CH, conv_channels=256)
    shapes = {(layer.name, w.name): tuple(w.shape) for layer in model.layers for w in layer.weights}
    assert shapes[("rpn_conv_shared", "kernel")] == (3, 3, CH, 256)
    assert shapes[("rpn_class_raw", "kernel")] == (1, 1, 256, 6)
    assert shapes[("rpn_bbox_pred", "kernel")] == (1, 1, 256, 12)
    logits, _, bbox = model(_rand(1, 4, 4, CH))
    assert tuple(logits.shape) == (1, 48, 2) and tuple(bbox.shape) == (1, 48, 4)
    with pytest.raises(ValueError, match="conv_channels"):
        build_rpn_model(1, 3, CH, conv_channels=0)


def test_classic_rpn_weights_into_a_256_channel_rpn_name_the_config_field(tmp_path, rpn_model):
    from mrcnn.model.weights_io import load_classic_weights, save_classic_weights
    path = str(tmp_path / "rpn512.h5")
    save_classic_weights(keras.Model(rpn_model.inputs, rpn_model.outputs, name="wrap"), path)
    narrow = build_rpn_model(1, 3, CH, conv_channels=256)
    before = [w.copy() for w in narrow.get_weights()]
    with pytest.raises(ValueError, match=r"RPN_CONV_CHANNELS = 512"):
        load_classic_weights(keras.Model(narrow.inputs, narrow.outputs, name="wrap"), path)
    for old, new in zip(before, narrow.get_weights()):
        np.testing.assert_array_equal(old, new)  # nothing assigned


def test_rpn_anchor_stride_2():
    model = build_rpn_model(anchor_stride=2, anchors_per_location=2, depth=CH)
    logits, _, bbox = model(_rand(1, 8, 8, CH))
    assert tuple(logits.shape) == (1, 4 * 4 * 2, 2)
    assert tuple(bbox.shape) == (1, 4 * 4 * 2, 4)
    with pytest.raises(ValueError, match="anchors_per_location"):
        build_rpn_model(1, 0, CH)


def test_rpn_graph_concatenates_levels_in_order(rpn_model):
    sizes = (8, 4, 2)
    maps = [keras.Input((s, s, CH)) for s in sizes]
    outputs = rpn_graph(maps, rpn_model)
    model = keras.Model(maps, outputs)
    assert [model.get_layer(n).output.shape[1] for n in
            ("rpn_class_logits", "rpn_class", "rpn_bbox")] == [(64 + 16 + 4) * 3] * 3
    assert outputs[1] is model.get_layer("rpn_class").output
    xs = [_rand(2, s, s, CH, seed=s) for s in sizes]
    logits, probs, bbox = (np.asarray(t) for t in model(xs))
    start = 0
    for x in xs:
        lvl_logits, lvl_probs, lvl_bbox = (np.asarray(t) for t in rpn_model(x))
        stop = start + lvl_logits.shape[1]
        np.testing.assert_allclose(logits[:, start:stop], lvl_logits, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(probs[:, start:stop], lvl_probs, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(bbox[:, start:stop], lvl_bbox, rtol=1e-5, atol=1e-6)
        start = stop
    with pytest.raises(ValueError, match="feature_maps"):
        rpn_graph([], rpn_model)


def test_heads_pass_batch_norm_momentum_to_every_batchnorm():
    pooled = keras.Input((None, 7, 7, CH))
    pooled_mask = keras.Input((None, 14, 14, CH))
    outputs = list(fpn_classifier_graph(pooled, NUM_CLASSES, FC, bn_momentum=0.9))
    outputs.append(build_fpn_mask_graph(pooled_mask, NUM_CLASSES, bn_momentum=0.9))
    model = keras.Model([pooled, pooled_mask], outputs)
    norms = [layer for layer in model.layers if isinstance(layer, BatchNorm)]
    assert len(norms) == 6  # mrcnn_class_bn1/2 and mrcnn_mask_bn1..4
    assert all(layer.momentum == pytest.approx(0.9) for layer in norms)
