"""Instance-mask operations in NumPy (+ OpenCV for resizing); no TensorFlow.

Layouts follow the classic ``mrcnn.utils``: instance masks are ``[H, W, N]`` bool, mini-masks
``[mh, mw, N]`` bool, soft masks from the mask head ``[mh, mw]`` / ``[N, mh, mw]`` float in
[0, 1]. Boxes are pixel ``(y1, x1, y2, x2)`` with ``y2``/``x2`` exclusive (one past the last
pixel), as :func:`extract_bboxes` returns them.

* :func:`extract_bboxes` - tight boxes around masks.
* :func:`compute_overlaps_masks` - mask IoU matrix.
* :func:`minimize_mask` / :func:`expand_mask` - the mini-mask round trip used for training targets.
* :func:`unmold_mask` / :func:`paste_masks` - paste soft masks predicted for boxes into full-size
  images (one mask / a batch), with the classic resize-and-threshold semantics.
"""
import logging

import cv2
import numpy as np

from mrcnn.ops.resize import resize

__all__ = ["extract_bboxes", "compute_overlaps_masks", "minimize_mask", "expand_mask",
           "unmold_mask", "paste_masks"]

logger = logging.getLogger(__name__)


def _check_masks(name, masks, ndim=3):
    masks = np.asarray(masks)
    if masks.ndim != ndim:
        layout = "[H, W, N]" if ndim == 3 else "[H, W]"
        raise ValueError(f"{name} must be {layout}, got shape {masks.shape}")
    return masks


def _check_boxes(name, boxes, n):
    """Integer ``[n, >=4]`` boxes; floats are rounded to the nearest pixel."""
    boxes = np.asarray(boxes)
    if boxes.ndim != 2 or boxes.shape[1] < 4 or boxes.shape[0] != n:
        raise ValueError(f"{name} must be [{n}, 4] (one box per mask), got shape {boxes.shape}")
    if boxes.dtype.kind == "f":
        boxes = np.rint(boxes)
    return boxes[:, :4].astype(np.int64)


def extract_bboxes(mask):
    """Tight bounding boxes of instance masks.

    Args:
        mask: [H, W, N] bool (or 0/1) instance masks.
    Returns:
        [N, (y1, x1, y2, x2)] int32 pixel boxes, ``y2``/``x2`` exclusive (last index + 1). An
        empty mask gives (0, 0, 0, 0).
    """
    mask = _check_masks("extract_bboxes: mask", mask).astype(bool, copy=False)
    h, w, n = mask.shape
    if h == 0 or w == 0:
        return np.zeros((n, 4), dtype=np.int32)
    rows = mask.any(axis=1)  # [H, N]
    cols = mask.any(axis=0)  # [W, N]
    present = rows.any(axis=0)
    y1 = np.argmax(rows, axis=0)
    y2 = h - np.argmax(rows[::-1], axis=0)
    x1 = np.argmax(cols, axis=0)
    x2 = w - np.argmax(cols[::-1], axis=0)
    boxes = np.stack([y1, x1, y2, x2], axis=1).astype(np.int32).reshape(n, 4)
    boxes[~present] = 0
    return boxes


