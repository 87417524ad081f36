"""Tests for mrcnn.ops.masks: hand-built boxes, pycocotools and scikit-image as oracles."""
import numpy as np
import pytest
from pycocotools import mask as coco_mask
from skimage.transform import resize as sk_resize

from mrcnn.ops.masks import (compute_overlaps_masks, expand_mask, extract_bboxes, minimize_mask,
                             paste_masks, unmold_mask)


def ellipse_mask(shape, cy, cx, ry, rx):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def random_blobs(rng, shape, n):
    masks = np.zeros(shape + (n,), dtype=bool)
    for i in range(n):
        cy, cx = rng.uniform(15, shape[0] - 15), rng.uniform(15, shape[1] - 15)
        ry, rx = rng.uniform(5, 14, size=2)
        masks[:, :, i] = ellipse_mask(shape, cy, cx, ry, rx)
    return masks


def iou(a, b):
    return np.logical_and(a, b).sum() / np.logical_or(a, b).sum()


# ----------------------------------------------------------------------------- extract_bboxes
def test_extract_bboxes_known_boxes():
    mask = np.zeros((20, 30, 4), dtype=bool)
    mask[2:5, 3:10, 0] = True               # rectangle
    mask[10, 7, 1] = True                   # single pixel
    mask[4:15, 20, 2] = True                # L shape: vertical bar ...
    mask[14, 20:29, 2] = True               # ... and horizontal foot
    # mask 3 stays empty
    boxes = extract_bboxes(mask)
    assert boxes.dtype == np.int32
    np.testing.assert_array_equal(boxes, [[2, 3, 5, 10], [10, 7, 11, 8], [4, 20, 15, 29],
                                          [0, 0, 0, 0]])


def test_extract_bboxes_touching_image_border_and_no_instances():
    mask = np.zeros((8, 9, 1), dtype=np.uint8)
    mask[0, 0, 0] = 1
    mask[7, 8, 0] = 1
    np.testing.assert_array_equal(extract_bboxes(mask), [[0, 0, 8, 9]])
    assert extract_bboxes(np.zeros((8, 9, 0), dtype=bool)).shape == (0, 4)


def test_extract_bboxes_rejects_2d():
    with pytest.raises(ValueError, match=r"\[H, W, N\]"):
        extract_bboxes(np.zeros((4, 4), dtype=bool))


# ----------------------------------------------------------------------------- overlaps
def test_compute_overlaps_masks_matches_pycocotools():
    rng = np.random.default_rng(0)
    masks1 = random_blobs(rng, (64, 72), 6)
    masks2 = random_blobs(rng, (64, 72), 5)
    masks2[:, :, 0] = masks1[:, :, 2]                   # an exact match: IoU 1
    masks2[:, :, 1] = np.roll(masks1[:, :, 3], 4, 1)    # a shifted copy: partial overlap
    ours = compute_overlaps_masks(masks1, masks2)
    rle1 = coco_mask.encode(np.asfortranarray(masks1.astype(np.uint8)))
    rle2 = coco_mask.encode(np.asfortranarray(masks2.astype(np.uint8)))
    ref = coco_mask.iou(rle1, rle2, [0] * masks2.shape[-1])
    assert ours.shape == (6, 5)
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    assert ours[2, 0] == pytest.approx(1.0)
    assert 0.0 < ours[3, 1] < 1.0


def test_compute_overlaps_masks_empty_inputs_and_empty_masks():
    a = np.zeros((10, 10, 3), dtype=bool)
    assert compute_overlaps_masks(a, np.zeros((10, 10, 0), bool)).shape == (3, 0)
    assert compute_overlaps_masks(np.zeros((10, 10, 0), bool), a).shape == (0, 3)
    # Two empty masks have an empty union: IoU 0, not NaN.
    out = compute_overlaps_masks(a, a)
    assert np.all(out == 0) and not np.isnan(out).any()


def test_compute_overlaps_masks_soft_masks_threshold_and_shape_error():
    a = np.zeros((4, 4, 1), dtype=np.float32)
    a[:2, :, 0] = 0.9
    a[2:, :, 0] = 0.4      # below 0.5: outside
    b = np.zeros((4, 4, 1), dtype=bool)
    b[:, :, 0] = True
    assert compute_overlaps_masks(a, b)[0, 0] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="masks1 is"):
        compute_overlaps_masks(np.zeros((4, 4, 1)), np.zeros((5, 4, 1)))


# ----------------------------------------------------------------------------- mini masks
def test_minimize_expand_round_trip_blobs():
    rng = np.random.default_rng(1)
    masks = random_blobs(rng, (96, 112), 8)
    boxes = extract_bboxes(masks)
    mini = minimize_mask(boxes, masks, (28, 28))
    assert mini.shape == (28, 28, 8) and mini.dtype == bool
    back = expand_mask(boxes, mini, (96, 112, 3))
    assert back.shape == masks.shape and back.dtype == bool
    for i in range(masks.shape[-1]):
        assert iou(back[:, :, i], masks[:, :, i]) > 0.9, i
        # Nothing leaks outside the instance's box.
        y1, x1, y2, x2 = boxes[i]
        outside = back[:, :, i].copy()
        outside[y1:y2, x1:x2] = False
        assert not outside.any()


