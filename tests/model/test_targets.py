"""Tests for mrcnn.model.targets: DetectionTargetLayer, NormalizeBoxes, RoiSlice.

Hand-built geometry on a 64x64 image. Boxes are written in "grid" units g = normalized * 63,
i.e. the pixel coordinates crop_and_resize samples at, so that a ROI of height 28 with 8 mask
rows samples exactly every 4th pixel and the expected mask target is a NumPy slice.
"""
import numpy as np
import pytest

import tensorflow as tf
import keras

from mrcnn.model.targets import DetectionTargetLayer, NormalizeBoxes, RoiSlice  # noqa: E402
from mrcnn.ops.boxes import box_refinement, norm_boxes  # noqa: E402

STD = (0.1, 0.1, 0.2, 0.2)
SIZE = 64


def g(*box):
    """Grid-unit box -> normalized float32 box."""
    return np.array(box, np.float32) / (SIZE - 1)


GT1, GT2 = (8, 8, 36, 36), (42, 42, 63, 63)
# name: (grid box, expected role, assigned GT index)
PROPOSALS = {
    "p_gt1": ((8, 8, 36, 36), "pos", 0),     # IoU 1 with GT1
    "p_gt1_left": ((8, 8, 36, 29), "pos", 0),  # IoU 0.75
    "p_gt2": ((42, 42, 63, 56), "pos", 1),   # IoU 0.667
    "n_corner": ((0, 0, 7, 7), "neg", None),  # IoU 0
    "n_thin": ((8, 8, 36, 15), "neg", None),  # IoU 0.25
    "n_gt2": ((42, 42, 63, 49), "neg", None),  # IoU 0.333
}


def make_layer(t=8, ratio=0.5, mask_shape=(8, 8), mini=False, **kwargs):
    return DetectionTargetLayer(t, ratio, mask_shape, mini, STD, seed=3, **kwargs)


def hand_case(n=10, rng=None, rectangular=False):
    """One image: proposals [1, n, 4], class ids [1, 3], boxes [1, 3, 4], masks [1, 64, 64, 3]."""
    proposals = np.zeros((1, n, 4), np.float32)
    for i, (box, _, _) in enumerate(PROPOSALS.values()):
        proposals[0, i] = g(*box)
    gt_boxes = np.zeros((1, 3, 4), np.float32)
    gt_boxes[0, 0], gt_boxes[0, 1] = g(*GT1), g(*GT2)
    class_ids = np.array([[1, 2, 0]], np.int32)
    masks = np.zeros((1, SIZE, SIZE, 3), bool)
    for k, (y1, x1, y2, x2) in enumerate((GT1, GT2)):
        if rectangular:
            masks[0, y1:y2 + 1, x1:x2 + 1, k] = True
        else:
            masks[0, y1:y2 + 1, x1:x2 + 1, k] = rng.random((y2 - y1 + 1, x2 - x1 + 1)) < 0.5
    return proposals, class_ids, gt_boxes, masks


def numpy_outputs(outputs, b=0):
    return [np.asarray(o)[b] for o in outputs]


def slot_of(rois, box):
    """Index of the output ROI equal to ``box`` (normalized), asserting it is there once."""
    hits = np.flatnonzero(np.all(np.abs(rois - box) < 1e-6, axis=1))
    assert hits.size == 1, (box, rois)
    return int(hits[0])


