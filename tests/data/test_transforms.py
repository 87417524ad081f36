"""Tests for mrcnn.data.transforms: scikit-image as oracle for resize, hand-computed geometry for
resize_image, and the round trip image+masks -> resized -> mapped back within a pixel."""
import numpy as np
import pytest
from skimage.transform import resize as sk_resize

from mrcnn.data.transforms import resize, resize_image, resize_mask
from mrcnn.ops.masks import extract_bboxes


def ellipse_mask(shape, cy, cx, ry, rx):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def iou(a, b):
    return np.logical_and(a, b).sum() / np.logical_or(a, b).sum()


def random_image(rng, h, w, c=3, dtype=np.uint8):
    return rng.integers(0, 256, size=(h, w, c)).astype(dtype)


# ----------------------------------------------------------------------------- resize
@pytest.mark.parametrize("order", [0, 1])
@pytest.mark.parametrize("mode", ["constant", "edge"])
@pytest.mark.parametrize("channels", [None, 1, 3, 5])
def test_resize_matches_skimage_float(order, mode, channels):
    rng = np.random.default_rng(0)
    shape = (17, 23) if channels is None else (17, 23, channels)
    image = rng.random(shape)
    for out_shape in [(40, 51), (9, 12), (17, 30), (1, 1)]:
        for cval in (0.0, 0.25, 3.0):
            ours = resize(image, out_shape, order=order, mode=mode, cval=cval)
            ref = sk_resize(image, out_shape, order=order, mode=mode, cval=cval,
                            anti_aliasing=False)
            assert ours.shape == ref.shape and ours.dtype == ref.dtype
            np.testing.assert_allclose(ours, ref, atol=1e-9)


def test_resize_uint8_preserve_range_keeps_dtype_and_rounds_skimage():
    rng = np.random.default_rng(1)
    image = random_image(rng, 20, 30)
    for out_shape in [(47, 61), (11, 14)]:
        ours = resize(image, out_shape, preserve_range=True)
        ref = sk_resize(image, out_shape, order=1, mode="constant", anti_aliasing=False,
                        preserve_range=True)
        assert ours.dtype == np.uint8
        # float32 vs float64 arithmetic may flip a rounding at .5.
        assert np.abs(ours.astype(int) - np.rint(ref)).max() <= 1


def test_resize_without_preserve_range_rescales_integers_like_skimage():
    image = np.array([[0, 255], [255, 0]], dtype=np.uint8)
    ours = resize(image, (4, 4))
    ref = sk_resize(image, (4, 4), order=1, mode="constant", anti_aliasing=False)
    assert ours.dtype == np.float64 and ours.max() <= 1.0
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    # order 0 keeps the dtype, as scikit-image does.
    assert resize(image, (4, 4), order=0).dtype == np.uint8
    assert resize(image.astype(bool), (3, 3), order=0).dtype == bool


def test_resize_many_channels_and_fallback_orders():
    rng = np.random.default_rng(2)
    image = rng.random((6, 7, 300)).astype(np.float32)     # more channels than one cv2 call takes
    ours = resize(image, (9, 5))
    ref = sk_resize(image, (9, 5), order=1, mode="constant", anti_aliasing=False)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    small = rng.random((8, 8))
    np.testing.assert_allclose(resize(small, (13, 11), order=3),
                               sk_resize(small, (13, 11), order=3, mode="constant",
                                         anti_aliasing=False))
    with pytest.raises(ValueError, match="output_shape"):
        resize(small, (0, 4))


# ----------------------------------------------------------------------------- resize_image
def test_resize_image_none_mode_is_identity():
    image = random_image(np.random.default_rng(3), 37, 45)
    out, window, scale, padding, crop = resize_image(image, 64, 128, mode="none")
    assert out is image
    assert window == (0, 0, 37, 45) and scale == 1.0 and crop is None
    assert padding == [(0, 0), (0, 0), (0, 0)]


def test_resize_image_square_geometry_and_contents():
    image = random_image(np.random.default_rng(4), 100, 150)
    out, window, scale, padding, crop = resize_image(image, min_dim=64, max_dim=128, mode="square")
    assert scale == pytest.approx(128 / 150)
    assert out.shape == (128, 128, 3) and out.dtype == np.uint8
    # resized to (85, 128); centred with top = (128 - 85) // 2
    assert window == (21, 0, 106, 128)
    assert padding == [(21, 22), (0, 0), (0, 0)] and crop is None
    expected = resize(image, (85, 128), preserve_range=True)
    np.testing.assert_array_equal(out[21:106], expected)
    assert not out[:21].any() and not out[106:].any()


