"""roi_pyramid_level known values; PyramidROIAlign against direct per-box crops; batching; Keras."""
import numpy as np
import pytest

import tensorflow as tf
import keras

from mrcnn.data.image_meta import compose_image_meta  # noqa: E402
from mrcnn.model.roi_align import PyramidROIAlign, roi_pyramid_level  # noqa: E402
from mrcnn.ops.boxes import norm_boxes  # noqa: E402

IMAGE = 1024  # molded image side the boxes refer to (feature maps are kept tiny anyway)
CHANNELS = 3
FEATURE_SIDES = (16, 8, 4, 2)  # P2..P5


def pixel_box(size, image=IMAGE, top=0):
    """Normalized square box of `size` pixels in an image x image picture."""
    return norm_boxes(np.array([top, top, top + size, top + size]), (image, image))


@pytest.mark.parametrize("size,level", [
    (224, 4), (112, 3), (448, 5), (56, 2),
    (310, 4), (320, 5),  # the 4/5 boundary lies at 224 * sqrt(2) = 316.8 px
    (150, 3), (170, 4),  # the 3/4 boundary lies at 224 / sqrt(2) = 158.4 px
    (2, 2),      # tiny -> clipped up to P2
    (1024, 5),   # whole image -> clipped down to P5
])
def test_roi_pyramid_level_known_values(size, level):
    got = roi_pyramid_level(pixel_box(size)[None], IMAGE * IMAGE).numpy()
    assert got.dtype == np.int32
    assert got.tolist() == [level]


def test_roi_pyramid_level_depends_on_pixel_size_not_image_size():
    # A 224 px box is level 4 whether the image is 512 or 1024 px wide.
    assert roi_pyramid_level(pixel_box(224, image=512), 512 * 512).numpy() == 4
    # Non-square boxes use sqrt(h * w): 112 x 448 has the area of 224 x 224.
    box = norm_boxes(np.array([0, 0, 112, 448]), (IMAGE, IMAGE))
    assert roi_pyramid_level(box, IMAGE * IMAGE).numpy() == 4


def test_roi_pyramid_level_degenerate_boxes_go_to_p2():
    boxes = np.array([[0, 0, 0, 0],            # zero padding
                      [0.5, 0.5, 0.5, 0.9],    # zero height
                      [0.6, 0.6, 0.2, 0.2]],   # inverted
                     np.float32)
    assert roi_pyramid_level(boxes, IMAGE * IMAGE).numpy().tolist() == [2, 2, 2]


def test_roi_pyramid_level_keeps_batch_shape():
    boxes = np.stack([np.stack([pixel_box(56), pixel_box(224)]),
                      np.stack([pixel_box(112), pixel_box(600)])]).astype(np.float32)
    np.testing.assert_array_equal(roi_pyramid_level(boxes, IMAGE * IMAGE).numpy(),
                                  [[2, 4], [3, 5]])


def reference_level(box, image_area):
    """The level formula written out in NumPy, one box at a time."""
    h, w = max(box[2] - box[0], 0), max(box[3] - box[1], 0)
    if h * w == 0:
        return 2
    level = 4 + np.round(np.log2(np.sqrt(h * w) / (224.0 / np.sqrt(image_area))))
    return int(np.clip(level, 2, 5))


def make_meta(batch, side=IMAGE, num_classes=3):
    row = compose_image_meta(0, (side, side, 3), (side, side, 3), (0, 0, side, side), 1.0,
                             np.ones(num_classes))
    return np.tile(row[None], (batch, 1))


def make_pyramid(rng, batch):
    return [rng.normal(size=(batch, s, s, CHANNELS)).astype(np.float32) for s in FEATURE_SIDES]