def test_hand_built_roles_targets_and_masks():
    rng = np.random.default_rng(0)
    inputs = hand_case(rng=rng)
    masks = inputs[3]
    rois, class_ids, deltas, mask_targets = numpy_outputs(make_layer()(list(inputs)))
    assert rois.shape == (8, 4) and class_ids.dtype == np.int32
    assert mask_targets.shape == (4, 8, 8)  # M = int(8 * 0.5)

    # 3 positives (quota 4), then int(3 / 0.5) - 3 = 3 negatives, then 2 zero rows.
    slots = {name: slot_of(rois, g(*box)) for name, (box, _, _) in PROPOSALS.items()}
    for name, (box, role, gt) in PROPOSALS.items():
        s = slots[name]
        if role == "pos":
            assert s < 3
            assert class_ids[s] == gt + 1
            gt_box = inputs[2][0, gt]
            expected = box_refinement(g(*box)[None], gt_box[None])[0] / np.array(STD)
            np.testing.assert_allclose(deltas[s], expected, atol=1e-5)
        else:
            assert 3 <= s < 6
            assert class_ids[s] == 0
            np.testing.assert_array_equal(deltas[s], 0)
    np.testing.assert_array_equal(rois[6:], 0)
    np.testing.assert_array_equal(class_ids[6:], 0)

    # Hand crops: the ROI samples land on whole pixels (see module docstring).
    expected = {
        "p_gt1": masks[0, 8:37:4, 8:37:4, 0],
        "p_gt1_left": masks[0, 8:37:4, 8:30:3, 0],
        "p_gt2": masks[0, 42:64:3, 42:57:2, 1],
    }
    for name, crop in expected.items():
        np.testing.assert_array_equal(mask_targets[slots[name]], crop.astype(np.float32))
    # Slot 3 is a negative: no mask target.
    np.testing.assert_array_equal(mask_targets[3], 0)
    assert set(np.unique(mask_targets)) <= {0.0, 1.0}


def test_mini_masks_match_full_masks_for_rectangles():
    proposals, class_ids, gt_boxes, full = hand_case(rectangular=True)
    # Two more positives that stick out of GT1 by 4 grid units (IoU 0.75 each).
    proposals[0, 6] = g(8, 4, 36, 32)
    proposals[0, 7] = g(4, 8, 32, 36)
    mini = np.ones((1, 14, 14, 3), bool)
    mini[..., 2] = False  # the padding GT slot
    full_out = numpy_outputs(make_layer(ratio=0.75)([proposals, class_ids, gt_boxes, full]))
    mini_out = numpy_outputs(make_layer(ratio=0.75, mini=True)(
        [proposals, class_ids, gt_boxes, mini]))
    assert full_out[3].shape == (6, 8, 8)

    sticking_out = slot_of(full_out[0], g(8, 4, 36, 32))
    expected = np.ones((8, 8), np.float32)
    expected[:, 0] = 0  # the first column samples pixel x = 4, outside the mask
    np.testing.assert_array_equal(full_out[3][sticking_out], expected)
    for name in ("p_gt1", "p_gt2"):
        np.testing.assert_array_equal(full_out[3][slot_of(full_out[0], g(*PROPOSALS[name][0]))],
                                      1.0)

    for s in range(5):  # the 5 positives
        box = full_out[0][s]
        t = slot_of(mini_out[0], box)
        assert mini_out[1][t] == full_out[1][s]
        np.testing.assert_allclose(mini_out[2][t], full_out[2][s], atol=1e-5)
        # Float rounding on the mask edge may flip at most one row or column.
        assert np.sum(mini_out[3][t] != full_out[3][s]) <= 8


