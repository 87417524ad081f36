"""Tests for mrcnn/data/rpn_targets.py: anchor labelling rules, balancing and deltas."""
import numpy as np
import pytest

from mrcnn.config import Config
from mrcnn.data import rpn_targets
from mrcnn.data.rpn_targets import build_rpn_targets
from mrcnn.ops.anchors import compute_backbone_shapes, generate_pyramid_anchors
from mrcnn.ops.boxes import box_refinement, compute_overlaps

STD = np.array([0.1, 0.1, 0.2, 0.2])
SHAPE = (64, 64, 3)


def _targets(anchors, class_ids, boxes, total=32, seed=0, **kwargs):
    return build_rpn_targets(SHAPE, np.asarray(anchors, dtype=np.float32), np.asarray(class_ids),
                             np.asarray(boxes).reshape(-1, 4), total, STD,
                             rng=np.random.default_rng(seed), **kwargs)


def test_equal_anchor_positive_half_overlap_neutral_far_negative():
    gt = [[10, 10, 30, 30]]
    anchors = [[10, 10, 30, 30],   # IoU 1
               [10, 10, 30, 50],   # IoU 400 / 800 = 0.5
               [10, 20, 30, 40],   # IoU 200 / 600 = 1/3
               [10, 24, 30, 44],   # IoU 120 / 680 = 0.176
               [40, 40, 60, 60]]   # IoU 0
    rpn_match, rpn_bbox = _targets(anchors, [1], gt)
    np.testing.assert_array_equal(rpn_match, [1, 0, 0, -1, -1])
    assert rpn_match.dtype == np.int32 and rpn_match.shape == (5,)
    assert rpn_bbox.dtype == np.float32 and rpn_bbox.shape == (32, 4)
    # The one positive anchor equals its GT box: zero deltas, and all padding rows are zero.
    np.testing.assert_array_equal(rpn_bbox, 0)


def test_thresholds_are_inclusive_at_0_7_and_exclusive_at_0_3():
    gt = [[0, 0, 10, 10]]
    # IoU exactly 0.7 (70 / 100) and exactly 0.3 (30 / 100).
    anchors = [[0, 0, 10, 10], [0, 0, 10, 7], [0, 0, 10, 3], [50, 50, 60, 60]]
    rpn_match, _ = _targets(anchors, [1], gt)
    np.testing.assert_array_equal(rpn_match, [1, 1, 0, -1])


def test_best_anchor_of_a_gt_is_positive_even_with_low_iou():
    gt = [[0, 0, 10, 10]]
    anchors = [[0, 0, 30, 30],      # IoU 100 / 900 = 0.111: below 0.3 but the best
               [50, 50, 60, 60]]
    rpn_match, rpn_bbox = _targets(anchors, [1], gt)
    np.testing.assert_array_equal(rpn_match, [1, -1])
    # Row 0: anchor centre (15, 15) size 30 -> GT centre (5, 5) size 10.
    expected = np.array([(5 - 15) / 30, (5 - 15) / 30, np.log(10 / 30), np.log(10 / 30)]) / STD
    np.testing.assert_allclose(rpn_bbox[0], expected, rtol=1e-5)
    np.testing.assert_array_equal(rpn_bbox[1:], 0)


def test_best_anchor_ties_are_all_positive():
    gt = [[0, 0, 10, 10]]
    anchors = [[0, 0, 30, 30], [-20, -20, 10, 10], [0, 0, 40, 40], [60, 60, 70, 70]]
    rpn_match, _ = _targets(anchors, [1], gt)
    # Both anchors with IoU 1/9 are positive; 1/16 is below 0.3 and not best: negative.
    np.testing.assert_array_equal(rpn_match, [1, 1, -1, -1])


def test_crowd_boxes_block_negatives_and_are_not_targets():
    class_ids = [1, -1]
    boxes = [[0, 0, 10, 10], [40, 40, 60, 60]]
    anchors = [[0, 0, 10, 10],     # positive for the object
               [40, 40, 60, 60],   # equal to the crowd box: neither positive nor negative
               [45, 45, 55, 55],   # inside the crowd: not negative
               [59, 59, 70, 70],   # crowd IoU 1 / 520 >= 0.001: not negative
               [80, 0, 90, 10]]    # far from everything: negative
    rpn_match, rpn_bbox = _targets(anchors, class_ids, boxes)
    np.testing.assert_array_equal(rpn_match, [1, 0, 0, 0, -1])
    np.testing.assert_array_equal(rpn_bbox, 0)


