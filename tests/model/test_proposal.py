"""ProposalLayer against a per-image NumPy reference (classic algorithm); batching; Keras."""
import numpy as np
import pytest

import tensorflow as tf
import keras

from mrcnn.model.proposal import ProposalLayer  # noqa: E402
from mrcnn.ops.boxes import apply_box_deltas, non_max_suppression  # noqa: E402

STD = (0.1, 0.1, 0.2, 0.2)


def make_inputs(rng, batch, num_anchors, spread=1.0):
    """Random RPN outputs on anchors that partly stick out of the image (to exercise clipping)."""
    centers = rng.uniform(-0.05, 1.05, size=(batch, num_anchors, 2))
    sizes = rng.uniform(0.05, 0.4, size=(batch, num_anchors, 2))
    anchors = np.concatenate([centers - sizes / 2, centers + sizes / 2], axis=-1)
    fg = rng.uniform(0.0, 1.0, size=(batch, num_anchors))
    probs = np.stack([1.0 - fg, fg], axis=-1)
    deltas = rng.normal(0.0, spread, size=(batch, num_anchors, 4))
    return [x.astype(np.float32) for x in (probs, deltas, anchors)]


def reference_proposals(probs, deltas, anchors, proposal_count, nms_threshold, pre_nms_limit,
                        std=STD):
    """The classic algorithm, one image at a time, with the NumPy box ops."""
    out = np.zeros((probs.shape[0], proposal_count, 4), np.float32)
    for b in range(probs.shape[0]):
        scores = probs[b, :, 1]
        order = np.argsort(-scores, kind="stable")[:min(pre_nms_limit, scores.shape[0])]
        boxes = apply_box_deltas(anchors[b, order], deltas[b, order] * np.float32(std))
        boxes = np.clip(boxes, 0.0, 1.0)
        keep = non_max_suppression(boxes, scores[order], nms_threshold)[:proposal_count]
        out[b, :len(keep)] = boxes[keep]
    return out


def count_rows(boxes):
    return int(np.sum(np.any(boxes != 0, axis=-1)))


@pytest.mark.parametrize("proposal_count,nms_threshold,pre_nms_limit", [
    (40, 0.7, 150),   # NMS output capped by proposal_count
    (60, 0.3, 50),    # fewer survivors than proposal_count: zero padding
    (30, 0.5, 1000),  # pre_nms_limit above the anchor count
])
def test_matches_numpy_reference(proposal_count, nms_threshold, pre_nms_limit):
    rng = np.random.default_rng(1)
    probs, deltas, anchors = make_inputs(rng, batch=2, num_anchors=200)
    layer = ProposalLayer(proposal_count, nms_threshold, pre_nms_limit, STD)
    got = layer([probs, deltas, anchors]).numpy()
    want = reference_proposals(probs, deltas, anchors, proposal_count, nms_threshold,
                               pre_nms_limit)
    assert got.shape == (2, proposal_count, 4)
    assert got.dtype == np.float32
    # Scores are distinct random floats, so the order is fixed: compare row by row.
    np.testing.assert_allclose(got, want, atol=1e-5)
    for b in range(2):
        n = count_rows(want[b])
        assert count_rows(got[b]) == n
        if n < proposal_count:
            assert np.all(got[b, n:] == 0)
    assert got.min() >= 0.0 and got.max() <= 1.0


def test_padding_when_few_survive():
    rng = np.random.default_rng(2)
    probs, deltas, anchors = make_inputs(rng, batch=1, num_anchors=200)
    # pre_nms_limit 10 -> at most 10 proposals out of 25 slots.
    got = ProposalLayer(25, 0.7, 10, STD)([probs, deltas, anchors]).numpy()
    want = reference_proposals(probs, deltas, anchors, 25, 0.7, 10)
    assert count_rows(want[0]) <= 10
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.all(got[0, 10:] == 0)