def test_positive_quota_and_negative_ratio():
    rng = np.random.default_rng(1)
    n = 30
    proposals = np.zeros((1, n, 4), np.float32)
    # 12 positives inside GT1 (each side moved in by < 3 grid units: IoU > 0.79), 18 far-away
    # negatives.
    for i in range(12):
        a, b, c, d = rng.uniform(0, 3, 4)
        proposals[0, i] = g(8 + a, 8 + b, 36 - c, 36 - d)
    for i in range(12, n):
        y, x = rng.uniform(40, 50, 2)
        proposals[0, i] = g(y, x, y + 10, x + 10)
    gt_boxes = np.zeros((1, 2, 4), np.float32)
    gt_boxes[0, 0] = g(*GT1)
    class_ids = np.array([[3, 0]], np.int32)
    masks = np.ones((1, 8, 8, 2), bool)
    layer = make_layer(t=10, ratio=0.2, mini=True)  # quota 2 positives, then 8 negatives
    chosen = set()
    for _ in range(3):
        rois, ids, deltas, mask_targets = numpy_outputs(
            layer([proposals, class_ids, gt_boxes, masks]))
        np.testing.assert_array_equal(ids, [3, 3] + [0] * 8)
        for s, roi in enumerate(rois):
            i = slot_of(proposals[0], roi)
            assert (i < 12) == (s < 2)
            if s < 2:
                chosen.add(i)
        assert np.all(deltas[:2] != 0) and np.all(deltas[2:] == 0)
        np.testing.assert_array_equal(mask_targets, 1.0)  # M = 2: both positive, inside GT
    assert len(chosen) > 2  # the draw is random, not the first positives every time

    # One positive: int(1 / 0.2) - 1 = 4 negatives, 5 zero rows.
    proposals[0, 1:12] = 0
    rois, ids, _, mask_targets = numpy_outputs(layer([proposals, class_ids, gt_boxes, masks]))
    assert ids[0] == 3 and np.all(ids[1:] == 0)
    assert np.all(np.any(rois[:5] != 0, axis=1)) and np.all(rois[5:] == 0)
    np.testing.assert_array_equal(mask_targets[1], 0)


def test_image_without_gt_gets_background_rois():
    proposals, _, _, _ = hand_case(rectangular=True)
    gt_boxes = np.zeros((1, 3, 4), np.float32)
    class_ids = np.zeros((1, 3), np.int32)
    masks = np.zeros((1, SIZE, SIZE, 3), bool)
    # T = 8, ratio 0.25: int(8 * 0.75) = 6 negatives of the 6 proposals.
    rois, ids, deltas, mask_targets = numpy_outputs(
        make_layer(ratio=0.25)([proposals, class_ids, gt_boxes, masks]))
    assert np.all(np.any(rois[:6] != 0, axis=1)) and np.all(rois[6:] == 0)
    for s in range(6):
        slot_of(proposals[0], rois[s])
    for out in (ids, deltas, mask_targets):
        assert np.all(np.isfinite(out)) and np.all(out == 0)
    # With ratio 0.5 the no-positive quota is int(8 * 0.5) = 4.
    rois = numpy_outputs(make_layer(ratio=0.5)([proposals, class_ids, gt_boxes, masks]))[0]
    assert np.sum(np.any(rois != 0, axis=1)) == 4


def test_include_gt_boxes_gives_positives_without_matching_proposals():
    rng = np.random.default_rng(1)
    _, class_ids, gt_boxes, masks = hand_case(rng=rng, rectangular=True)
    # Only background proposals (IoU < 0.5 with both GT), plus a crowd GT that must not become
    # a candidate.
    proposals = np.zeros((1, 10, 4), np.float32)
    proposals[0, 0], proposals[0, 1] = g(0, 0, 7, 7), g(8, 8, 36, 15)
    class_ids = np.array([[1, 2, -1]], np.int32)
    gt_boxes = gt_boxes.copy()
    gt_boxes[0, 2] = g(0, 40, 20, 63)
    inputs = [proposals, class_ids, gt_boxes, masks]
    classic = numpy_outputs(make_layer()(inputs))
    assert np.all(classic[1] == 0)  # classic sampling: no positive at all

    rois, ids, deltas, mask_targets = numpy_outputs(make_layer(include_gt_boxes=True)(inputs))
    assert sorted(ids[:2].tolist()) == [1, 2] and np.all(ids[2:] == 0)
    for k in (0, 1):
        slot = slot_of(rois, gt_boxes[0, k])
        assert ids[slot] == class_ids[0, k]
        np.testing.assert_allclose(deltas[slot], 0.0, atol=1e-6)
        # A rectangle filling its own box: the mask target is all ones.
        assert np.all(mask_targets[slot] == 1.0)
    # The crowd box is no ROI; the two background proposals are the negatives.
    assert not np.any(np.all(np.abs(rois - gt_boxes[0, 2]) < 1e-6, axis=1))
    assert np.sum(np.any(rois[2:] != 0, axis=1)) == 2
    config = make_layer(include_gt_boxes=True).get_config()
    assert DetectionTargetLayer.from_config(config).include_gt_boxes is True