def make_boxes(rng, batch, count):
    """Boxes of all four levels in shuffled order, plus one zero padding row per image."""
    sizes = rng.choice([30, 60, 130, 250, 500, 900], size=(batch, count - 1))
    tops = rng.uniform(0, IMAGE - sizes)
    lefts = rng.uniform(0, IMAGE - sizes)
    pixels = np.stack([tops, lefts, tops + sizes, lefts + sizes * 0.8], axis=-1)
    boxes = norm_boxes(pixels, (IMAGE, IMAGE))
    return np.concatenate([boxes, np.zeros((batch, 1, 4), np.float32)], axis=1)


def reference_pool(boxes, pyramid, pool_shape):
    """One crop_and_resize call per box, on the level given by the NumPy formula."""
    batch, count = boxes.shape[:2]
    out = np.zeros((batch, count, *pool_shape, CHANNELS), np.float32)
    levels = np.zeros((batch, count), int)
    for b in range(batch):
        for r in range(count):
            level = reference_level(boxes[b, r], IMAGE * IMAGE)
            levels[b, r] = level
            out[b, r] = tf.image.crop_and_resize(
                pyramid[level - 2][b:b + 1], boxes[b, r][None], [0], pool_shape,
                method="bilinear").numpy()[0]
    return out, levels


def test_matches_per_box_crops_in_input_order():
    rng = np.random.default_rng(10)
    batch, count, pool = 2, 12, (3, 4)
    boxes = make_boxes(rng, batch, count)
    pyramid = make_pyramid(rng, batch)
    layer = PyramidROIAlign(pool)
    got = layer([boxes, make_meta(batch), *pyramid]).numpy()
    want, levels = reference_pool(boxes, pyramid, pool)
    assert set(levels[:, :-1].ravel()) == {2, 3, 4, 5}  # every level is exercised
    assert got.shape == (batch, count, 3, 4, CHANNELS)
    np.testing.assert_allclose(got, want, atol=1e-5)
    # The two images hold different features: crops of image 1 do not come from image 0.
    swapped = [p[::-1] for p in pyramid]
    want_swapped, _ = reference_pool(boxes, swapped, pool)
    assert not np.allclose(want, want_swapped, atol=1e-3)


def test_batch_one_vs_two_and_same_image_twice():
    rng = np.random.default_rng(11)
    boxes = make_boxes(rng, 1, 8)
    pyramid = make_pyramid(rng, 1)
    layer = PyramidROIAlign(5)
    single = layer([boxes, make_meta(1), *pyramid]).numpy()
    doubled = layer([np.concatenate([boxes, boxes]), make_meta(2),
                     *[np.concatenate([p, p]) for p in pyramid]]).numpy()
    assert single.shape == (1, 8, 5, 5, CHANNELS)
    np.testing.assert_allclose(doubled[0], single[0], atol=1e-6)
    np.testing.assert_allclose(doubled[1], single[0], atol=1e-6)


def test_whole_image_box_on_p5_is_its_corners():
    # crop_and_resize maps 1.0 to the last pixel: a 2 x 2 crop of the whole image is the four
    # corner pixels of the level's map (to 2**-20 of a pixel: boxes are clipped just inside).
    rng = np.random.default_rng(12)
    pyramid = make_pyramid(rng, 1)
    boxes = np.array([[[0.0, 0.0, 1.0, 1.0]]], np.float32)
    got = PyramidROIAlign(2)([boxes, make_meta(1), *pyramid]).numpy()[0, 0]
    p5 = pyramid[3][0]
    np.testing.assert_allclose(got, p5[[[0, 0], [-1, -1]], [[0, -1], [0, -1]]], atol=1e-5)


