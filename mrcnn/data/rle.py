"""Run-length encoding of instance masks in the Kaggle Data Science Bowl 2018 format.

The format (used by the classic ``nucleus`` sample for its ``submit.csv``):

* A mask ``[H, W]`` is flattened in **column-major** (Fortran) order: pixel ``(y, x)`` has the
  1-based index ``1 + y + x * H``, i.e. the pixels run top to bottom, then left to right.
* The encoding is the space-separated list ``"start length start length ..."`` of the runs of
  foreground pixels, with 1-based ``start`` and ``length >= 1``, in increasing order. An empty mask
  encodes to ``""``.
* A submission line is ``"image_id,rle"``; a CSV file starts with the header
  ``"ImageId,EncodedPixels"`` (:data:`SUBMISSION_HEADER`). Each pixel may belong to at most one
  instance of an image, so :func:`mask_to_rle` removes overlaps first.

This is not the COCO RLE of pycocotools (which stores alternating background/foreground counts and
is compressed); use ``pycocotools.mask`` for that.
"""
import logging

import numpy as np

__all__ = ["SUBMISSION_HEADER", "rle_encode", "rle_decode", "mask_to_rle"]

logger = logging.getLogger(__name__)

#: First line of a DSB2018 submission CSV.
SUBMISSION_HEADER = "ImageId,EncodedPixels"


def rle_encode(mask):
    """Encode one mask as a DSB2018 run-length string.

    Args:
        mask: ``[H, W]`` bool (or 0/1 integer) array; pixels, no padding.

    Returns:
        str ``"start length start length ..."``: 1-based start indices in column-major order and
        run lengths, runs in increasing order; ``""`` for an empty mask.

    Example: ``[[0, 1], [1, 1]]`` flattens column-major to ``0 1 1 1`` and encodes to ``"2 3"``.

    Raises:
        ValueError: ``mask`` is not two-dimensional.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"rle_encode: mask must be [H, W], got shape {mask.shape}")
    flat = mask.astype(bool).ravel(order="F")
    # Pad with background on both ends so every run has a rising and a falling edge.
    edges = np.flatnonzero(np.diff(np.concatenate([[False], flat, [False]]).astype(np.int8)))
    starts = edges[0::2]
    lengths = edges[1::2] - starts
    runs = np.stack([starts + 1, lengths], axis=1).ravel()
    return " ".join(str(int(v)) for v in runs)


def _parse_shape(shape):
    try:
        height, width = (int(shape[0]), int(shape[1]))
    except (TypeError, ValueError, IndexError):
        raise ValueError(f"rle_decode: shape must be (height, width), got {shape!r}") from None
    if height <= 0 or width <= 0:
        raise ValueError(f"rle_decode: shape must have positive sides, got {shape!r}")
    return height, width


def rle_decode(rle, shape):
    """Decode a DSB2018 run-length string into a mask.

    Args:
        rle: str ``"start length ..."`` (1-based starts, column-major order, whitespace separated);
            ``""`` or only whitespace gives an empty mask. Runs may come in any order; overlapping
            runs are merged.
        shape: ``(H, W)`` (extra trailing entries such as a channel count are ignored).

    Returns:
        ``[H, W]`` bool mask.

    Raises:
        ValueError: ``rle`` is not a str, a token is not a non-negative integer, the token count
            is odd, a start is < 1, a length is < 1, or a run ends past ``H * W``; the message
            quotes the offending token or run.
    """
    if not isinstance(rle, str):
        raise ValueError(f"rle_decode: rle must be a str, got {type(rle).__name__}")
    height, width = _parse_shape(shape)
    total = height * width
    tokens = rle.split()
    if len(tokens) % 2:
        raise ValueError(
            f"rle_decode: rle has an odd number of tokens ({len(tokens)}); it must be pairs of "
            f"'start length', got {_preview(rle)!r}")
    values = []
    for position, token in enumerate(tokens):
        if not (token.isascii() and token.isdigit()):
            raise ValueError(
                f"rle_decode: token {position} ({token!r}) is not a non-negative integer in "
                f"{_preview(rle)!r}")
        values.append(int(token))
    flat = np.zeros(total, dtype=bool)
    for pair in range(len(values) // 2):
        start, length = values[2 * pair], values[2 * pair + 1]
        if start < 1:
            raise ValueError(f"rle_decode: run {pair} starts at {start}; starts are 1-based")
        if length < 1:
            raise ValueError(f"rle_decode: run {pair} (start {start}) has length {length}; "
                             "lengths must be >= 1")
        if start - 1 + length > total:
            raise ValueError(
                f"rle_decode: run {pair} (start {start}, length {length}) ends at pixel "
                f"{start - 1 + length}, past the {total} pixels of shape ({height}, {width})")
        flat[start - 1:start - 1 + length] = True
    return flat.reshape((height, width), order="F")


def _preview(text, limit=60):
    return text if len(text) <= limit else text[:limit] + "..."


def mask_to_rle(image_id, masks, scores):
    """Encode the instances of one image as DSB2018 submission lines.

    Overlaps are removed first, as the competition requires: instances are visited in order of
    decreasing score (ties: lower index first) and each keeps only the pixels that no
    higher-scoring instance took. Instances left empty (or empty from the start) are skipped.

    Args:
        image_id: the image's id as written in the CSV (str; must not contain ',' or newlines).
        masks: ``[H, W, N]`` bool instance masks (``MaskRCNN.detect``'s ``"masks"``), pixels of
            the original image, no padding.
        scores: ``[N]`` scores of the instances.

    Returns:
        str: one ``"image_id,rle"`` line per kept instance, in order of decreasing score, joined
        with ``"\\n"`` (no trailing newline). When no instance is left the single line
        ``"image_id,"`` is returned, as the classic sample did, so that every image appears in the
        submission.

    Raises:
        ValueError: ``masks`` is not 3-D, ``scores`` does not have N entries, or ``image_id``
            contains a comma or a line break.
    """
    image_id = str(image_id)
    if "," in image_id or "\n" in image_id or "\r" in image_id:
        raise ValueError(f"mask_to_rle: image_id {image_id!r} must not contain ',' or line breaks")
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"mask_to_rle: masks must be [H, W, N], got shape {masks.shape}")
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if scores.shape[0] != masks.shape[-1]:
        raise ValueError(
            f"mask_to_rle: scores has {scores.shape[0]} entries for {masks.shape[-1]} masks")
    masks = masks.astype(bool)
    # Stable sort on the negated score: ties keep index order.
    order = np.argsort(-scores, kind="stable")
    taken = np.zeros(masks.shape[:2], dtype=bool)
    lines = []
    for index in order:
        own = masks[:, :, index] & ~taken
        if not own.any():
            continue
        taken |= own
        lines.append(f"{image_id},{rle_encode(own)}")
    if not lines:
        return f"{image_id},"
    return "\n".join(lines)
