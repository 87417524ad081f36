"""DetectionLayer against a per-image NumPy reference (classic algorithm), edge cases, Keras."""
import numpy as np
import pytest

import tensorflow as tf
import keras

from mrcnn.data.image_meta import compose_image_meta  # noqa: E402
from mrcnn.model.detection import DetectionLayer  # noqa: E402
from mrcnn.ops.boxes import apply_box_deltas, non_max_suppression, norm_boxes  # noqa: E402

STD = (0.1, 0.1, 0.2, 0.2)
NUM_CLASSES = 4
SIDE = 128
WINDOW = (16, 8, 112, 120)  # pixels of the molded image; the rest is padding


def make_meta(batch, window=WINDOW):
    row = compose_image_meta(7, (96, 112, 3), (SIDE, SIDE, 3), window, 1.0,
                             np.ones(NUM_CLASSES))
    return np.tile(row[None], (batch, 1))


def make_inputs(rng, batch, count=20, padding=4):
    """ROIs clustered around a few centres (so NMS has work), the last `padding` rows zero.

    The padding rows get confident foreground classes: they must still never be detections.
    """
    centers = rng.uniform(0.15, 0.85, size=(batch, 4, 2))
    pick = rng.integers(0, 4, size=(batch, count))
    center = np.take_along_axis(centers, pick[..., None], axis=1)
    center = center + rng.normal(0, 0.02, size=(batch, count, 2))
    size = rng.uniform(0.15, 0.3, size=(batch, count, 2))
    rois = np.concatenate([center - size / 2, center + size / 2], axis=-1)
    rois[:, count - padding:] = 0
    logits = rng.normal(0, 1.5, size=(batch, count, NUM_CLASSES))
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    probs[:, count - padding:] = [0.01, 0.97, 0.01, 0.01]
    deltas = rng.normal(0, 1.0, size=(batch, count, NUM_CLASSES, 4))
    return [x.astype(np.float32) for x in (rois, probs, deltas)]


def reference_detections(rois, probs, deltas, meta, max_instances, min_confidence,
                         nms_threshold, std=STD):
    """The classic refine_detections, one image at a time, with the NumPy box ops."""
    batch, count = probs.shape[:2]
    out = np.zeros((batch, max_instances, 6), np.float32)
    for b in range(batch):
        class_ids = np.argmax(probs[b], axis=-1)
        scores = probs[b, np.arange(count), class_ids]
        class_deltas = deltas[b, np.arange(count), class_ids] * np.float32(std)
        boxes = apply_box_deltas(rois[b], class_deltas)
        shape = meta[b, 4:6]
        wy1, wx1, wy2, wx2 = norm_boxes(meta[b, 7:11], shape)
        boxes = np.stack([np.clip(boxes[:, 0], wy1, wy2), np.clip(boxes[:, 1], wx1, wx2),
                          np.clip(boxes[:, 2], wy1, wy2), np.clip(boxes[:, 3], wx1, wx2)], 1)
        keep = np.where((class_ids > 0) & (scores >= min_confidence)
                        & np.any(rois[b] != 0, axis=-1))[0]
        kept = []
        for class_id in np.unique(class_ids[keep]):
            ix = keep[class_ids[keep] == class_id]
            kept.extend(ix[non_max_suppression(boxes[ix], scores[ix], nms_threshold)])
        kept = np.array(kept, int)
        kept = kept[np.argsort(-scores[kept], kind="stable")][:max_instances]
        rows = np.concatenate([boxes[kept], class_ids[kept, None], scores[kept, None]], axis=1)
        out[b, :len(kept)] = rows
    return out


def count_rows(detections):
    return int(np.sum(np.any(detections != 0, axis=-1)))


@pytest.mark.parametrize("max_instances,min_confidence,nms_threshold", [
    (30, 0.5, 0.3),   # fewer detections than slots: zero padding
    (3, 0.2, 0.3),    # truncated to the best max_instances
    (30, 0.0, 0.5),   # no confidence floor: background and padding still excluded
])
def test_matches_numpy_reference(max_instances, min_confidence, nms_threshold):
    rng = np.random.default_rng(20)
    rois, probs, deltas = make_inputs(rng, batch=2)
    meta = make_meta(2)
    layer = DetectionLayer(max_instances, min_confidence, nms_threshold, STD)
    got = layer([rois, probs, deltas, meta]).numpy()
    want = reference_detections(rois, probs, deltas, meta, max_instances, min_confidence,
                                nms_threshold)
    assert got.shape == (2, max_instances, 6) and got.dtype == np.float32
    for b in range(2):
        n = count_rows(want[b])
        assert n > 0
        assert count_rows(got[b]) == n
        assert np.all(got[b, n:] == 0)
        # Scores are distinct random floats, so rows come in the same order.
        np.testing.assert_allclose(got[b, :n], want[b, :n], atol=1e-5)
        assert np.all(np.diff(got[b, :n, 5]) <= 0)
    if max_instances == 3:
        assert count_rows(got) == 6
    # Padding ROIs (confident class 1 at zero boxes) never show up.
    assert not np.any(np.all(got[..., :4] == 0, axis=-1) & (got[..., 4] > 0))
    # Boxes stay inside the normalized window.
    window = norm_boxes(np.array(WINDOW), (SIDE, SIDE))
    real = got[got[..., 4] > 0]
    ys, xs = real[:, [0, 2]], real[:, [1, 3]]
    assert np.all(ys >= window[0] - 1e-6) and np.all(ys <= window[2] + 1e-6)
    assert np.all(xs >= window[1] - 1e-6) and np.all(xs <= window[3] + 1e-6)