def test_crowd_iou_threshold_is_0_001():
    boxes = [[0, 0, 100, 100]]
    # IoU with the crowd: 1 / (10000 + 100 - 1) < 0.001, so this anchor may be negative.
    anchors = [[99, 99, 109, 109], [0, 0, 100, 100]]
    rpn_match, _ = _targets(anchors, [-1], boxes)
    np.testing.assert_array_equal(rpn_match, [-1, 0])


def test_zero_gt_samples_only_negatives():
    rng = np.random.default_rng(3)
    yx = rng.uniform(0, 50, size=(100, 2))
    anchors = np.concatenate([yx, yx + rng.uniform(2, 14, size=(100, 2))], axis=1)
    for class_ids, boxes in (([], np.zeros((0, 4))), ([0], [[0, 0, 0, 0]])):
        rpn_match, rpn_bbox = _targets(anchors, class_ids, boxes, total=32)
        assert np.sum(rpn_match == -1) == 32
        assert np.sum(rpn_match == 1) == 0
        assert np.sum(rpn_match == 0) == 68
        np.testing.assert_array_equal(rpn_bbox, 0)


def test_balancing_caps_positives_at_half_and_fills_with_negatives():
    gt = [[20, 20, 40, 40]]
    # 40 anchors shifted by at most 1 px (IoU >= 0.9) and 100 far anchors.
    near = np.array([[20 + dy, 20 + dx, 40 + dy, 40 + dx]
                     for dy in np.linspace(-1, 1, 5) for dx in np.linspace(-1, 1, 8)])
    far = np.array([[100 + i, 100, 110 + i, 110] for i in range(100)])
    anchors = np.concatenate([near, far])
    m0, b0 = _targets(anchors, [1], gt, total=32, seed=0)
    assert np.sum(m0 == 1) == 16 and np.sum(m0 == -1) == 16 and np.sum(m0 == 0) == 108
    assert np.all(m0[40:] != 1) and np.all(m0[:40] != -1)
    # Same seed, same sampling; another seed, another subset.
    m0b, b0b = _targets(anchors, [1], gt, total=32, seed=0)
    np.testing.assert_array_equal(m0, m0b)
    np.testing.assert_array_equal(b0, b0b)
    m1, _ = _targets(anchors, [1], gt, total=32, seed=1)
    assert not np.array_equal(m0, m1)
    # Few positives: negatives fill up to the total.
    m, _ = _targets(anchors[38:], [1], gt, total=32)
    assert np.sum(m == 1) == 2 and np.sum(m == -1) == 30


