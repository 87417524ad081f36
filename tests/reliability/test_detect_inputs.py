"""Reliability catalogue, group "detect() inputs": the images argument of MaskRCNN.detect.

A wrong argument is refused naming it; an image of another dtype or layout is converted as
load_image converts files, and the detections equal those of its uint8 equivalent. One shared
tiny inference model (random weights, DETECTION_MIN_CONFIDENCE 0 so that detections exist).
"""
import numpy as np
import pytest

from mrcnn.data.validation import InputWarning

RNG = np.random.default_rng(5)
UINT8 = RNG.integers(0, 256, (40, 52, 3), dtype=np.uint8)
GRAY = UINT8[..., 0]

BAD = [
    ("one-image-not-a-list", lambda: UINT8, TypeError, "pass a list: detect([image])"),
    ("one-gray-image", lambda: GRAY, TypeError, "pass a list"),
    ("path-string", lambda: "photo.jpg", TypeError, "pass a list"),
    ("none", lambda: None, TypeError, "pass a list"),
    ("dict", lambda: {"image": UINT8}, TypeError, "pass a list"),
    ("5d-array", lambda: UINT8[None, None], TypeError, "shape"),
    ("list-with-none", lambda: [None], TypeError, "images[0]"),
    ("list-with-path", lambda: [UINT8, "b.jpg"], TypeError, "images[1]"),
    ("object-array", lambda: [np.array([[object()] * 3] * 3)], TypeError, "images[0]"),
    ("complex", lambda: [UINT8.astype(np.complex64)], TypeError, "complex"),
    ("1x1", lambda: [UINT8[:1, :1]], ValueError, "at least 2x2"),
    ("1-row", lambda: [UINT8[:1]], ValueError, "at least 2x2"),
    ("1-column", lambda: [UINT8[:, :1]], ValueError, "at least 2x2"),
    ("empty", lambda: [UINT8[:0]], ValueError, "images[0]"),
    ("flat-vector", lambda: [UINT8.ravel()], ValueError, "shape"),
    ("6-channels", lambda: [np.zeros((8, 8, 6), np.uint8)], ValueError, "C in 1..4"),
    ("channels-first", lambda: [np.transpose(UINT8, (2, 0, 1))], ValueError, "images[0]"),
]


@pytest.mark.parametrize("case,make,error,text", BAD, ids=[b[0] for b in BAD])
def test_bad_detect_argument_is_refused_naming_it(tiny_inference, case, make, error, text):
    with pytest.raises(error) as err:
        tiny_inference.detect(make())
    assert text in str(err.value)


CONVERTED = [
    ("float-0-1", lambda: UINT8 / 255.0),              # no detections, no message before
    ("float32-0-1", lambda: (UINT8 / 255.0).astype(np.float32)),
    ("float-0-255", lambda: UINT8.astype(np.float32)),
    ("uint16-full-range", lambda: UINT8.astype(np.uint16) * 257),
    ("int32-8bit", lambda: UINT8.astype(np.int32)),
    ("bool", lambda: UINT8 > 127),
    ("gray-2d", lambda: GRAY),
    ("gray-1-channel", lambda: GRAY[..., None]),
    ("rgba", lambda: np.concatenate([UINT8, np.full(UINT8.shape[:2] + (1,), 255, np.uint8)], -1)),
    ("non-contiguous", lambda: np.asfortranarray(UINT8)),
]


def _uint8_equivalent(case, array):
    if case == "bool":
        return array.astype(np.uint8) * 255
    if case.startswith("gray"):
        return np.repeat(GRAY[..., None], 3, -1)
    return UINT8


def _same(a, b):
    assert a["class_ids"].tolist() == b["class_ids"].tolist()
    np.testing.assert_array_equal(a["rois"], b["rois"])
    np.testing.assert_allclose(a["scores"], b["scores"], atol=1e-5)
    np.testing.assert_array_equal(a["masks"], b["masks"])


@pytest.mark.parametrize("case,make", CONVERTED, ids=[c[0] for c in CONVERTED])
def test_awkward_image_gives_the_detections_of_its_uint8_equivalent(tiny_inference, case, make):
    array = make()
    got = tiny_inference.detect([array])[0]
    want = tiny_inference.detect([_uint8_equivalent(case, array)])[0]
    if case != "bool":  # a 0/255 image may give no detections with random weights
        assert want["class_ids"].size > 0  # the comparison is not vacuous
    _same(got, want)
    assert got["masks"].shape[:2] == UINT8.shape[:2]


def test_float_image_with_nan_warns_and_zeroes_those_pixels(tiny_inference):
    array = UINT8 / 255.0
    array[3, 4, :] = np.nan
    with pytest.warns(InputWarning, match="NaN"):
        got = tiny_inference.detect([array])[0]
    expected = UINT8.copy()
    expected[3, 4, :] = 0
    _same(got, tiny_inference.detect([expected])[0])


def test_tuple_and_4d_array_count_as_lists(tiny_inference):
    want = tiny_inference.detect([UINT8])[0]
    _same(tiny_inference.detect((UINT8,))[0], want)
    _same(tiny_inference.detect(UINT8[None])[0], want)


def test_empty_list_gives_no_results(tiny_inference):
    assert tiny_inference.detect([]) == []


def test_smallest_image_2x2_is_accepted(tiny_inference):
    result = tiny_inference.detect([UINT8[:2, :2]])[0]
    assert result["masks"].shape[:2] == (2, 2)


def test_detect_on_a_training_model_says_which_mode(tiny_training):
    with pytest.raises(RuntimeError, match="mode='inference'"):
        tiny_training.detect([UINT8])