def test_resize_image_square_upscale_and_min_scale():
    rng = np.random.default_rng(5)
    image = random_image(rng, 30, 40)
    _, window, scale, _, _ = resize_image(image, min_dim=60, max_dim=128, mode="square")
    assert scale == pytest.approx(2.0) and window == (34, 24, 94, 104)
    # max_dim wins over min_dim: 60/30 = 2 would make the long side 80 > 64
    _, window, scale, _, _ = resize_image(image, min_dim=60, max_dim=64, mode="square")
    assert scale == pytest.approx(64 / 40) and window == (8, 0, 56, 64)
    # min_scale raises the scale when min_dim does not
    out, window, scale, _, _ = resize_image(image, max_dim=128, min_scale=3, mode="square")
    assert scale == 3.0 and out.shape == (128, 128, 3) and window == (19, 4, 109, 124)


def test_resize_image_pad64_geometry():
    image = random_image(np.random.default_rng(6), 70, 100)
    out, window, scale, padding, crop = resize_image(image, min_dim=128, max_dim=1024,
                                                     mode="pad64")
    assert scale == pytest.approx(128 / 70)
    # resized to (128, 183), width padded to 192: 4 left, 5 right
    assert out.shape == (128, 192, 3) and out.dtype == np.uint8
    assert window == (0, 4, 128, 187) and padding == [(0, 0), (4, 5), (0, 0)] and crop is None
    np.testing.assert_array_equal(out[:, 4:187], resize(image, (128, 183), preserve_range=True))


def test_resize_image_crop_geometry_and_rng():
    image = random_image(np.random.default_rng(7), 80, 100)
    out, window, scale, padding, crop = resize_image(image, min_dim=96, mode="crop",
                                                     rng=np.random.default_rng(0))
    assert scale == pytest.approx(1.2) and out.shape == (96, 96, 3)
    assert window == (0, 0, 96, 96) and padding == [(0, 0), (0, 0), (0, 0)]
    y, x, h, w = crop
    assert (y, h, w) == (0, 96, 96) and 0 <= x <= 24
    np.testing.assert_array_equal(out, resize(image, (96, 120), preserve_range=True)[:, x:x + 96])
    # the same seed gives the same crop; the global np.random state is used without rng
    again = resize_image(image, min_dim=96, mode="crop", rng=np.random.default_rng(0))[4]
    assert again == crop
    np.random.seed(0)
    first = resize_image(image, min_dim=96, mode="crop")[4]
    np.random.seed(0)
    assert resize_image(image, min_dim=96, mode="crop")[4] == first


@pytest.mark.parametrize("channels,dtype", [(1, np.uint8), (4, np.uint8), (7, np.float32),
                                            (3, np.uint16)])
def test_resize_image_any_channels_keeps_dtype(channels, dtype):
    image = random_image(np.random.default_rng(8), 33, 50, channels, dtype)
    for mode in ("square", "pad64"):
        out, window, _, _, _ = resize_image(image, min_dim=64, max_dim=96, mode=mode)
        assert out.dtype == dtype and out.shape[2] == channels
        assert out.shape[:2] == ((96, 96) if mode == "square" else (64, 128))


