"""Tests for mrcnn.model.losses against NumPy re-computations on tiny random inputs."""
import numpy as np
import pytest

import tensorflow as tf
import keras

from mrcnn.model import losses  # noqa: E402
from mrcnn.model.losses import (  # noqa: E402
    LOSS_NAMES,
    MrcnnBboxLoss,
    MrcnnClassLoss,
    MrcnnMaskLoss,
    RpnBboxLoss,
    RpnClassLoss,
    mrcnn_bbox_loss,
    mrcnn_class_loss,
    mrcnn_mask_loss,
    rpn_bbox_loss,
    rpn_class_loss,
)


# ----------------------------------------------------------------------------------------------
# NumPy references
# ----------------------------------------------------------------------------------------------
def np_smooth_l1(a, b):
    d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    return np.where(d < 1, 0.5 * d ** 2, d - 0.5)


def np_softmax_ce(logits, label):
    logits = np.asarray(logits, np.float64)
    return np.log(np.sum(np.exp(logits))) - logits[label]


def np_rpn_class(match, logits):
    terms = [np_softmax_ce(logits[b, a], int(match[b, a, 0] == 1))
             for b in range(match.shape[0]) for a in range(match.shape[1]) if match[b, a, 0] != 0]
    return np.mean(terms) if terms else 0.0


def np_rpn_bbox(target, match, pred):
    terms = []
    for b in range(match.shape[0]):
        positives = np.flatnonzero(match[b, :, 0] == 1)
        for r, a in enumerate(positives):
            terms.append(np_smooth_l1(target[b, r], pred[b, a]))
    return np.mean(terms) if terms else 0.0


def np_mrcnn_class(target, logits, active, rois):
    total = weight = 0.0
    for b in range(target.shape[0]):
        for t in range(target.shape[1]):
            if not np.any(rois[b, t]):
                continue
            w = active[b, np.argmax(logits[b, t])]
            total += w * np_softmax_ce(logits[b, t], target[b, t])
            weight += w
    return total / weight if weight else 0.0


def np_mrcnn_bbox(target, ids, pred):
    terms = [np_smooth_l1(target[b, t], pred[b, t, ids[b, t]])
             for b in range(ids.shape[0]) for t in range(ids.shape[1]) if ids[b, t] > 0]
    return np.mean(terms) if terms else 0.0


def np_mrcnn_mask(target, ids, pred):
    terms = []
    for b in range(target.shape[0]):
        for m in range(target.shape[1]):
            if ids[b, m] > 0:
                p = np.clip(pred[b, m, :, :, ids[b, m]].astype(np.float64), 1e-7, 1 - 1e-7)
                y = target[b, m]
                terms.append(-(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return np.mean(terms) if terms else 0.0


def value(x):
    x = np.asarray(x)
    assert x.shape == () and x.dtype == np.float32
    return float(x)


# ----------------------------------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------------------------------
def rpn_inputs(rng, b=2, a=12, k=6):
    match = rng.choice([-1, 0, 1], size=(b, a, 1)).astype(np.int32)
    match[1, :, 0] = np.where(np.arange(a) < 3, 1, match[1, :, 0])  # >= 3 positives in image 1
    logits = rng.normal(size=(b, a, 2)).astype(np.float32)
    pred = rng.normal(scale=1.5, size=(b, a, 4)).astype(np.float32)  # both smooth-L1 branches
    target = np.zeros((b, k, 4), np.float32)
    for i in range(b):
        match[i, np.flatnonzero(match[i, :, 0] == 1)[k:], 0] = 0  # at most k positives
        count = int(np.sum(match[i] == 1))
        target[i, :count] = rng.normal(size=(count, 4))
    return match, logits, target, pred


def head_inputs(rng, b=2, t=5, nc=4, m=3, h=4):
    ids = np.array([[2, 1, 0, 0, 0], [3, 0, 1, 0, 0]], np.int32)[:b, :t]
    rois = rng.uniform(0.1, 0.9, size=(b, t, 4)).astype(np.float32)
    rois[0, 4] = 0  # padding
    rois[1, 3:] = 0
    logits = rng.normal(size=(b, t, nc)).astype(np.float32)
    active = np.ones((b, nc), np.float32)
    target_bbox = np.where(ids[..., None] > 0, rng.normal(size=(b, t, 4)), 0).astype(np.float32)
    pred_bbox = rng.normal(scale=1.5, size=(b, t, nc, 4)).astype(np.float32)
    target_masks = (rng.random((b, m, h, h)) < 0.5).astype(np.float32)
    pred_masks = rng.uniform(0.01, 0.99, size=(b, m, h, h, nc)).astype(np.float32)
    return ids, rois, logits, active, target_bbox, pred_bbox, target_masks, pred_masks


# ----------------------------------------------------------------------------------------------
# values
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1])
def test_rpn_losses_match_numpy(seed):
    match, logits, target, pred = rpn_inputs(np.random.default_rng(seed))
    assert np.sum(match == 1) > 0 and np.sum(match == 0) > 0
    np.testing.assert_allclose(value(rpn_class_loss(match, logits)),
                               np_rpn_class(match, logits), rtol=1e-5)
    np.testing.assert_allclose(value(rpn_bbox_loss(target, match, pred)),
                               np_rpn_bbox(target, match, pred), rtol=1e-5)
    # rpn_match may also come as [B, A].
    np.testing.assert_allclose(value(rpn_class_loss(match[..., 0], logits)),
                               np_rpn_class(match, logits), rtol=1e-5)


