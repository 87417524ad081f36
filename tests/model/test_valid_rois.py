"""Tests for mrcnn.model.valid_rois and the mask head run on valid ROIs only."""
import numpy as np
import pytest

import keras
import tensorflow as tf

from mrcnn.model.heads import build_fpn_mask_graph
from mrcnn.model.valid_rois import GatherValidRois, ScatterValidRois

NUM_CLASSES = 3
CH = 8


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _round_trip(x, valid, column=None):
    rows, indices = GatherValidRois(column)([x, valid])
    return rows.numpy(), indices.numpy(), ScatterValidRois(column)([rows, indices, valid]).numpy()


def test_gather_then_scatter_keeps_valid_rows_and_zeroes_the_rest():
    x = _rand(6, 2, 2, 3)  # B=2, R=3 merged
    valid = np.array([[2, 0, 1], [0, 0, 5]], np.float32)  # class ids: > 0 = valid
    rows, indices, merged = _round_trip(x, valid)
    assert list(indices) == [0, 2, 5]
    np.testing.assert_array_equal(rows, x[[0, 2, 5]])
    expected = x * (valid.reshape(-1) > 0)[:, None, None, None]
    np.testing.assert_array_equal(merged, expected)
    # negative ids (crowds) are not valid; a column of detections [B, R, 6] can be tested
    detections = np.zeros((2, 3, 6), np.float32)
    detections[0, 1, 4] = 3.0
    detections[1, 0, 4] = -1.0
    rows, indices, merged = _round_trip(x, detections, column=4)
    assert list(indices) == [1]
    np.testing.assert_array_equal(merged[1], x[1])
    assert not merged[[0, 2, 3, 4, 5]].any()


def test_nothing_valid_gathers_one_stand_in_row_and_returns_zeros():
    x = _rand(4, 2, 2, 3)
    rows, indices, merged = _round_trip(x, np.zeros((2, 2), np.float32))
    assert rows.shape == (1, 2, 2, 3) and list(indices) == [0]
    assert not merged.any()
    with pytest.raises(ValueError, match="column must be"):
        GatherValidRois(-1)


@pytest.fixture
def mask_heads():
    """The same mask head weights with and without ``valid``; BatchNorm trains (TRAIN_BN None)."""
    pooled = keras.Input((None, 14, 14, CH))
    valid = keras.Input((None,))
    keras.utils.set_random_seed(1)
    full = keras.Model(pooled, build_fpn_mask_graph(pooled, NUM_CLASSES, train_bn=None))
    keras.utils.set_random_seed(1)
    selected = keras.Model([pooled, valid], build_fpn_mask_graph(
        pooled, NUM_CLASSES, train_bn=None, valid=valid))
    selected.set_weights(full.get_weights())
    return full, selected


def test_mask_head_on_valid_rois_equals_the_full_head_there(mask_heads):
    full, selected = mask_heads
    pooled = _rand(2, 4, 14, 14, CH, seed=3)
    valid = np.array([[1, 1, 0, 0], [2, 0, 0, 0]], np.float32)
    out_full = full(pooled, training=False).numpy()
    out_selected = selected([pooled, valid], training=False).numpy()
    assert out_selected.shape == out_full.shape == (2, 4, 28, 28, NUM_CLASSES)
    keep = valid > 0
    np.testing.assert_allclose(out_selected[keep], out_full[keep], rtol=1e-5, atol=1e-6)
    # invalid slots: all-zero masks (the final 1x1 sigmoid runs on the valid rows only)
    assert not out_selected[~keep].any()
    graph_types = {type(layer).__name__ for layer in selected.layers}
    assert {"GatherValidRois", "ValidRoisConv2D"} <= graph_types
    # the scatter moves NUM_CLASSES channels, not the head's 256: no layer of the
    # selected head outputs the scattered wide tensor
    wide_merged = [layer.name for layer in selected.layers
                   for out in keras.tree.flatten(layer.output)
                   if tuple(out.shape)[-3:] == (28, 28, 256)]
    assert wide_merged == ["mrcnn_mask_deconv"]


def test_gradients_reach_valid_rois_only_and_equal_the_full_heads(mask_heads):
    full, selected = mask_heads
    pooled = tf.constant(_rand(1, 5, 14, 14, CH, seed=4))
    valid = tf.constant([[0, 3, 0, 1, 0]], tf.float32)
    keep = valid.numpy() > 0
    grads = []
    for model, inputs in ((full, pooled), (selected, [pooled, valid])):
        with tf.GradientTape() as tape:
            tape.watch(pooled)
            out = model(inputs, training=False)
            loss = tf.reduce_sum(tf.boolean_mask(out, keep) ** 2)
        grads.append(tape.gradient(loss, pooled).numpy())
    np.testing.assert_allclose(grads[1][keep], grads[0][keep], rtol=1e-4, atol=1e-6)
    assert not grads[1][~keep].any()


def test_training_batch_norm_statistics_come_from_the_valid_rois(mask_heads):
    """In training mode the invalid slots (here huge values) change nothing: the head on
    [valid, invalid] equals the full head on the valid ROIs alone."""
    full, selected = mask_heads
    pooled = _rand(1, 6, 14, 14, CH, seed=5)
    pooled[0, 3:] = 1e3
    valid = np.array([[1, 1, 1, 0, 0, 0]], np.float32)
    alone = full(pooled[:, :3], training=True).numpy()
    mixed = selected([pooled, valid], training=True).numpy()
    np.testing.assert_allclose(mixed[:, :3], alone, rtol=1e-4, atol=1e-5)
    assert np.isfinite(selected([pooled, np.zeros_like(valid)], training=True).numpy()).all()