def test_heavy_overlap_across_nms_tiles():
    """More boxes than one NMS tile (512): suppression must also work across tiles."""
    rng = np.random.default_rng(3)
    # Each anchor position twice (with different deltas and scores): heavy overlap, so boxes
    # of the second tile are suppressed by boxes of the first one, and some survive.
    probs, deltas, anchors = make_inputs(rng, batch=1, num_anchors=700, spread=0.3)
    anchors = np.tile(anchors[:, :350], (1, 2, 1))
    layer = ProposalLayer(600, 0.5, 650, STD)
    got = layer([probs, deltas, anchors]).numpy()
    want = reference_proposals(probs, deltas, anchors, 600, 0.5, 650)
    assert 200 < count_rows(want[0]) < 600  # 264 of 650: a real NMS workload
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_same_image_twice_and_batch_one_vs_two():
    rng = np.random.default_rng(4)
    probs, deltas, anchors = make_inputs(rng, batch=1, num_anchors=200)
    layer = ProposalLayer(30, 0.7, 100, STD)
    single = layer([probs, deltas, anchors]).numpy()
    doubled = layer([np.concatenate([x, x]) for x in (probs, deltas, anchors)]).numpy()
    assert doubled.shape == (2, 30, 4)
    np.testing.assert_allclose(doubled[0], single[0], atol=1e-6)
    np.testing.assert_allclose(doubled[1], single[0], atol=1e-6)


def test_different_images_are_independent():
    rng = np.random.default_rng(5)
    a = make_inputs(rng, batch=1, num_anchors=200)
    b = make_inputs(rng, batch=1, num_anchors=200)
    layer = ProposalLayer(30, 0.7, 100, STD)
    both = layer([np.concatenate([x, y]) for x, y in zip(a, b)]).numpy()
    np.testing.assert_allclose(both[0], layer(a).numpy()[0], atol=1e-6)
    np.testing.assert_allclose(both[1], layer(b).numpy()[0], atol=1e-6)


def test_anchors_broadcast_over_batch():
    rng = np.random.default_rng(6)
    probs, deltas, anchors = make_inputs(rng, batch=2, num_anchors=100)
    shared = anchors[:1]
    layer = ProposalLayer(20, 0.7, 100, STD)
    got = layer([probs, deltas, shared]).numpy()
    want = layer([probs, deltas, np.concatenate([shared, shared])]).numpy()
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_hand_built_suppression():
    # Two nearly identical boxes (IoU 0.9) and one apart; zero deltas keep the anchors.
    anchors = np.array([[[0.1, 0.1, 0.5, 0.5], [0.1, 0.1, 0.5, 0.46], [0.6, 0.6, 0.9, 0.9]]],
                       np.float32)
    fg = np.array([[0.6, 0.9, 0.3]], np.float32)
    probs = np.stack([1 - fg, fg], axis=-1)
    deltas = np.zeros((1, 3, 4), np.float32)
    got = ProposalLayer(4, 0.7, 10, STD)([probs, deltas, anchors]).numpy()[0]
    np.testing.assert_allclose(got, [[0.1, 0.1, 0.5, 0.46], [0.6, 0.6, 0.9, 0.9], [0] * 4,
                                     [0] * 4], atol=1e-6)
    # Above the IoU of the pair, nothing is suppressed and the order follows the scores.
    got = ProposalLayer(4, 0.95, 10, STD)([probs, deltas, anchors]).numpy()[0]
    np.testing.assert_allclose(got[:3], anchors[0, [1, 0, 2]], atol=1e-6)


def test_std_dev_scales_deltas():
    anchors = np.array([[[0.2, 0.2, 0.6, 0.6]]], np.float32)
    probs = np.array([[[0.1, 0.9]]], np.float32)
    deltas = np.array([[[1.0, -1.0, 0.0, 0.0]]], np.float32)  # shift by std * size
    got = ProposalLayer(1, 0.7, 10, (0.1, 0.2, 0.2, 0.2))([probs, deltas, anchors]).numpy()
    np.testing.assert_allclose(got[0, 0], [0.24, 0.12, 0.64, 0.52], atol=1e-6)


