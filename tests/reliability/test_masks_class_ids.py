"""Reliability catalogue, group "masks and class ids": what load_mask returns, checked as the
pipeline loads it (``load_image_gt``), before anything reaches the graph. Errors name the image
(internal id, source id and path). No model is built."""
import numpy as np
import pytest

from mrcnn.data.pipeline import build_training_inputs, load_image_gt, pyramid_anchors_for_config
from tests.reliability.tiny import SquaresDataset, TinyConfig

CONFIG = TinyConfig()


def _hooked(mask_hook):
    return SquaresDataset(count=2, mask_hook=lambda i, m, c: mask_hook(m, c) if i == 1 else (m, c))


BAD = [
    # (case, hook, text in the message)
    ("class-id-0", lambda m, c: (m, np.array([0, 2])), "class id 0 (the background)"),
    ("class-id-eq-num-classes", lambda m, c: (m, np.array([1, 3])), "NUM_CLASSES is 3"),
    ("class-id-7", lambda m, c: (m, np.array([7, 2])), "[7]"),  # was a GatherV2 graph error
    ("crowd-id-out-of-range", lambda m, c: (m, np.array([-5, 2])), "[-5]"),
    ("non-integer-ids", lambda m, c: (m, np.array([1.5, 2.0])), "non-integer"),
    ("mask-height", lambda m, c: (m[:-1], c), "masks must have the image's height"),
    ("mask-width", lambda m, c: (m[:, :-3], c), "masks must have the image's height"),
    ("mask-2d", lambda m, c: (m[..., 0], c[:1]), "expected [H, W, N]"),
    ("mask-4d", lambda m, c: (m[..., None], c), "expected [H, W, N]"),
    ("count-mismatch", lambda m, c: (m, np.array([1, 2, 1])), "2 masks but 3 class ids"),
    ("transposed-masks", lambda m, c: (np.transpose(m, (2, 0, 1)), c), "masks"),
]


@pytest.mark.parametrize("case,hook,text", BAD, ids=[b[0] for b in BAD])
def test_bad_ground_truth_names_the_image(case, hook, text):
    dataset = _hooked(hook)
    with pytest.raises(ValueError) as err:
        load_image_gt(dataset, CONFIG, 1)
    message = str(err.value)
    assert "image 1" in message and "squares/1.png" in message
    assert text in message


def test_dataset_class_count_differs_from_config():
    class FourClasses(TinyConfig):
        NUM_CLASSES = 4
    with pytest.raises(ValueError, match="NUM_CLASSES is 4"):
        load_image_gt(SquaresDataset(count=1), FourClasses(), 0)


def test_bad_class_id_also_caught_where_training_inputs_are_built():
    dataset = _hooked(lambda m, c: (m, np.array([7, 2])))
    anchors, _ = pyramid_anchors_for_config(CONFIG)
    with pytest.raises(ValueError, match="image 1.*NUM_CLASSES is 3"):
        build_training_inputs(dataset, CONFIG, 1, anchors, np.random.default_rng(0))


GOOD = [
    ("uint8-masks", lambda m, c: (m.astype(np.uint8), c)),
    ("float-masks", lambda m, c: (m.astype(np.float32), c)),
    ("list-ids", lambda m, c: (m, [int(v) for v in c])),
    ("float-ids", lambda m, c: (m, c.astype(np.float64))),
    ("int64-ids", lambda m, c: (m, c.astype(np.int64))),
    ("column-ids", lambda m, c: (m, c.reshape(-1, 1))),
]


@pytest.mark.parametrize("case,hook", GOOD, ids=[g[0] for g in GOOD])
def test_convertible_ground_truth_gives_the_same_targets(case, hook):
    reference = load_image_gt(SquaresDataset(count=2), CONFIG, 1, rng=np.random.default_rng(0))
    got = load_image_gt(_hooked(hook), CONFIG, 1, rng=np.random.default_rng(0))
    for a, b in zip(reference, got):
        np.testing.assert_array_equal(a, b)


def test_crowd_regions_keep_their_negative_id():
    _, _, class_ids, _, _ = load_image_gt(_hooked(lambda m, c: (m, np.array([-1, 2]))), CONFIG, 1)
    assert class_ids.tolist() == [-1, 2]


def test_instance_whose_mask_is_empty_is_dropped():
    def empty_first(m, c):
        m = m.copy()
        m[..., 0] = False
        return m, c
    _, _, class_ids, boxes, _ = load_image_gt(_hooked(empty_first), CONFIG, 1)
    assert class_ids.tolist() == [2] and boxes.shape == (1, 4)


def test_image_without_instances_is_usable():
    dataset = _hooked(lambda m, c: (np.zeros((0, 0, 0), bool), np.zeros([0], np.int32)))
    _, _, class_ids, boxes, masks = load_image_gt(dataset, CONFIG, 1)
    assert class_ids.shape == (0,) and boxes.shape == (0, 4)
