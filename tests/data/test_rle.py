"""Tests for mrcnn/data/rle.py: DSB2018 run-length encoding and submission lines."""
import numpy as np
import pytest

from mrcnn.data.rle import SUBMISSION_HEADER, mask_to_rle, rle_decode, rle_encode


def test_hand_example_3x3_column_major():
    # Column-major 1-based indices of a 3x3 image:
    #   1 4 7
    #   2 5 8
    #   3 6 9
    mask = np.array([[0, 1, 0],
                     [0, 1, 1],
                     [1, 0, 1]], dtype=bool)
    # Foreground indices: 3 | 4 5 | 8 9 -> runs (3,1) (4,2) merge into (3,3), then (8,2).
    assert rle_encode(mask) == "3 3 8 2"
    np.testing.assert_array_equal(rle_decode("3 3 8 2", (3, 3)), mask)


def test_non_square_orientation():
    # 2 rows x 3 columns: column-major runs go down a column first.
    mask = np.array([[1, 1, 0],
                     [0, 1, 0]], dtype=bool)
    assert rle_encode(mask) == "1 1 3 2"
    decoded = rle_decode("1 1 3 2", (2, 3))
    assert decoded.shape == (2, 3)
    np.testing.assert_array_equal(decoded, mask)


def test_empty_and_full_masks():
    assert rle_encode(np.zeros((4, 5), dtype=bool)) == ""
    assert rle_encode(np.ones((4, 5), dtype=bool)) == "1 20"
    assert not rle_decode("", (4, 5)).any()
    assert rle_decode("  ", (4, 5)).shape == (4, 5)
    assert rle_decode("1 20", (4, 5)).all()


@pytest.mark.parametrize("seed", range(5))
def test_random_round_trip(seed):
    rng = np.random.default_rng(seed)
    height, width = rng.integers(1, 40, size=2)
    mask = rng.random((height, width)) < rng.uniform(0.05, 0.95)
    rle = rle_encode(mask)
    np.testing.assert_array_equal(rle_decode(rle, (height, width)), mask)
    values = [int(v) for v in rle.split()]
    starts, lengths = values[0::2], values[1::2]
    assert all(length >= 1 for length in lengths)
    # Runs are sorted and separated by at least one background pixel (maximal runs).
    ends = [s + n for s, n in zip(starts, lengths)]
    assert all(e < s for e, s in zip(ends[:-1], starts[1:]))
    assert sum(lengths) == mask.sum()


def test_encode_accepts_integer_masks_and_rejects_3d():
    assert rle_encode(np.array([[0, 2], [0, 0]])) == "3 1"
    with pytest.raises(ValueError, match="shape"):
        rle_encode(np.zeros((2, 2, 1), dtype=bool))


def test_decode_ignores_extra_shape_entries():
    assert rle_decode("2 1", (2, 2, 3)).tolist() == [[False, False], [True, False]]


@pytest.mark.parametrize("rle, message", [
    ("1 2 3", "odd number of tokens"),
    ("1 x", r"token 1 \('x'\)"),
    ("1.5 2", r"token 0 \('1.5'\)"),
    ("-1 2", r"token 0 \('-1'\)"),
    ("0 2", "1-based"),
    ("3 0", "length 0"),
    ("8 3", "ends at pixel 10, past the 9 pixels"),
])
def test_decode_rejects_malformed(rle, message):
    with pytest.raises(ValueError, match=message):
        rle_decode(rle, (3, 3))


def test_decode_rejects_bad_shape_and_type():
    with pytest.raises(ValueError, match="shape"):
        rle_decode("1 1", (0, 3))
    with pytest.raises(ValueError, match="str"):
        rle_decode([1, 1], (3, 3))


def test_mask_to_rle_removes_overlaps_by_score():
    masks = np.zeros((4, 4, 3), dtype=bool)
    masks[0:2, 0:2, 0] = True   # low score, overlaps mask 1 at (1, 1)
    masks[1:3, 1:3, 1] = True   # highest score
    masks[3, 3, 2] = True       # disjoint
    scores = np.array([0.5, 0.9, 0.7])
    lines = mask_to_rle("img", masks, scores).split("\n")
    assert [line.split(",")[0] for line in lines] == ["img"] * 3
    decoded = [rle_decode(line.split(",")[1], (4, 4)) for line in lines]
    # Highest score first, and it keeps all its pixels.
    np.testing.assert_array_equal(decoded[0], masks[..., 1])
    np.testing.assert_array_equal(decoded[1], masks[..., 2])
    expected_low = masks[..., 0] & ~masks[..., 1]
    np.testing.assert_array_equal(decoded[2], expected_low)
    assert decoded[2].sum() == 3
    # No pixel belongs to two instances.
    assert np.sum(decoded, axis=0).max() == 1


def test_mask_to_rle_skips_empty_and_fully_covered_masks():
    masks = np.zeros((3, 3, 3), dtype=bool)
    masks[:, :, 0] = True        # covers everything, best score
    masks[1, 1, 1] = True        # swallowed by mask 0
    scores = [0.9, 0.8, 0.7]     # mask 2 is empty
    assert mask_to_rle("a", masks, scores) == "a,1 9"


def test_mask_to_rle_no_instances_gives_id_line():
    assert mask_to_rle("abc", np.zeros((5, 6, 0), dtype=bool), np.zeros([0])) == "abc,"
    assert mask_to_rle("abc", np.zeros((5, 6, 2), dtype=bool), [0.3, 0.2]) == "abc,"


def test_mask_to_rle_ties_keep_index_order():
    masks = np.ones((2, 2, 2), dtype=bool)
    lines = mask_to_rle("t", masks, [0.5, 0.5])
    assert lines == "t,1 4"


def test_mask_to_rle_errors():
    with pytest.raises(ValueError, match=r"\[H, W, N\]"):
        mask_to_rle("x", np.zeros((3, 3), dtype=bool), [])
    with pytest.raises(ValueError, match="scores has 1 entries for 2 masks"):
        mask_to_rle("x", np.zeros((3, 3, 2), dtype=bool), [0.1])
    with pytest.raises(ValueError, match="image_id"):
        mask_to_rle("a,b", np.zeros((3, 3, 0), dtype=bool), [])


def test_submission_header():
    assert SUBMISSION_HEADER == "ImageId,EncodedPixels"