def test_rpn_bbox_rows_are_refinements_of_positives_in_anchor_order():
    class_ids = np.array([1, 2])
    gt = np.array([[4, 4, 28, 36], [30, 34, 60, 58]])
    ys, xs = np.meshgrid(np.arange(0, 64, 4), np.arange(0, 64, 4), indexing="ij")
    anchors = []
    for size_h, size_w in ((24, 24), (24, 32), (32, 24)):
        anchors.append(np.stack([ys.ravel(), xs.ravel(), ys.ravel() + size_h,
                                 xs.ravel() + size_w], axis=1))
    anchors = np.concatenate(anchors).astype(np.float32)
    rpn_match, rpn_bbox = _targets(anchors, class_ids, gt, total=64)
    positive = np.flatnonzero(rpn_match == 1)
    assert 2 <= positive.size <= 32
    overlaps = compute_overlaps(anchors, gt.astype(np.float32))
    expected = box_refinement(anchors[positive],
                              gt[np.argmax(overlaps[positive], axis=1)].astype(np.float32)) / STD
    np.testing.assert_allclose(rpn_bbox[:positive.size], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(rpn_bbox[positive.size:], 0)
    # Each positive either passes 0.7 or is the best anchor of a GT box.
    best = overlaps.max(axis=0)
    for i in positive:
        assert overlaps[i].max() >= 0.7 or np.any(overlaps[i] == best)


def test_class_id_zero_is_padding_and_ignored():
    anchors = [[0, 0, 10, 10], [50, 50, 60, 60]]
    rpn_match, _ = _targets(anchors, [1, 0], [[0, 0, 10, 10], [50, 50, 60, 60]])
    np.testing.assert_array_equal(rpn_match, [1, -1])


def test_chunked_iou_gives_the_same_targets(monkeypatch):
    rng = np.random.default_rng(5)
    yx = rng.uniform(0, 56, size=(300, 2))
    hw = rng.uniform(4, 30, size=(300, 2))
    anchors = np.concatenate([yx, yx + hw], axis=1).astype(np.float32)
    gt = np.array([[5, 5, 25, 30], [30, 10, 50, 40], [10, 40, 40, 60]])
    class_ids = np.array([1, -2, 2])
    full = _targets(anchors, class_ids, gt, total=64, seed=2)
    monkeypatch.setattr(rpn_targets, "_CHUNK_ELEMENTS", 7)  # chunks of 3 or 7 anchors
    chunked = _targets(anchors, class_ids, gt, total=64, seed=2)
    np.testing.assert_array_equal(full[0], chunked[0])
    np.testing.assert_array_equal(full[1], chunked[1])
    assert np.sum(full[0] == 1) >= 2


def test_accepts_a_config_as_in_the_classic_call():
    class C(Config):
        NAME = "t"
        RPN_TRAIN_ANCHORS_PER_IMAGE = 8
        RPN_BBOX_STD_DEV = np.array([0.5, 0.5, 1.0, 1.0])

    anchors = np.array([[0, 0, 30, 30]] + [[40 + i, 40, 50 + i, 50] for i in range(20)], float)
    rpn_match, rpn_bbox = build_rpn_targets(SHAPE, anchors, np.array([1]),
                                            np.array([[0, 0, 10, 10]]), C(),
                                            rng=np.random.default_rng(0))
    assert rpn_bbox.shape == (8, 4)
    assert np.sum(rpn_match == 1) == 1 and np.sum(rpn_match == -1) == 7
    np.testing.assert_allclose(rpn_bbox[0, :2], [(5 - 15) / 30 / 0.5] * 2, rtol=1e-5)


def test_default_config_anchor_count_works_in_float32():
    feature_shapes = compute_backbone_shapes((256, 256), [4, 8, 16, 32, 64])
    anchors = generate_pyramid_anchors((32, 64, 128, 256, 512), [0.5, 1, 2], feature_shapes,
                                       [4, 8, 16, 32, 64], 1)
    gt = np.array([[10, 10, 90, 120], [100, 100, 250, 200]])
    rpn_match, rpn_bbox = build_rpn_targets((256, 256, 3), anchors, np.array([1, 2]), gt, 256,
                                            STD, rng=np.random.default_rng(0))
    assert rpn_match.shape == (anchors.shape[0],)
    assert 2 <= np.sum(rpn_match == 1) <= 128
    assert np.sum(rpn_match != 0) == 256
    assert np.all(np.isfinite(rpn_bbox))


@pytest.mark.parametrize("kwargs, message", [
    (dict(anchors=np.zeros((3, 3))), "anchors"),
    (dict(gt_boxes=np.zeros((2, 3))), "gt_boxes"),
    (dict(gt_class_ids=np.array([1, 2, 3])), "gt_class_ids"),
    (dict(rpn_train_anchors_per_image=0), "rpn_train_anchors_per_image"),
    (dict(rpn_bbox_std_dev=[0.1, 0.1]), "rpn_bbox_std_dev"),
])
def test_bad_arguments_raise_value_error_naming_them(kwargs, message):
    args = dict(image_shape=SHAPE, anchors=np.zeros((3, 4)), gt_class_ids=np.array([1, 2]),
                gt_boxes=np.zeros((2, 4)), rpn_train_anchors_per_image=32, rpn_bbox_std_dev=STD)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        build_rpn_targets(**args)