def test_crowd_boxes_are_neither_targets_nor_negatives():
    gt_boxes = np.zeros((1, 3, 4), np.float32)
    gt_boxes[0, 0] = g(*GT1)
    gt_boxes[0, 1] = g(*GT2)
    class_ids = np.array([[1, -1, 0]], np.int32)  # GT2 is a crowd box
    masks = np.ones((1, 8, 8, 3), bool)
    proposals = np.zeros((1, 6, 4), np.float32)
    proposals[0, 0] = g(42, 42, 63, 63)  # IoU 1 with the crowd box only
    proposals[0, 1] = g(30, 30, 44, 44)  # IoU 0.009 with the crowd box, 0.03 with GT1
    proposals[0, 2] = g(8, 8, 36, 36)    # positive for GT1
    proposals[0, 3] = g(0, 50, 10, 60)   # far from everything: negative
    rois, ids, _, _ = numpy_outputs(make_layer(mini=True)([proposals, class_ids, gt_boxes,
                                                           masks]))
    # 1 positive -> int(1 / 0.5) - 1 = 1 negative; only proposal 3 qualifies.
    np.testing.assert_allclose(rois[0], proposals[0, 2])
    np.testing.assert_allclose(rois[1], proposals[0, 3])
    np.testing.assert_array_equal(rois[2:], 0)
    np.testing.assert_array_equal(ids, [1] + [0] * 7)

    # Without the crowd flag, proposal 0 is a positive of class 5.
    class_ids[0, 1] = 5
    rois, ids, _, _ = numpy_outputs(make_layer(mini=True)([proposals, class_ids, gt_boxes,
                                                           masks]))
    assert sorted(ids[:2]) == [1, 5]


def _rows(outputs, b):
    """Per-ROI (box, class, deltas, mask or None) sorted by box, for order-free comparison."""
    rois, ids, deltas, masks = numpy_outputs(outputs, b)
    rows = []
    for s in range(rois.shape[0]):
        if np.any(rois[s] != 0):
            mask = masks[s] if s < masks.shape[0] else None
            rows.append((tuple(np.round(rois[s], 6)), int(ids[s]), deltas[s], mask))
    return sorted(rows, key=lambda r: r[0])


def test_batch_of_two_matches_single_images():
    rng = np.random.default_rng(2)
    image0 = hand_case(rng=rng)
    # Image 1: one GT (GT2 in slot 0), one positive and one negative proposal, so that both
    # images fill their quotas exactly and the sampled sets are not random.
    proposals1 = np.zeros((1, 10, 4), np.float32)
    for i, name in enumerate(("p_gt2", "n_gt2")):
        proposals1[0, i] = g(*PROPOSALS[name][0])
    gt_boxes1 = np.zeros((1, 3, 4), np.float32)
    gt_boxes1[0, 0] = g(*GT2)
    ids1 = np.array([[4, 0, 0]], np.int32)
    masks1 = np.zeros((1, SIZE, SIZE, 3), bool)
    masks1[0, 45:60, 44:63, 0] = True
    image1 = (proposals1, ids1, gt_boxes1, masks1)

    layer = make_layer()
    batch = layer([np.concatenate([a, b]) for a, b in zip(image0, image1)])
    for b, image in enumerate((image0, image1)):
        single = _rows(layer(list(image)), 0)
        batched = _rows(batch, b)
        assert len(single) == len(batched)
        for one, two in zip(single, batched):
            assert one[0] == two[0] and one[1] == two[1]
            np.testing.assert_allclose(one[2], two[2], atol=1e-6)
            if one[1] > 0:
                np.testing.assert_array_equal(one[3], two[3])
    # Image 1: 1 positive (class 4) + 1 negative.
    assert [r[1] for r in _rows(batch, 1)].count(4) == 1
    assert len(_rows(batch, 1)) == 2