def test_box_ending_on_the_border_keeps_its_last_row_in_eager_graph_and_xla():
    # A shape touching the bottom edge: its normalised y2, computed in the graph, came out 1.0
    # in one graph and one float step above it in another, and crop_and_resize then returned
    # a row of zeros (the extrapolation value) for the last row in the second only.
    rng = np.random.default_rng(14)
    pyramid = [np.abs(p) + 1.0 for p in make_pyramid(rng, 1)]  # no sample is 0 inside the map
    above_one = np.nextafter(np.float32(1.0), np.float32(2.0))
    boxes = np.array([[[0.6031746, 0.0952381, 1.0, 0.5873016],
                       [0.6031746, 0.0952381, above_one, 0.5873016],
                       [0.0, 0.0, 1.0, 1.0]]], np.float32)
    inputs = [boxes, make_meta(1), *pyramid]
    results = {}
    for xla in (False, True):
        layer = PyramidROIAlign(7, xla_compatible=xla)
        results[f"eager xla={xla}"] = layer(inputs).numpy()
        results[f"graph xla={xla}"] = tf.function(lambda *a: layer(list(a)))(*inputs).numpy()
    results["jit"] = tf.function(lambda *a: PyramidROIAlign(7, xla_compatible=True)(list(a)),
                                 jit_compile=True)(*inputs).numpy()
    reference = results["eager xla=False"]
    for name, got in results.items():
        assert (got[0, :, -1] > 0.5).all(), (name, got[0, :, -1, :, 0])
        np.testing.assert_allclose(got, reference, rtol=1e-5, atol=1e-5, err_msg=name)


def test_gradients_reach_features_not_boxes():
    rng = np.random.default_rng(13)
    boxes = tf.constant(make_boxes(rng, 2, 6))
    pyramid = [tf.constant(p) for p in make_pyramid(rng, 2)]
    layer = PyramidROIAlign(2)
    with tf.GradientTape() as tape:
        tape.watch([boxes, *pyramid])
        loss = tf.reduce_sum(layer([boxes, tf.constant(make_meta(2)), *pyramid]) ** 2)
    grads = tape.gradient(loss, [boxes, *pyramid])
    assert grads[0] is None or not np.any(grads[0].numpy())
    assert any(g is not None and np.any(g.numpy()) for g in grads[1:])


def test_keras_model_unknown_batch_and_rois_and_config_round_trip():
    layer = PyramidROIAlign((3, 3), name="roi_align_classifier")
    inputs = [keras.Input((None, 4)), keras.Input((15,))] + [
        keras.Input((None, None, CHANNELS)) for _ in FEATURE_SIDES]
    out = layer(inputs)
    assert tuple(out.shape) == (None, None, 3, 3, CHANNELS)
    model = keras.Model(inputs, out)

    rng = np.random.default_rng(14)
    boxes = make_boxes(rng, 2, 7)
    pyramid = make_pyramid(rng, 2)
    two = model.predict([boxes, make_meta(2), *pyramid], verbose=0)
    one = model.predict([boxes[:1], make_meta(1), *[p[:1] for p in pyramid]], verbose=0)
    want, _ = reference_pool(boxes, pyramid, (3, 3))
    np.testing.assert_allclose(two, want, atol=1e-5)
    np.testing.assert_allclose(one[0], two[0], atol=1e-6)

    config = layer.get_config()
    assert config["pool_shape"] == [3, 3]
    clone = PyramidROIAlign.from_config(config)
    assert clone.pool_shape == (3, 3) and clone.name == "roi_align_classifier"
    rebuilt = keras.Model.from_config(model.get_config())
    np.testing.assert_allclose(rebuilt.predict([boxes, make_meta(2), *pyramid], verbose=0),
                               two, atol=1e-6)


@pytest.mark.parametrize("pool_shape", [0, (7,), (7, 7, 7), (7, -1), "7", 7.5, True])
def test_invalid_pool_shape(pool_shape):
    with pytest.raises(ValueError, match="pool_shape"):
        PyramidROIAlign(pool_shape)


def test_wrong_inputs():
    rng = np.random.default_rng(15)
    pyramid = make_pyramid(rng, 1)
    boxes = make_boxes(rng, 1, 3)
    with pytest.raises(ValueError, match="P2, P3, P4, P5"):
        PyramidROIAlign(2)([boxes, make_meta(1), *pyramid[:3]])
    pyramid[1] = np.zeros((1, 8, 8, CHANNELS + 1), np.float32)
    with pytest.raises(ValueError, match="channel"):
        PyramidROIAlign(2)([boxes, make_meta(1), *pyramid])