def test_resize_image_errors():
    image = np.zeros((20, 20, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"mode='bogus'.*'square'"):
        resize_image(image, 64, 128, mode="bogus")
    with pytest.raises(ValueError, match="min_dim=100"):
        resize_image(image, min_dim=100, max_dim=128, mode="pad64")
    with pytest.raises(ValueError, match="max_dim"):
        resize_image(image, min_dim=64, mode="square")
    with pytest.raises(ValueError, match="min_dim"):
        resize_image(image, mode="crop")
    with pytest.raises(ValueError, match=r"\[H, W, C\]"):
        resize_image(np.zeros((20, 20), dtype=np.uint8), 64, 128)


# ----------------------------------------------------------------------------- resize_mask
@pytest.mark.parametrize("mode", ["square", "pad64", "crop", "none"])
@pytest.mark.parametrize("hw", [(37, 53), (61, 29), (64, 64)])
def test_resize_mask_shape_matches_resized_image(mode, hw):
    image = np.zeros(hw + (3,), dtype=np.uint8)
    mask = np.zeros(hw + (2,), dtype=bool)
    out, _, scale, padding, crop = resize_image(image, min_dim=64, max_dim=128, mode=mode,
                                                rng=np.random.default_rng(1))
    resized = resize_mask(mask, scale, padding, crop)
    assert resized.shape == out.shape[:2] + (2,) and resized.dtype == bool


def test_resize_mask_aligns_with_image_resize():
    # An image that is 255 inside the mask: the bilinear image thresholded at the midpoint and
    # the nearest-neighbour mask may only differ along the boundary.
    mask = ellipse_mask((50, 70), 24, 33, 15, 22)[:, :, None]
    image = np.repeat(mask.astype(np.uint8) * 255, 3, axis=2)
    for scale_dims in [(64, 128), (128, 256), (40, 48)]:
        out, window, scale, padding, crop = resize_image(image, *scale_dims, mode="square")
        m = resize_mask(mask, scale, padding, crop)[:, :, 0]
        assert iou(out[:, :, 0] >= 128, m) > 0.95


def test_resize_mask_identity_and_errors():
    mask = np.random.default_rng(9).random((10, 12, 3)) > 0.5
    same = resize_mask(mask, 1.0, [(0, 0), (0, 0), (0, 0)])
    np.testing.assert_array_equal(same, mask)
    padded = resize_mask(mask, 1.0, [(1, 2), (3, 0), (0, 0)])
    np.testing.assert_array_equal(padded[1:11, 3:15], mask)
    assert padded.shape == (13, 15, 3)
    with pytest.raises(ValueError, match=r"\[H, W, N\]"):
        resize_mask(mask[:, :, 0], 2.0, [(0, 0), (0, 0), (0, 0)])


# ----------------------------------------------------------------------------- round trip
def make_instances(shape):
    """Blob masks with known boxes, away from the image border."""
    specs = [(18, 25, 9, 14), (40, 60, 12, 8), (38, 32, 9, 10)]
    masks = np.stack([ellipse_mask(shape, *s) for s in specs], axis=-1)
    return masks, extract_bboxes(masks)


def map_back(image_shape, window, scale, crop, boxes, masks):
    """Invert resize_image: boxes and masks back to original-image pixels."""
    y1, x1, y2, x2 = window
    oy, ox = (crop[0], crop[1]) if crop is not None else (0, 0)
    # In crop mode the window is the whole crop and the crop offset lives in the scaled image.
    shift = np.array([y1 - oy, x1 - ox, y1 - oy, x1 - ox])
    orig_boxes = (boxes - shift) / scale
    h, w = image_shape[:2]
    if crop is None:
        inside = masks[y1:y2, x1:x2]
    else:
        sh, sw = round(h * scale), round(w * scale)
        inside = np.zeros((sh, sw, masks.shape[-1]), dtype=bool)
        inside[oy:oy + crop[2], ox:ox + crop[3]] = masks
    orig_masks = resize(inside, (h, w), order=0)
    return orig_boxes, orig_masks


@pytest.mark.parametrize("mode,min_dim,max_dim", [
    ("square", 64, 128),     # upscale by 1.6
    ("square", 32, 64),      # downscale by 0.8
    ("pad64", 128, None),
    ("none", None, None),
    ("crop", 96, None),
])
def test_resize_image_and_mask_round_trip_within_a_pixel(mode, min_dim, max_dim):
    """Boxes come back within a pixel and masks with IoU > 0.95. A shrink drops detail, so
    there the bound is one pixel of the resized image (1 / scale) and IoU > 0.9."""
    shape = (60, 80)
    rng = np.random.default_rng(11)
    image = random_image(rng, *shape)
    masks, boxes = make_instances(shape)
    for seed in range(4):
        out, window, scale, padding, crop = resize_image(
            image, min_dim=min_dim, max_dim=max_dim, mode=mode, rng=np.random.default_rng(seed))
        new_masks = resize_mask(masks, scale, padding, crop)
        assert new_masks.shape[:2] == out.shape[:2]
        new_boxes = extract_bboxes(new_masks)
        keep = np.ones(len(boxes), dtype=bool)
        if crop is not None:
            # only instances wholly inside the crop can be mapped back
            y, x, ch, cw = crop
            scaled = boxes * scale
            keep = ((scaled[:, 0] >= y) & (scaled[:, 1] >= x) & (scaled[:, 2] <= y + ch)
                    & (scaled[:, 3] <= x + cw))
            if not keep.any():
                continue
        orig_boxes, orig_masks = map_back(image.shape, window, scale, crop, new_boxes,
                                          new_masks)
        box_tol, min_iou = (1.0, 0.95) if scale >= 1 else (1.0 / scale, 0.9)
        assert np.abs(orig_boxes[keep] - boxes[keep]).max() <= box_tol
        for i in np.nonzero(keep)[0]:
            assert iou(orig_masks[:, :, i], masks[:, :, i]) > min_iou, (mode, seed, i)
        if mode == "crop":
            assert keep.any()