def test_rpn_bbox_pairs_positives_with_target_rows_in_anchor_order():
    match = np.zeros((2, 5, 1), np.int32)
    match[0, [1, 3], 0] = 1
    match[0, 0, 0] = -1
    match[1, 4, 0] = 1
    pred = np.zeros((2, 5, 4), np.float32)
    target = np.zeros((2, 3, 4), np.float32)
    target[0, 0] = [0.5, 0, 0, 0]   # anchor 1: 0.5 * 0.25 = 0.125
    target[0, 1] = [0, 3.0, 0, 0]   # anchor 3: 3 - 0.5 = 2.5
    target[1, 0] = [0, 0, -1.0, 0]  # anchor 4 of image 1: 1 - 0.5 = 0.5
    target[0, 2] = [9, 9, 9, 9]     # no third positive: unused
    np.testing.assert_allclose(value(rpn_bbox_loss(target, match, pred)),
                               (0.125 + 2.5 + 0.5) / 12, rtol=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_head_losses_match_numpy(seed):
    ids, rois, logits, active, tb, pb, tm, pm = head_inputs(np.random.default_rng(seed))
    active[1, 2] = 0
    np.testing.assert_allclose(value(mrcnn_class_loss(ids, logits, active, rois)),
                               np_mrcnn_class(ids, logits, active, rois), rtol=1e-5)
    np.testing.assert_allclose(value(mrcnn_bbox_loss(tb, ids, pb)), np_mrcnn_bbox(tb, ids, pb),
                               rtol=1e-5)
    np.testing.assert_allclose(value(mrcnn_mask_loss(tm, ids, pm)), np_mrcnn_mask(tm, ids, pm),
                               rtol=1e-5)


def test_mask_loss_uses_only_the_first_m_slots_and_target_class_channel():
    ids = np.array([[1, 0, 2, 2]], np.int32)  # slot 2 is positive but beyond M = 2
    target = np.ones((1, 2, 1, 1), np.float32)
    pred = np.full((1, 2, 1, 1, 3), 0.01, np.float32)
    pred[0, 0, 0, 0, 1] = 0.5  # the channel of class 1
    np.testing.assert_allclose(value(mrcnn_mask_loss(target, ids, pred)), -np.log(0.5),
                               rtol=1e-6)


def test_no_positives_give_zero_not_nan():
    b, a, t, nc = 2, 6, 4, 3
    zeros_match = np.zeros((b, a, 1), np.int32)
    assert value(rpn_class_loss(zeros_match, np.ones((b, a, 2), np.float32))) == 0.0
    negatives = -np.ones((b, a, 1), np.int32)
    assert value(rpn_bbox_loss(np.ones((b, 3, 4), np.float32), negatives,
                               np.ones((b, a, 4), np.float32))) == 0.0
    ids = np.zeros((b, t), np.int32)
    assert value(mrcnn_bbox_loss(np.ones((b, t, 4), np.float32), ids,
                                 np.ones((b, t, nc, 4), np.float32))) == 0.0
    assert value(mrcnn_mask_loss(np.ones((b, 2, 3, 3), np.float32), ids,
                                 np.full((b, 2, 3, 3, nc), 0.5, np.float32))) == 0.0
    # All ROIs padding: nothing to classify.
    assert value(mrcnn_class_loss(ids, np.ones((b, t, nc), np.float32),
                                  np.ones((b, nc), np.float32),
                                  np.zeros((b, t, 4), np.float32))) == 0.0


def test_class_loss_uses_each_images_active_classes():
    # Both images predict class 2 (with different losses); class 2 is inactive in image 1 only.
    logits = np.array([[[0.0, 0.0, 3.0]], [[0.0, 1.0, 2.0]]], np.float32)
    targets = np.array([[1], [1]], np.int32)
    rois = np.full((2, 1, 4), 0.5, np.float32)
    active = np.array([[1, 1, 1], [1, 1, 0]], np.float32)
    ce = np_softmax_ce(logits[0, 0], 1)
    # Fixed: only image 0 counts. The classic code (first image's active ids) would average
    # both images' losses.
    assert abs(ce - np_softmax_ce(logits[1, 0], 1)) > 0.1
    np.testing.assert_allclose(value(mrcnn_class_loss(targets, logits, active, rois)), ce,
                               rtol=1e-6)
    # The other way round: image 0 inactive -> only image 1 counts, with its own loss.
    np.testing.assert_allclose(value(mrcnn_class_loss(targets, logits, active[::-1], rois)),
                               np_softmax_ce(logits[1, 0], 1), rtol=1e-6)


def test_class_loss_ignores_zero_padded_rois():
    logits = np.array([[[2.0, 0.0], [5.0, -5.0], [-3.0, 3.0]]], np.float32)
    targets = np.array([[1, 0, 0]], np.int32)
    rois = np.array([[[0.1, 0.1, 0.5, 0.5], [0, 0, 0, 0], [0, 0, 0, 0]]], np.float32)
    active = np.ones((1, 2), np.float32)
    np.testing.assert_allclose(value(mrcnn_class_loss(targets, logits, active, rois)),
                               np_softmax_ce(logits[0, 0], 1), rtol=1e-6)


def test_gradients_flow_to_predictions():
    rng = np.random.default_rng(4)
    match, rpn_logits, rpn_target, rpn_pred = rpn_inputs(rng)
    ids, rois, logits, active, tb, pb, tm, pm = head_inputs(rng)
    cases = [
        (lambda p: rpn_class_loss(match, p), rpn_logits),
        (lambda p: rpn_bbox_loss(rpn_target, match, p), rpn_pred),
        (lambda p: mrcnn_class_loss(ids, p, active, rois), logits),
        (lambda p: mrcnn_bbox_loss(tb, ids, p), pb),
        (lambda p: mrcnn_mask_loss(tm, ids, p), pm),
    ]
    for fn, pred in cases:
        pred = tf.Variable(pred)
        with tf.GradientTape() as tape:
            loss = fn(pred)
        grad = tape.gradient(loss, pred)
        assert grad is not None
        grad = np.asarray(grad)
        assert np.all(np.isfinite(grad)) and np.any(grad != 0)
    # Padded ROIs and non-target classes get no gradient.
    pred = tf.Variable(pb)
    with tf.GradientTape() as tape:
        loss = mrcnn_bbox_loss(tb, ids, pred)
    grad = np.asarray(tape.gradient(loss, pred))
    assert np.all(grad[0, 0, [0, 1, 3]] == 0) and np.any(grad[0, 0, 2] != 0)
    assert np.all(grad[ids == 0] == 0)


# ----------------------------------------------------------------------------------------------
# layers
# ----------------------------------------------------------------------------------------------
LAYERS = [RpnClassLoss, RpnBboxLoss, MrcnnClassLoss, MrcnnBboxLoss, MrcnnMaskLoss]


def test_loss_names_and_layers():
    assert LOSS_NAMES == ("rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss",
                          "mrcnn_bbox_loss", "mrcnn_mask_loss")
    for cls, name in zip(LAYERS, LOSS_NAMES):
        layer = cls()
        assert layer.name == name
        assert cls(name="other").name == "other"
        config = layer.get_config()
        clone = cls.from_config(config)
        assert clone.name == name and clone.get_config() == config
        restored = keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(layer))
        assert type(restored) is cls
        assert layer.compute_output_shape([(None, 3)]) == ()
    assert set(losses.__all__) >= {"LOSS_NAMES", *(c.__name__ for c in LAYERS)}