def test_minimize_mask_full_box_is_all_true_and_upscales_small_boxes():
    mask = np.zeros((40, 40, 2), dtype=bool)
    mask[5:35, 10:20, 0] = True    # a filled rectangle: its mini-mask is full
    mask[3:6, 3:5, 1] = True       # smaller than mini_shape: enlarged
    mini = minimize_mask(extract_bboxes(mask), mask, (16, 16))
    assert mini[:, :, 0].all()
    assert mini[:, :, 1].all()


def test_minimize_mask_zero_area_box_names_instance():
    mask = np.zeros((10, 10, 2), dtype=bool)
    mask[2:5, 2:5, 0] = True
    with pytest.raises(ValueError, match=r"area of zero.*instance 1"):
        minimize_mask(extract_bboxes(mask), mask, (8, 8))
    with pytest.raises(ValueError, match="instance 0"):
        minimize_mask(np.array([[0, 0, 12, 5], [0, 0, 2, 2]]), mask, (8, 8))


def test_expand_mask_zero_padded_box_gives_empty_mask():
    mini = np.ones((8, 8, 2), dtype=bool)
    out = expand_mask(np.array([[2, 3, 6, 9], [0, 0, 0, 0]]), mini, (10, 12))
    assert out[2:6, 3:9, 0].all() and out[:, :, 0].sum() == 24
    assert not out[:, :, 1].any()


# ----------------------------------------------------------------------------- unmold / paste
def classic_unmold(mask, box, shape):
    """The classic semantics spelled out with scikit-image: resize, >= 0.5, paste."""
    y1, x1, y2, x2 = box
    soft = sk_resize(mask, (y2 - y1, x2 - x1), order=1, mode="constant", anti_aliasing=False,
                     preserve_range=True)
    full = np.zeros(shape[:2], dtype=bool)
    full[y1:y2, x1:x2] = soft >= 0.5
    return full


def test_unmold_mask_matches_classic_skimage_semantics():
    rng = np.random.default_rng(2)
    shape = (90, 100, 3)
    for _ in range(20):
        soft = rng.random((14, 14)).astype(np.float32)
        y1, x1 = rng.integers(0, 40, size=2)
        h, w = rng.integers(1, 50, size=2)
        box = (int(y1), int(x1), int(y1 + h), int(x1 + w))
        np.testing.assert_array_equal(unmold_mask(soft, box, shape),
                                      classic_unmold(soft, box, shape))


def test_paste_masks_agrees_with_unmold_mask():
    rng = np.random.default_rng(3)
    n = 6
    soft = rng.random((n, 28, 28)).astype(np.float32)
    y1 = rng.integers(0, 60, n)
    x1 = rng.integers(0, 60, n)
    boxes = np.stack([y1, x1, y1 + rng.integers(3, 40, n), x1 + rng.integers(3, 40, n)], 1)
    out = paste_masks(soft, boxes, (100, 110))
    assert out.shape == (100, 110, n) and out.dtype == bool
    for i in range(n):
        np.testing.assert_array_equal(out[:, :, i], unmold_mask(soft[i], boxes[i], (100, 110)))
        assert out[:, :, i].any()


def test_paste_masks_boxes_partly_outside_image():
    rng = np.random.default_rng(4)
    soft = rng.random((3, 14, 14)).astype(np.float32)
    boxes = np.array([[-10, -6, 25, 30], [30, 40, 70, 75], [-5, 50, 15, 58]])
    h, w, pad = 50, 60, 20
    out = paste_masks(soft, boxes, (h, w))
    # Oracle: paste into a canvas big enough to hold every box, then crop the image out of it.
    big = paste_masks(soft, boxes + pad, (h + 2 * pad, w + 2 * pad))
    np.testing.assert_array_equal(out, big[pad:pad + h, pad:pad + w])
    assert out[:, :, 0].any() and out[:, :, 1].any() and out[:, :, 2].any()


def test_paste_masks_empty_and_outside_boxes_and_threshold():
    soft = np.full((3, 7, 7), 0.7, dtype=np.float32)
    boxes = np.array([[5, 5, 5, 9], [-20, -20, -2, -3], [2, 2, 6, 6]])
    out = paste_masks(soft, boxes, (10, 10, 3))
    assert not out[:, :, 0].any() and not out[:, :, 1].any()
    assert out[2:6, 2:6, 2].all() and out[:, :, 2].sum() == 16
    assert not paste_masks(soft, boxes, (10, 10), threshold=0.8).any()
    assert paste_masks(np.zeros((0, 7, 7)), np.zeros((0, 4)), (10, 10)).shape == (10, 10, 0)
    with pytest.raises(ValueError, match="boxes"):
        paste_masks(soft, boxes[:2], (10, 10))