def test_nms_is_per_class():
    # Three identical ROIs: class 1 (0.9), class 2 (0.8), class 1 (0.7). The second class-1
    # box is suppressed by the first; the class-2 box is not.
    rois = np.tile(np.array([0.2, 0.2, 0.6, 0.6], np.float32), (1, 3, 1))
    probs = np.array([[[0.05, 0.9, 0.05, 0.0], [0.1, 0.05, 0.8, 0.05],
                       [0.1, 0.7, 0.1, 0.1]]], np.float32)
    deltas = np.zeros((1, 3, NUM_CLASSES, 4), np.float32)
    meta = make_meta(1, window=(0, 0, SIDE, SIDE))
    got = DetectionLayer(5, 0.5, 0.3, STD)([rois, probs, deltas, meta]).numpy()[0]
    box = [0.2, 0.2, 0.6, 0.6]
    np.testing.assert_allclose(got, [box + [1, 0.9], box + [2, 0.8], [0] * 6, [0] * 6,
                                     [0] * 6], atol=1e-6)


def test_score_equal_to_min_confidence_is_kept_and_background_dropped():
    rois = np.array([[[0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.9, 0.9], [0.4, 0.1, 0.6, 0.3]]],
                    np.float32)
    probs = np.array([[[0.25, 0.5, 0.25, 0.0],    # exactly min_confidence: kept
                       [0.9, 0.05, 0.05, 0.0],    # background: dropped
                       [0.3, 0.2, 0.1, 0.4]]],    # below min_confidence: dropped
                     np.float32)
    deltas = np.zeros((1, 3, NUM_CLASSES, 4), np.float32)
    meta = make_meta(1, window=(0, 0, SIDE, SIDE))
    got = DetectionLayer(4, 0.5, 0.3, STD)([rois, probs, deltas, meta]).numpy()[0]
    np.testing.assert_allclose(got[0], [0.1, 0.1, 0.3, 0.3, 1, 0.5], atol=1e-6)
    assert np.all(got[1:] == 0)


def test_refinement_uses_the_class_deltas_and_std_dev_and_clips_to_window():
    rois = np.array([[[0.2, 0.2, 0.6, 0.6]]], np.float32)
    probs = np.array([[[0.0, 0.1, 0.0, 0.9]]], np.float32)
    deltas = np.zeros((1, 1, NUM_CLASSES, 4), np.float32)
    deltas[0, 0, 3] = [1.0, 0.0, 0.0, 0.0]    # class 3: shift down by 0.1 * 0.4
    deltas[0, 0, 1] = [9.0, 9.0, 9.0, 9.0]    # another class's deltas must be ignored
    meta = make_meta(1, window=(0, 0, SIDE, SIDE))
    got = DetectionLayer(2, 0.5, 0.3, STD)([rois, probs, deltas, meta]).numpy()[0]
    np.testing.assert_allclose(got[0], [0.24, 0.2, 0.64, 0.6, 3, 0.9], atol=1e-6)

    # The window (normalized by the image shape) clips the refined box.
    meta = make_meta(1, window=(0, 0, 64, SIDE))
    got = DetectionLayer(2, 0.5, 0.3, STD)([rois, probs, deltas, meta]).numpy()[0]
    np.testing.assert_allclose(got[0], [0.24, 0.2, 63 / 127, 0.6, 3, 0.9], atol=1e-6)


def test_nothing_confident_gives_all_zeros():
    rng = np.random.default_rng(21)
    rois, probs, deltas = make_inputs(rng, batch=2, padding=0)
    assert probs[..., 1:].max() < 0.999
    got = DetectionLayer(10, 0.999, 0.3, STD)([rois, probs, deltas, make_meta(2)]).numpy()
    assert got.shape == (2, 10, 6)
    assert np.all(got == 0)


def test_all_padding_gives_all_zeros_even_without_confidence_floor():
    rois = np.zeros((2, 5, 4), np.float32)
    probs = np.full((2, 5, NUM_CLASSES), 1.0 / NUM_CLASSES, np.float32)
    probs[..., 2] += 0.01
    deltas = np.zeros((2, 5, NUM_CLASSES, 4), np.float32)
    got = DetectionLayer(4, 0.0, 0.3, STD)([rois, probs, deltas, make_meta(2)]).numpy()
    assert np.all(got == 0)


