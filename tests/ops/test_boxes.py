"""Tests for mrcnn.ops.boxes: hand-built cases, pycocotools as IoU oracle, NumPy vs TF twins."""
import subprocess
import sys

import numpy as np
import pytest

from mrcnn.ops import boxes as B


def random_boxes(rng, n, size=100.0, min_side=1.0):
    """[n, 4] float64 (y1, x1, y2, x2) with positive sides inside a size x size image."""
    y1 = rng.uniform(0, size - min_side, n)
    x1 = rng.uniform(0, size - min_side, n)
    y2 = y1 + rng.uniform(min_side, size / 2, n)
    x2 = x1 + rng.uniform(min_side, size / 2, n)
    return np.stack([y1, x1, y2, x2], axis=1)


# ---------------------------------------------------------------------------------------------
# NumPy
# ---------------------------------------------------------------------------------------------
def test_import_does_not_import_tensorflow():
    code = ("import sys, mrcnn.ops.boxes, mrcnn.ops.anchors; "
            "sys.exit(1 if 'tensorflow' in sys.modules else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=str(__import__("pathlib").Path(B.__file__).parents[2]))
    assert result.returncode == 0, result.stderr


def test_compute_iou_hand_cases():
    box = np.array([0, 0, 10, 10])
    boxes = np.array([[0, 0, 10, 10],     # identical
                      [20, 20, 30, 30],   # disjoint
                      [0, 5, 10, 15],     # half overlap: 50 / (100 + 100 - 50)
                      [10, 0, 20, 10],    # touching edge only
                      [2, 2, 4, 4]])      # contained: 4 / 100
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    iou = B.compute_iou(box, boxes, 100, areas)
    np.testing.assert_allclose(iou, [1.0, 0.0, 1.0 / 3.0, 0.0, 0.04], rtol=1e-6)


def test_compute_iou_zero_union_is_zero_not_nan():
    iou = B.compute_iou(np.zeros(4), np.zeros((2, 4)), 0.0, np.zeros(2))
    np.testing.assert_array_equal(iou, [0.0, 0.0])


def test_compute_overlaps_hand_and_empty():
    boxes1 = np.array([[0, 0, 10, 10], [0, 5, 10, 15]])
    boxes2 = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [0, 5, 10, 15]])
    expected = np.array([[1.0, 0.0, 1.0 / 3.0], [1.0 / 3.0, 0.0, 1.0]])
    np.testing.assert_allclose(B.compute_overlaps(boxes1, boxes2), expected, rtol=1e-6)
    assert B.compute_overlaps(np.zeros((0, 4)), boxes2).shape == (0, 3)
    assert B.compute_overlaps(boxes1, np.zeros((0, 4))).shape == (2, 0)
    assert B.compute_overlaps(np.zeros((0, 4)), np.zeros((0, 4))).shape == (0, 0)
    with pytest.raises(ValueError, match="boxes2"):
        B.compute_overlaps(boxes1, np.zeros((3, 5)))


def test_compute_overlaps_matches_pycocotools():
    from pycocotools import mask as coco_mask

    rng = np.random.default_rng(0)
    boxes1 = random_boxes(rng, 40)
    boxes2 = random_boxes(rng, 30)

    def to_xywh(b):
        return np.stack([b[:, 1], b[:, 0], b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]], axis=1)

    expected = coco_mask.iou(to_xywh(boxes1), to_xywh(boxes2), [0] * len(boxes2))
    got = B.compute_overlaps(boxes1, boxes2)
    assert got.shape == (40, 30)
    assert np.count_nonzero(expected) > 20  # the random boxes really overlap
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_non_max_suppression_hand_case():
    boxes = np.array([[0, 0, 10, 10],     # score 0.8
                      [1, 1, 11, 11],     # score 0.9, IoU 81/119 = 0.68 with box 0
                      [50, 50, 60, 60]])  # score 0.7, disjoint
    scores = np.array([0.8, 0.9, 0.7])
    keep = B.non_max_suppression(boxes, scores, 0.5)
    assert keep.dtype == np.int32
    np.testing.assert_array_equal(keep, [1, 2])
    # Above the overlap, nothing is suppressed and the order is by descending score.
    np.testing.assert_array_equal(B.non_max_suppression(boxes, scores, 0.7), [1, 0, 2])
    assert B.non_max_suppression(np.zeros((0, 4)), np.zeros(0), 0.5).shape == (0,)
    with pytest.raises(ValueError, match="scores"):
        B.non_max_suppression(boxes, scores[:2], 0.5)


def test_box_refinement_apply_box_deltas_round_trip():
    rng = np.random.default_rng(1)
    boxes = random_boxes(rng, 50)
    gt = random_boxes(rng, 50)
    deltas = B.box_refinement(boxes, gt)
    np.testing.assert_allclose(B.apply_box_deltas(boxes, deltas), gt, rtol=1e-9, atol=1e-9)
    # Known deltas: a 10x20 box whose centre moves by (0, -10) and size scales by (2, 0.5).
    deltas = B.box_refinement(np.array([[0, 0, 10, 20]]), np.array([[-5, -5, 15, 5]]))
    assert deltas.dtype == np.float32
    np.testing.assert_allclose(deltas, [[0.0, -0.5, np.log(2.0), np.log(0.5)]], atol=1e-6)