def compute_overlaps_masks(masks1, masks2):
    """IoU between every pair of two sets of masks.

    Args:
        masks1: [H, W, N1] masks (bool, or float where > 0.5 counts as inside).
        masks2: [H, W, N2] masks of the same H, W.
    Returns:
        [N1, N2] float32 IoU. A pair whose union is empty gets 0; no masks on either side gives
        zeros of shape (N1, N2).
    """
    masks1 = _check_masks("compute_overlaps_masks: masks1", masks1)
    masks2 = _check_masks("compute_overlaps_masks: masks2", masks2)
    n1, n2 = masks1.shape[-1], masks2.shape[-1]
    if masks1.shape[:2] != masks2.shape[:2]:
        raise ValueError(f"compute_overlaps_masks: masks1 is {masks1.shape[:2]} but masks2 is "
                         f"{masks2.shape[:2]}; both must share H, W")
    if n1 == 0 or n2 == 0:
        return np.zeros((n1, n2), dtype=np.float32)
    # float32 sums of 0/1 are exact up to 2**24 pixels; larger images need float64.
    acc = np.float32 if masks1.shape[0] * masks1.shape[1] < 2 ** 24 else np.float64
    m1 = (masks1 > 0.5).reshape(-1, n1).astype(acc)
    m2 = (masks2 > 0.5).reshape(-1, n2).astype(acc)
    area1 = m1.sum(axis=0, dtype=np.float64)
    area2 = m2.sum(axis=0, dtype=np.float64)
    inter = (m1.T @ m2).astype(np.float64)
    union = area1[:, None] + area2[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return iou.astype(np.float32)


def _resize_soft(mask, out_h, out_w):
    """Resize a 2-D float32 mask with cv2: area averaging when shrinking in both axes (the
    fraction of each target pixel that is inside, so thin parts survive), bilinear otherwise.
    Edges are replicated: boxes are tight around the mask, so the border pixels belong to it."""
    src_h, src_w = mask.shape
    interp = cv2.INTER_AREA if out_h <= src_h and out_w <= src_w else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(mask, dtype=np.float32), (out_w, out_h),
                      interpolation=interp)


def minimize_mask(bbox, mask, mini_shape):
    """Crop each mask to its box and resize it to ``mini_shape`` (saves memory in training).

    Args:
        bbox: [N, (y1, x1, y2, x2)] int pixel boxes, usually from :func:`extract_bboxes`; must
            lie inside the image and be non-empty.
        mask: [H, W, N] bool instance masks.
        mini_shape: (mh, mw), e.g. Config.MINI_MASK_SHAPE.
    Returns:
        [mh, mw, N] bool mini-masks (soft resize, then ``>= 0.5``).
    Raises:
        ValueError: a box of zero area or outside the image (names the instance index).
    """
    mask = _check_masks("minimize_mask: mask", mask)
    h, w, n = mask.shape
    bbox = _check_boxes("minimize_mask: bbox", bbox, n)
    mh, mw = (int(s) for s in tuple(mini_shape)[:2])
    mini = np.zeros((mh, mw, n), dtype=bool)
    for i in range(n):
        y1, x1, y2, x2 = bbox[i]
        if y2 <= y1 or x2 <= x1:
            raise ValueError(f"minimize_mask: invalid bounding box with area of zero for "
                             f"instance {i}: {bbox[i].tolist()}")
        if y1 < 0 or x1 < 0 or y2 > h or x2 > w:
            raise ValueError(f"minimize_mask: bounding box of instance {i} {bbox[i].tolist()} "
                             f"leaves the {h}x{w} mask")
        crop = mask[y1:y2, x1:x2, i].astype(np.float32)
        mini[:, :, i] = _resize_soft(crop, mh, mw) >= 0.5
    return mini


def expand_mask(bbox, mini_mask, image_shape):
    """Inverse of :func:`minimize_mask`: resize each mini-mask to its box and paste it.

    Args:
        bbox: [N, (y1, x1, y2, x2)] int pixel boxes the mini-masks were made from. Empty boxes
            (zero padding) leave their mask empty; parts outside the image are dropped.
        mini_mask: [mh, mw, N] bool mini-masks.
        image_shape: (H, W[, C]) of the full image.
    Returns:
        [H, W, N] bool masks.
    """
    mini_mask = _check_masks("expand_mask: mini_mask", mini_mask)
    n = mini_mask.shape[-1]
    bbox = _check_boxes("expand_mask: bbox", bbox, n)
    h, w = (int(s) for s in tuple(image_shape)[:2])
    out = np.zeros((h, w, n), dtype=bool)
    for i in range(n):
        y1, x1, y2, x2 = bbox[i]
        if y2 <= y1 or x2 <= x1:
            continue
        soft = _resize_soft(mini_mask[:, :, i].astype(np.float32), y2 - y1, x2 - x1)
        _paste(out[:, :, i], soft >= 0.5, (y1, x1, y2, x2))
    return out