def test_background_only_model_gives_all_zeros():
    rois = np.array([[[0.1, 0.1, 0.5, 0.5]]], np.float32)
    probs = np.ones((1, 1, 1), np.float32)
    deltas = np.zeros((1, 1, 1, 4), np.float32)
    meta = compose_image_meta(0, (SIDE, SIDE, 3), (SIDE, SIDE, 3), (0, 0, SIDE, SIDE), 1.0,
                              [1])[None]
    got = DetectionLayer(3, 0.0, 0.3, STD)([rois, probs, deltas, meta]).numpy()
    np.testing.assert_array_equal(got, np.zeros((1, 3, 6)))


def test_same_image_twice_and_batch_one_vs_two():
    rng = np.random.default_rng(22)
    rois, probs, deltas = make_inputs(rng, batch=1)
    layer = DetectionLayer(8, 0.2, 0.3, STD)
    single = layer([rois, probs, deltas, make_meta(1)]).numpy()
    doubled = layer([np.concatenate([x, x]) for x in (rois, probs, deltas)]
                    + [make_meta(2)]).numpy()
    assert count_rows(single[0]) > 0
    np.testing.assert_allclose(doubled[0], single[0], atol=1e-6)
    np.testing.assert_allclose(doubled[1], single[0], atol=1e-6)


def test_keras_model_unknown_batch_and_config_round_trip():
    layer = DetectionLayer(6, 0.3, 0.3, STD, name="mrcnn_detection")
    inputs = [keras.Input((None, 4)), keras.Input((None, NUM_CLASSES)),
              keras.Input((None, NUM_CLASSES, 4)), keras.Input((12 + NUM_CLASSES,))]
    out = layer(inputs)
    assert tuple(out.shape) == (None, 6, 6)
    model = keras.Model(inputs, out)

    rng = np.random.default_rng(23)
    data = make_inputs(rng, batch=2) + [make_meta(2)]
    two = model.predict(data, verbose=0)
    one = model.predict([x[:1] for x in data], verbose=0)
    np.testing.assert_allclose(two, reference_detections(*data, 6, 0.3, 0.3), atol=1e-5)
    np.testing.assert_allclose(one[0], two[0], atol=1e-6)

    config = layer.get_config()
    assert config["max_instances"] == 6 and config["bbox_std_dev"] == list(STD)
    assert config["min_confidence"] == pytest.approx(0.3)
    assert config["nms_threshold"] == pytest.approx(0.3)
    clone = DetectionLayer.from_config(config)
    assert clone.name == "mrcnn_detection"
    np.testing.assert_allclose(clone(data).numpy(), two, atol=1e-6)
    rebuilt = keras.Model.from_config(model.get_config())
    np.testing.assert_allclose(rebuilt.predict(data, verbose=0), two, atol=1e-6)


@pytest.mark.parametrize("kwargs,field", [
    (dict(max_instances=0), "max_instances"),
    (dict(min_confidence=1.2), "min_confidence"),
    (dict(min_confidence="high"), "min_confidence"),
    (dict(nms_threshold=-0.1), "nms_threshold"),
    (dict(bbox_std_dev=(0.1, 0.1)), "bbox_std_dev"),
])
def test_invalid_arguments(kwargs, field):
    args = dict(max_instances=10, min_confidence=0.7, nms_threshold=0.3, bbox_std_dev=STD)
    args.update(kwargs)
    with pytest.raises(ValueError, match=field):
        DetectionLayer(**args)


def test_wrong_input_count():
    with pytest.raises(ValueError, match="rois, mrcnn_class, mrcnn_bbox, image_meta"):
        DetectionLayer(10, 0.7, 0.3, STD)([np.zeros((1, 2, 4), np.float32)])


def test_detection_boxes_slices_the_box_columns():
    from mrcnn.model.detection import DetectionBoxes
    detections = np.arange(2 * 3 * 6, dtype=np.float32).reshape(2, 3, 6)
    boxes = DetectionBoxes()(tf.constant(detections))
    np.testing.assert_array_equal(boxes.numpy(), detections[..., :4])


def test_non_finite_network_outputs_give_no_detections_and_no_error():
    layer = DetectionLayer(max_instances=5, min_confidence=0.0, nms_threshold=0.3,
                           bbox_std_dev=(0.1, 0.1, 0.2, 0.2))
    meta = compose_image_meta(0, (64, 64, 3), (64, 64, 3), (0, 0, 64, 64), 1.0, np.ones(3))
    rois = np.array([[[0.1, 0.1, 0.5, 0.5], [0.2, 0.2, 0.6, 0.6]]], np.float32)
    probs = np.array([[[np.nan, np.nan, np.nan], [0.1, 0.8, 0.1]]], np.float32)
    deltas = np.zeros((1, 2, 3, 4), np.float32)
    deltas[0, 1, 1] = np.inf
    out = layer([tf.constant(rois), tf.constant(probs), tf.constant(deltas),
                 tf.constant(meta[np.newaxis])]).numpy()
    assert np.isfinite(out).all()
    assert (out == 0).all()