def test_norm_denorm_boxes():
    shape = (101, 201)
    boxes = np.array([[0, 0, 101, 201], [10, 20, 30, 40], [0, 0, 0, 0]])
    norm = B.norm_boxes(boxes, shape)
    assert norm.dtype == np.float32
    np.testing.assert_allclose(norm[0], [0, 0, 1, 1])
    np.testing.assert_allclose(norm[1], [0.1, 0.1, 0.29, 0.195], rtol=1e-6)
    denorm = B.denorm_boxes(norm, shape + (3,))
    assert denorm.dtype == np.int32
    np.testing.assert_array_equal(denorm, boxes)
    with pytest.raises(ValueError, match="shape"):
        B.norm_boxes(boxes, (1, 10))


def test_trim_zeros():
    x = np.array([[0, 0, 0, 0], [1, 2, 3, 4], [0, 0, 0, 0], [0, 0, 0, 5]])
    np.testing.assert_array_equal(B.trim_zeros(x), [[1, 2, 3, 4], [0, 0, 0, 5]])
    with pytest.raises(ValueError, match="x must be"):
        B.trim_zeros(np.zeros(4))


# ---------------------------------------------------------------------------------------------
# TensorFlow twins (tiny tensors, one leading batch dimension)
# ---------------------------------------------------------------------------------------------
def test_non_max_suppression_matches_tf():
    import tensorflow as tf

    rng = np.random.default_rng(2)
    boxes = random_boxes(rng, 60).astype(np.float32)
    scores = rng.uniform(size=60).astype(np.float32)
    keep = B.non_max_suppression(boxes, scores, 0.3)
    expected = tf.image.non_max_suppression(boxes, scores, 60, iou_threshold=0.3).numpy()
    assert 5 < len(keep) < 60  # some, not all, suppressed
    np.testing.assert_array_equal(keep, expected)


def test_tf_ops_match_numpy_with_batch_dim():
    import tensorflow as tf

    rng = np.random.default_rng(3)
    boxes = random_boxes(rng, 2 * 7).reshape(2, 7, 4).astype(np.float32)
    gt = random_boxes(rng, 2 * 7).reshape(2, 7, 4).astype(np.float32)
    other = random_boxes(rng, 2 * 5).reshape(2, 5, 4).astype(np.float32)
    shape = (100, 120)

    deltas_tf = B.box_refinement_tf(boxes, gt).numpy()
    refined_tf = B.apply_box_deltas_tf(boxes, tf.constant(deltas_tf)).numpy()
    overlaps_tf = B.compute_overlaps_tf(boxes, other).numpy()
    norm_tf = B.norm_boxes_tf(boxes, shape).numpy()
    denorm_tf = B.denorm_boxes_tf(norm_tf, tf.constant(shape)).numpy()
    assert overlaps_tf.shape == (2, 7, 5)
    assert norm_tf.dtype == np.float32 and denorm_tf.dtype == np.int32
    for i in range(2):
        np.testing.assert_allclose(deltas_tf[i], B.box_refinement(boxes[i], gt[i]),
                                   rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(refined_tf[i], B.apply_box_deltas(boxes[i], deltas_tf[i]),
                                   rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(overlaps_tf[i], B.compute_overlaps(boxes[i], other[i]),
                                   atol=1e-6)
        np.testing.assert_allclose(norm_tf[i], B.norm_boxes(boxes[i], shape), rtol=1e-6)
        np.testing.assert_array_equal(denorm_tf[i], B.denorm_boxes(norm_tf[i], shape))
    np.testing.assert_allclose(refined_tf, gt, rtol=1e-5, atol=1e-4)


def test_compute_overlaps_tf_zero_padding_gives_zero():
    boxes = np.array([[[0, 0, 10, 10], [0, 0, 0, 0]]], dtype=np.float32)  # [1, 2, 4]
    overlaps = B.compute_overlaps_tf(boxes, boxes).numpy()
    np.testing.assert_allclose(overlaps, [[[1.0, 0.0], [0.0, 0.0]]])


def test_clip_boxes_tf_known_case():
    boxes = np.array([[[-5, 2, 8, 20], [3, -1, 12, 4]],
                      [[-5, 2, 8, 20], [30, 30, 40, 40]]], dtype=np.float32)  # [2, 2, 4]
    windows = np.array([[[0, 0, 10, 10]], [[1, 3, 6, 15]]], dtype=np.float32)  # [2, 1, 4]
    clipped = B.clip_boxes_tf(boxes, windows).numpy()
    np.testing.assert_array_equal(clipped, [[[0, 2, 8, 10], [3, 0, 10, 4]],
                                            [[1, 3, 6, 15], [6, 15, 6, 15]]])