def test_fewer_proposals_than_train_rois():
    proposals, class_ids, gt_boxes, masks = hand_case(rectangular=True)
    proposals = proposals[:, :2]  # p_gt1, p_gt1_left
    rois, ids, _, mask_targets = numpy_outputs(
        make_layer(t=8, ratio=0.5)([proposals, class_ids, gt_boxes, masks]))
    assert sorted(ids.tolist()) == [0] * 6 + [1, 1]
    assert ids[0] == 1 and ids[1] == 1
    np.testing.assert_array_equal(rois[2:], 0)
    np.testing.assert_array_equal(mask_targets[:2], 1.0)
    np.testing.assert_array_equal(mask_targets[2:], 0.0)


def test_keras_model_with_unknown_batch_size():
    layer = make_layer(mask_rois_per_image=2)
    inputs = [keras.Input((None, 4)), keras.Input((3,), dtype="int32"), keras.Input((3, 4)),
              keras.Input((SIZE, SIZE, 3), dtype="bool")]
    outputs = layer(inputs)
    assert [tuple(o.shape) for o in outputs] == [(None, 8, 4), (None, 8), (None, 8, 4),
                                                 (None, 2, 8, 8)]
    assert [o.dtype for o in outputs] == ["float32", "int32", "float32", "float32"]
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(3)
    case = hand_case(rng=rng)
    for batch in (1, 2):
        result = model.predict([np.concatenate([x] * batch) for x in case], verbose=0)
        assert [r.shape[0] for r in result] == [batch] * 4
        assert np.sum(result[1][0] > 0) == 3


def test_detection_target_config_round_trip_and_validation():
    layer = make_layer(t=16, ratio=0.33, mini=True, mask_rois_per_image=4,
                       positive_iou_threshold=0.6, name="proposal_targets")
    config = layer.get_config()
    clone = DetectionTargetLayer.from_config(config)
    assert clone.get_config() == config
    assert config["mask_rois_per_image"] == 4 and config["seed"] == 3
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, DetectionTargetLayer) and restored.name == "proposal_targets"
    assert make_layer(t=200, ratio=0.33).mask_rois_per_image == 66

    with pytest.raises(ValueError, match="roi_positive_ratio"):
        make_layer(ratio=0.0)
    with pytest.raises(ValueError, match="train_rois_per_image"):
        make_layer(t=0)
    with pytest.raises(ValueError, match="mask_rois_per_image"):
        make_layer(t=8, mask_rois_per_image=9)
    with pytest.raises(ValueError, match="mask_shape"):
        make_layer(mask_shape=(28,))
    with pytest.raises(ValueError, match=">= 1"):
        make_layer(t=2, ratio=0.1)


def test_normalize_boxes_keeps_padding_zero():
    boxes = np.array([[[0, 0, 64, 64], [10, 20, 30, 40], [0, 0, 0, 0]]], np.float32)
    image = np.zeros((1, SIZE, 48, 3), np.float32)
    out = np.asarray(NormalizeBoxes()([boxes, image]))
    np.testing.assert_allclose(out[0, :2], norm_boxes(boxes[0, :2], (SIZE, 48)), atol=1e-6)
    np.testing.assert_array_equal(out[0, 2], 0)

    model_in = [keras.Input((None, 4)), keras.Input((None, None, 3))]
    model = keras.Model(model_in, NormalizeBoxes(name="norm")(model_in))
    out2 = model.predict([np.concatenate([boxes] * 2), np.concatenate([image] * 2)], verbose=0)
    np.testing.assert_allclose(out2[1], out[0], atol=1e-6)


def test_roi_slice():
    rois = np.arange(2 * 5 * 4, dtype=np.float32).reshape(2, 5, 4)
    layer = RoiSlice(3)
    np.testing.assert_array_equal(np.asarray(layer(rois)), rois[:, :3])
    assert layer.compute_output_shape((None, 5, 4)) == (None, 3, 4)
    assert layer.compute_output_shape((None, 2, 4)) == (None, 2, 4)
    assert RoiSlice.from_config(layer.get_config()).count == 3
    with pytest.raises(ValueError, match="count"):
        RoiSlice(0)