def test_keras_model_unknown_batch_and_config_round_trip():
    layer = ProposalLayer(20, 0.6, 80, STD, name="ROI")
    inputs = [keras.Input((None, 2)), keras.Input((None, 4)), keras.Input((None, 4))]
    out = layer(inputs)
    assert tuple(out.shape) == (None, 20, 4)
    model = keras.Model(inputs, out)

    rng = np.random.default_rng(7)
    data = make_inputs(rng, batch=2, num_anchors=120)
    two = model.predict(data, verbose=0)
    one = model.predict([x[:1] for x in data], verbose=0)
    np.testing.assert_allclose(two, reference_proposals(*data, 20, 0.6, 80), atol=1e-5)
    np.testing.assert_allclose(one[0], two[0], atol=1e-6)

    config = layer.get_config()
    assert config["proposal_count"] == 20 and config["pre_nms_limit"] == 80
    assert config["nms_threshold"] == pytest.approx(0.6)
    assert config["rpn_bbox_std_dev"] == list(STD)
    clone = ProposalLayer.from_config(config)
    assert clone.name == "ROI"
    np.testing.assert_allclose(clone(data).numpy(), two, atol=1e-6)

    rebuilt = keras.Model.from_config(model.get_config())
    np.testing.assert_allclose(rebuilt.predict(data, verbose=0), two, atol=1e-6)


@pytest.mark.parametrize("kwargs,field", [
    (dict(proposal_count=0), "proposal_count"),
    (dict(proposal_count=2.5), "proposal_count"),
    (dict(pre_nms_limit=-1), "pre_nms_limit"),
    (dict(nms_threshold=1.5), "nms_threshold"),
    (dict(rpn_bbox_std_dev=(0.1, 0.1, 0.2)), "rpn_bbox_std_dev"),
    (dict(rpn_bbox_std_dev=(0.1, 0.1, 0.2, 0.0)), "rpn_bbox_std_dev"),
])
def test_invalid_arguments(kwargs, field):
    args = dict(proposal_count=10, nms_threshold=0.7, pre_nms_limit=100, rpn_bbox_std_dev=STD)
    args.update(kwargs)
    with pytest.raises(ValueError, match=field):
        ProposalLayer(**args)


def test_wrong_input_count():
    with pytest.raises(ValueError, match="rpn_probs, rpn_bbox, anchors"):
        ProposalLayer(10, 0.7, 100, STD)([np.zeros((1, 4, 2), np.float32)])


def test_non_finite_rpn_outputs_give_finite_proposals():
    layer = ProposalLayer(proposal_count=4, nms_threshold=0.7, pre_nms_limit=10,
                          rpn_bbox_std_dev=(0.1, 0.1, 0.2, 0.2))
    anchors = np.array([[[0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.9, 0.9], [0.2, 0.6, 0.4, 0.8]]],
                       np.float32)
    probs = np.array([[[0.1, 0.9], [np.nan, np.nan], [0.3, 0.7]]], np.float32)
    deltas = np.zeros((1, 3, 4), np.float32)
    deltas[0, 2] = np.nan
    out = layer([tf.constant(probs), tf.constant(deltas), tf.constant(anchors)]).numpy()
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[0, 0], anchors[0, 0], atol=1e-6)


def test_cpp_and_padded_nms_variants_agree_and_zero_boxes_are_never_selected():
    """The per-image C++ kernel (default) and the batched padded op (xla_compatible, for
    Config.XLA) select the same proposals; all-zero boxes (a collapsed clip) are dropped by both."""
    rng = np.random.default_rng(7)
    probs, deltas, anchors = make_inputs(rng, batch=3, num_anchors=300)
    anchors[1, :40] = 0.0  # zero anchors and zero deltas decode to all-zero boxes
    deltas[1, :40] = 0.0
    probs[1, :40] = [0.0, 1.0]  # ... with the best scores
    outputs = []
    for xla in (False, True):
        layer = ProposalLayer(50, 0.6, 200, STD, xla_compatible=xla)
        assert layer.get_config()["xla_compatible"] is xla
        outputs.append(layer([probs, deltas, anchors]).numpy())
    np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-6)
    assert count_rows(outputs[0][1]) > 0
    for out in outputs:
        assert not np.any(np.all(out[1] == 0, axis=-1)[:count_rows(out[1])])