def _paste(canvas, box_mask, box):
    """Copy a ``[y2 - y1, x2 - x1]`` mask into ``canvas`` at ``box``, dropping what lies outside."""
    h, w = canvas.shape
    y1, x1, y2, x2 = box
    cy1, cx1, cy2, cx2 = max(y1, 0), max(x1, 0), min(y2, h), min(x2, w)
    if cy2 <= cy1 or cx2 <= cx1:
        return
    canvas[cy1:cy2, cx1:cx2] = box_mask[cy1 - y1:cy2 - y1, cx1 - x1:cx2 - x1]


def _box_soft_mask(mask, box_h, box_w):
    """Classic resize of a head mask to its box: bilinear, pixel-centre aligned, with the
    half-pixel border blended towards 0 (scikit-image ``mode="constant"``, as the classic
    ``utils.unmold_mask``), so border pixels need a confident prediction to survive."""
    return resize(np.asarray(mask, dtype=np.float32), (box_h, box_w), order=1,
                  mode="constant", cval=0, preserve_range=True)


def unmold_mask(mask, bbox, image_shape):
    """Paste one soft mask predicted for a box into a full-size image mask (classic semantics).

    Args:
        mask: [mh, mw] float soft mask from the mask head (sigmoid, in [0, 1]).
        bbox: (y1, x1, y2, x2) int pixel box in the image (``y2``/``x2`` exclusive). Parts
            outside the image are dropped; an empty box gives an empty mask.
        image_shape: (H, W[, C]).
    Returns:
        [H, W] bool: the mask resized to the box and thresholded at ``>= 0.5``.
    """
    mask = _check_masks("unmold_mask: mask", mask, ndim=2)
    box = np.asarray(bbox).reshape(-1)
    if box.shape[0] < 4:
        raise ValueError(f"unmold_mask: bbox must be (y1, x1, y2, x2), got {bbox!r}")
    return paste_masks(mask[None], box[None, :4], image_shape)[:, :, 0]


def paste_masks(masks, boxes, image_shape, threshold=0.5):
    """Paste a batch of soft masks into full-size image masks (fast :func:`unmold_mask`).

    Each mask is resized to its box with cv2 bilinear (scikit-image-compatible border),
    thresholded and written into one preallocated array.

    Args:
        masks: [N, mh, mw] float soft masks in [0, 1].
        boxes: [N, (y1, x1, y2, x2)] int pixel boxes of the image (``y2``/``x2`` exclusive;
            float boxes are rounded). Boxes partly outside the image are clipped; empty boxes
            (including zero padding) give empty masks.
        image_shape: (H, W[, C]) of the image.
        threshold: a pixel is inside where the resized soft mask is ``>= threshold``.
    Returns:
        [H, W, N] bool.
    """
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"paste_masks: masks must be [N, mh, mw], got shape {masks.shape}")
    n = masks.shape[0]
    boxes = np.asarray(boxes)
    if n == 0 and boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    boxes = _check_boxes("paste_masks: boxes", boxes, n)
    if len(tuple(image_shape)) < 2:
        raise ValueError(f"paste_masks: image_shape must be (H, W[, C]), got {image_shape!r}")
    h, w = (int(s) for s in tuple(image_shape)[:2])
    out = np.zeros((h, w, n), dtype=bool)
    for i in range(n):
        y1, x1, y2, x2 = (int(v) for v in boxes[i])
        # Skip empty boxes and boxes wholly outside the image before paying for a resize.
        if y2 <= y1 or x2 <= x1 or y2 <= 0 or x2 <= 0 or y1 >= h or x1 >= w:
            continue
        soft = _box_soft_mask(masks[i], y2 - y1, x2 - x1)
        _paste(out[:, :, i], soft >= threshold, (y1, x1, y2, x2))
    return out
