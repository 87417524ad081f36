"""Tests for mrcnn.ops.anchors: counts, classic order and offsets, backbone shapes, the cache."""
import numpy as np
import pytest

from mrcnn.ops import anchors as A
from mrcnn.ops.boxes import norm_boxes

SCALES = (32, 64, 128, 256, 512)
RATIOS = [0.5, 1, 2]
STRIDES = [4, 8, 16, 32, 64]


def test_generate_anchors_count_and_first_values():
    anchors = A.generate_anchors(32, RATIOS, (256, 256), 4, 1)
    assert anchors.shape == (256 * 256 * 3, 4)
    r = 16 * np.sqrt(2.0)  # half of 32 / sqrt(0.5)
    q = 16 / np.sqrt(2.0)  # half of 32 * sqrt(0.5)
    # Position (0, 0) has its centre at pixel 0 (classic offset); ratios in the given order.
    np.testing.assert_allclose(anchors[:3], [[-r, -q, r, q],
                                             [-16, -16, 16, 16],
                                             [-q, -r, q, r]])
    # The next position moves along x by one feature stride; the first of row 1 moves along y.
    np.testing.assert_allclose(anchors[3], [-r, 4 - q, r, 4 + q])
    np.testing.assert_allclose(anchors[256 * 3 + 1], [4 - 16, -16, 4 + 16, 16])


def test_generate_anchors_classic_meshgrid_order_and_anchor_stride():
    anchors = A.generate_anchors([8, 16], [0.5, 2], (4, 6), 10, 2)
    # Positions: rows 0, 2 and cols 0, 2, 4 -> 6 positions, 4 anchors each.
    assert anchors.shape == (6 * 4, 4)
    heights = anchors[:4, 2] - anchors[:4, 0]
    widths = anchors[:4, 3] - anchors[:4, 1]
    s = np.sqrt(2.0)
    # np.meshgrid(scales, ratios) order: ratio-major, scale fastest.
    np.testing.assert_allclose(heights, [8 * s, 16 * s, 8 / s, 16 / s])
    np.testing.assert_allclose(widths, [8 / s, 16 / s, 8 * s, 16 * s])
    centers = (anchors[::4, :2] + anchors[::4, 2:]) / 2
    np.testing.assert_allclose(centers, [[0, 0], [0, 20], [0, 40], [20, 0], [20, 20], [20, 40]])


def test_generate_anchors_rejects_bad_arguments():
    with pytest.raises(ValueError, match="ratios"):
        A.generate_anchors(32, [0.5, -1], (4, 4), 4, 1)
    with pytest.raises(ValueError, match="feature_stride"):
        A.generate_anchors(32, RATIOS, (4, 4), 0, 1)


def test_compute_backbone_shapes():
    np.testing.assert_array_equal(
        A.compute_backbone_shapes((1024, 1024, 3), STRIDES),
        [[256, 256], [128, 128], [64, 64], [32, 32], [16, 16]])
    shapes = A.compute_backbone_shapes((100, 70), STRIDES)
    assert shapes.dtype.kind == "i"
    np.testing.assert_array_equal(shapes, [[25, 18], [13, 9], [7, 5], [4, 3], [2, 2]])


def test_generate_pyramid_anchors_default_config_count():
    shapes = A.compute_backbone_shapes((1024, 1024), STRIDES)
    anchors = A.generate_pyramid_anchors(SCALES, RATIOS, shapes, STRIDES, 1)
    assert anchors.shape == (261888, 4)
    # Levels come in order: the first anchor of the last level has scale 512 at centre (0, 0).
    first_p6 = 3 * (256 ** 2 + 128 ** 2 + 64 ** 2 + 32 ** 2)
    np.testing.assert_allclose(anchors[first_p6 + 1], [-256, -256, 256, 256])
    np.testing.assert_allclose(anchors[1], [-16, -16, 16, 16])
    with pytest.raises(ValueError, match="one entry per pyramid level"):
        A.generate_pyramid_anchors(SCALES[:4], RATIOS, shapes, STRIDES, 1)


def test_get_normalized_anchors_values_and_cache():
    A.get_normalized_anchors.cache_clear()
    image_shape = (128, 96, 3)
    anchors = A.get_normalized_anchors(image_shape, SCALES, RATIOS, STRIDES, 1)
    assert anchors.dtype == np.float32
    shapes = A.compute_backbone_shapes(image_shape, STRIDES)
    expected = norm_boxes(A.generate_pyramid_anchors(SCALES, RATIOS, shapes, STRIDES, 1),
                          (128, 96))
    np.testing.assert_array_equal(anchors, expected)
    # Equal arguments in other container types hit the same cache entry.
    again = A.get_normalized_anchors(np.array([128, 96, 3]), list(SCALES), tuple(RATIOS),
                                     np.array(STRIDES), 1)
    assert again is anchors
    assert A.get_normalized_anchors.cache_info().hits == 1
    assert not anchors.flags.writeable
    other = A.get_normalized_anchors((64, 64), SCALES, RATIOS, STRIDES, 1)
    assert other.shape[0] == 3 * (16 ** 2 + 8 ** 2 + 4 ** 2 + 2 ** 2 + 1)
