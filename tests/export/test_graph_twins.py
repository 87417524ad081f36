"""TF twins of the NumPy molding / anchors / unmolding / mask pasting, tested against them."""
import numpy as np
import pytest
import tensorflow as tf

from mrcnn.data.image_meta import compose_image_meta, mold_image
from mrcnn.data.transforms import resize_image
from mrcnn.export.molding import check_resize_mode, mold_images_tf, pyramid_anchors_tf
from mrcnn.export.unmolding import paste_masks_tf, unmold_detections_tf
from mrcnn.ops.anchors import get_normalized_anchors
from mrcnn.ops.boxes import norm_boxes
from mrcnn.ops.masks import paste_masks

MEAN = [123.7, 116.8, 103.9]
SCALES, RATIOS, STRIDES = (8, 16, 32, 64, 128), [0.5, 1, 2], [4, 8, 16, 32, 64]


@pytest.mark.parametrize("mode,min_dim,max_dim,min_scale", [
    ("square", 100, 128, 0), ("square", 64, 96, 1.5), ("pad64", 128, 256, 0), ("none", 0, 0, 0)])
@pytest.mark.parametrize("shape", [(100, 80), (60, 128), (200, 50), (31, 47)])
def test_mold_images_tf_matches_numpy(mode, min_dim, max_dim, min_scale, shape):
    image = np.random.default_rng(sum(shape)).integers(0, 256, shape + (3,), dtype=np.uint8)
    resized, window, scale, _, _ = resize_image(image, min_dim=min_dim, max_dim=max_dim,
                                                min_scale=min_scale, mode=mode)
    expected = mold_image(resized, MEAN)
    meta = compose_image_meta(0, image.shape, expected.shape, window, scale, np.zeros(4))
    molded, metas, win = mold_images_tf(tf.constant(np.stack([image, image])), MEAN, 4,
                                        min_dim, max_dim, min_scale, mode)
    assert molded.shape[1:] == expected.shape and molded.shape[0] == 2
    diff = np.abs(molded.numpy()[1] - expected)
    # OpenCV's float32 bilinear is off by up to ~1e-3 from TF's, so values within that of .5
    # round apart (about 0.2-0.7 % of pixels here): never more than 1 level.
    assert diff.max() <= 1.0 + 1e-4 and (diff > 0.5).mean() < 0.02
    np.testing.assert_allclose(metas.numpy()[1], meta, rtol=1e-6)
    assert tuple(win.numpy()) == tuple(window)


@pytest.mark.parametrize("shape", [(128, 128), (64, 192), (100, 70)])
def test_pyramid_anchors_tf_matches_numpy(shape):
    expected = get_normalized_anchors(shape, SCALES, RATIOS, STRIDES, 1)
    got = pyramid_anchors_tf(shape[0], shape[1], SCALES, RATIOS, STRIDES, 1).numpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-6)
    got2 = pyramid_anchors_tf(shape[0], shape[1], SCALES, RATIOS, STRIDES, 2).numpy()
    np.testing.assert_allclose(got2, get_normalized_anchors(shape, SCALES, RATIOS, STRIDES, 2),
                               atol=1e-6)


def test_paste_masks_tf_matches_numpy():
    rng = np.random.default_rng(1)
    h, w, n = 70, 90, 24
    soft = (1 / (1 + np.exp(-rng.normal(0, 4, (n, 28, 28))))).astype(np.float32)
    soft[0] = np.float32(0.8)  # constant mask: scikit-image's clip keeps the blended border
    y1, x1 = rng.integers(-10, h, n), rng.integers(-10, w, n)
    boxes = np.stack([y1, x1, y1 + rng.integers(0, 60, n), x1 + rng.integers(0, 60, n)], 1)
    boxes[1] = 0  # padding row
    boxes[2] = [5, 5, 8, 40]  # thin: shrinks in y, enlarges in x
    expected = paste_masks(soft, boxes, (h, w))
    got = paste_masks_tf(tf.constant(soft[None]), tf.constant(boxes[None], tf.int32), h, w)
    got = got.numpy()[0].transpose(1, 2, 0)
    assert got.dtype == np.uint8
    assert (got.astype(bool) != expected).sum() <= 2, "pasted masks differ"
    assert expected[:, :, 0].any() and not got[:, :, 1].any()


def test_unmold_detections_tf_matches_numpy(tiny_model):
    rng = np.random.default_rng(3)
    original, molded_shape, window = (50, 40, 3), (64, 64, 3), (7, 12, 57, 52)
    n = 8
    win = norm_boxes(np.asarray(window, np.float32), molded_shape[:2])
    y1 = rng.uniform(win[0], win[2] - 0.1, n)
    x1 = rng.uniform(win[1], win[3] - 0.1, n)
    boxes = np.stack([y1, x1, np.minimum(y1 + rng.uniform(0, 0.4, n), win[2]),
                      np.minimum(x1 + rng.uniform(0, 0.4, n), win[3])], 1)
    boxes[2, 2] = boxes[2, 0] - 0.05  # no area in the image: detect() drops it
    detections = np.zeros((10, 6), np.float32)
    detections[:n, :4] = boxes
    detections[:n, 4] = rng.integers(1, 4, n)
    detections[:n, 5] = np.sort(rng.uniform(0.5, 1, n))[::-1]
    masks = rng.uniform(0, 1, (10, 28, 28)).astype(np.float32)
    rois, class_ids, scores, full = tiny_model.unmold_detections(detections, masks, original,
                                                                 molded_shape, window)
    out = unmold_detections_tf(tf.constant(detections[None]), tf.constant(masks[None]),
                               (50, 40), (64, 64), tf.constant(window))
    k = int(out["num"][0])
    assert k == len(class_ids) == n - 1
    np.testing.assert_array_equal(out["boxes"][0, :k], rois)
    np.testing.assert_array_equal(out["class_ids"][0, :k], class_ids)
    np.testing.assert_allclose(out["scores"][0, :k], scores)
    assert not out["boxes"][0, k:].numpy().any() and not out["masks"][0, k:].numpy().any()
    pasted = paste_masks_tf(out["masks"], out["boxes"], 50, 40).numpy()[0, :k]
    np.testing.assert_array_equal(pasted.transpose(1, 2, 0).astype(bool), full)


def test_crop_mode_is_rejected_by_name():
    with pytest.raises(ValueError, match=r"IMAGE_RESIZE_MODE='crop'.*training only"):
        check_resize_mode("crop")