def test_loss_layers_in_a_model_give_numpy_values():
    rng = np.random.default_rng(5)
    match, rpn_logits, rpn_target, rpn_pred = rpn_inputs(rng)
    ids, rois, logits, active, tb, pb, tm, pm = head_inputs(rng)
    arrays = [match, rpn_logits, rpn_target, rpn_pred, ids, rois, logits, active, tb, pb, tm, pm]
    inputs = [keras.Input(a.shape[1:], dtype="int32" if a.dtype == np.int32 else "float32")
              for a in arrays]
    i_match, i_rl, i_rt, i_rp, i_ids, i_rois, i_logits, i_active, i_tb, i_pb, i_tm, i_pm = inputs
    outputs = [
        RpnClassLoss()([i_match, i_rl]),
        RpnBboxLoss()([i_rt, i_match, i_rp]),
        MrcnnClassLoss()([i_ids, i_logits, i_active, i_rois]),
        MrcnnBboxLoss()([i_tb, i_ids, i_pb]),
        MrcnnMaskLoss()([i_tm, i_ids, i_pm]),
    ]
    assert all(tuple(o.shape) == () for o in outputs)
    model = keras.Model(inputs, outputs)
    assert [layer.name for layer in model.layers[-5:]] == list(LOSS_NAMES)
    got = model(arrays)
    expected = [np_rpn_class(match, rpn_logits), np_rpn_bbox(rpn_target, match, rpn_pred),
                np_mrcnn_class(ids, logits, active, rois), np_mrcnn_bbox(tb, ids, pb),
                np_mrcnn_mask(tm, ids, pm)]
    for g, e in zip(got, expected):
        np.testing.assert_allclose(value(g), e, rtol=1e-5)
    with pytest.raises(ValueError, match="rpn_match, rpn_class_logits"):
        RpnClassLoss()([match])
