"""Image and mask resizing for Mask R-CNN inputs (NumPy + OpenCV).

Three public functions, with the classic ``mrcnn.utils`` names and semantics:

* :func:`resize` - a drop-in for ``skimage.transform.resize`` (the classic ``utils.resize``
  wrapper), defined in :mod:`mrcnn.ops.resize` (ops must not import data) and re-exported
  here. Bilinear (``order=1``) and nearest (``order=0``) resizes run through OpenCV / NumPy
  and reproduce scikit-image's pixel mapping, including the dark half-pixel border that
  ``mode="constant"`` gives when enlarging. Everything else falls back to scikit-image.
* :func:`resize_image` - scale and pad (or crop) an ``[H, W, C]`` image for the network and
  report the ``window`` that holds the real image, the ``scale``, the ``padding`` and the
  ``crop``. Modes ``"none"``, ``"square"``, ``"pad64"`` and ``"crop"`` as in the classic code.
* :func:`resize_mask` - apply the same scale and padding/crop to ``[H, W, N]`` instance masks
  with nearest-neighbour sampling that uses the image resize's pixel-centre mapping.

Coordinates are pixels; windows are ``(y1, x1, y2, x2)`` with ``y2``/``x2`` exclusive.
"""
import logging

import numpy as np

from mrcnn.ops.resize import nearest_index, resize

__all__ = ["resize", "resize_image", "resize_mask"]

logger = logging.getLogger(__name__)

RESIZE_MODES = ("none", "square", "pad64", "crop")


def _random_offset(rng, high):
    """Integer in ``[0, high]`` from ``rng`` (Generator, RandomState or None = ``np.random``)."""
    if rng is None:
        return int(np.random.randint(0, high + 1))
    if hasattr(rng, "integers"):
        return int(rng.integers(0, high + 1))
    return int(rng.randint(0, high + 1))


def _pad_to_multiple(size, multiple):
    """(before, after) padding that brings ``size`` up to a multiple of ``multiple``, centred."""
    total = (-size) % multiple
    return total // 2, total - total // 2


def resize_image(image, min_dim=None, max_dim=None, min_scale=None, mode="square", rng=None):
    """Resize an image keeping its aspect ratio, then pad or crop it (classic semantics).

    Scale: ``scale = max(1, min_dim / min(H, W))`` (never shrinks for ``min_dim``), raised to
    ``min_scale`` if given; in "square" mode lowered so that ``round(max(H, W) * scale) <=
    max_dim``. The image is resized to ``(round(H * scale), round(W * scale))`` bilinearly.

    Modes:
        "none": returned unchanged; window is the full image, scale 1, no padding.
        "square": resize, then zero-pad to ``[max_dim, max_dim]``, centred with
            ``top = (max_dim - h) // 2`` and ``left = (max_dim - w) // 2``.
        "pad64": resize (``min_dim``/``min_scale`` rule, ``max_dim`` ignored), then zero-pad each
            side, centred, to a multiple of 64. ``min_dim`` must be a multiple of 64.
        "crop": resize (``min_dim``/``min_scale`` rule), then take a random
            ``[min_dim, min_dim]`` crop. The offset comes from ``rng`` (``np.random.Generator`` or
            ``RandomState``) or, when ``rng`` is None, the global ``np.random`` state (the classic
            code used Python's ``random`` module).

    Args:
        image: [H, W, C] array, any dtype and channel count (grayscale/RGBA conversion is the
            Dataset's job).
        min_dim, max_dim, min_scale: as in Config.IMAGE_MIN_DIM / IMAGE_MAX_DIM / IMAGE_MIN_SCALE.
        mode: one of "none", "square", "pad64", "crop".
        rng: optional random generator for "crop".
    Returns:
        image: [h', w', C] with the input dtype.
        window: (y1, x1, y2, x2) ints, pixels of the returned image holding the real image
            (``y2``/``x2`` exclusive).
        scale: float, the factor applied to the original image.
        padding: [(top, bottom), (left, right), (0, 0)] zero padding added per axis.
        crop: (y, x, h, w) of the crop in the scaled image ("crop" mode), else None.
    Raises:
        ValueError: unknown mode, missing/invalid min_dim or max_dim, image not [H, W, C].
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize_image: mode={mode!r} is not supported; "
                         f"use one of {', '.join(repr(m) for m in RESIZE_MODES)}")
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"resize_image: image must be [H, W, C] with H, W > 0, got shape "
                         f"{image.shape}; convert grayscale/RGBA images first "
                         "(Dataset.load_image does)")
    image_dtype = image.dtype
    h, w = image.shape[:2]
    window = (0, 0, h, w)
    scale = 1.0
    padding = [(0, 0), (0, 0), (0, 0)]
    crop = None
    if mode == "none":
        return image, window, scale, padding, crop

    if mode == "square" and not max_dim:
        raise ValueError(f"resize_image: mode='square' needs max_dim > 0, got max_dim={max_dim!r}")
    if mode == "pad64" and (not min_dim or min_dim % 64 != 0):
        raise ValueError(f"resize_image: mode='pad64' needs min_dim to be a multiple of 64, "
                         f"got min_dim={min_dim!r}")
    if mode == "crop" and not min_dim:
        raise ValueError(f"resize_image: mode='crop' needs min_dim > 0, got min_dim={min_dim!r}")

    if min_dim:
        scale = max(1.0, min_dim / min(h, w))
    if min_scale and scale < min_scale:
        scale = float(min_scale)
    if max_dim and mode == "square":
        image_max = max(h, w)
        if round(image_max * scale) > max_dim:
            scale = max_dim / image_max
    scale = float(scale)

    if scale != 1.0:
        image = resize(image, (round(h * scale), round(w * scale)), order=1,
                       mode="constant", preserve_range=True)
    h, w = image.shape[:2]

    if mode == "square":
        top = (max_dim - h) // 2
        left = (max_dim - w) // 2
        padding = [(top, max_dim - h - top), (left, max_dim - w - left), (0, 0)]
        image = np.pad(image, padding, mode="constant", constant_values=0)
        window = (top, left, top + h, left + w)
    elif mode == "pad64":
        top, bottom = _pad_to_multiple(h, 64)
        left, right = _pad_to_multiple(w, 64)
        padding = [(top, bottom), (left, right), (0, 0)]
        image = np.pad(image, padding, mode="constant", constant_values=0)
        window = (top, left, top + h, left + w)
    else:  # crop
        if h < min_dim or w < min_dim:
            raise ValueError(f"resize_image: scaled image {h}x{w} is smaller than the crop "
                             f"min_dim={min_dim}")
        y = _random_offset(rng, h - min_dim)
        x = _random_offset(rng, w - min_dim)
        crop = (y, x, int(min_dim), int(min_dim))
        image = image[y:y + min_dim, x:x + min_dim]
        window = (0, 0, int(min_dim), int(min_dim))
    return image.astype(image_dtype, copy=False), window, scale, padding, crop


def resize_mask(mask, scale, padding, crop=None):
    """Resize instance masks with the scale and padding/crop that :func:`resize_image` returned.

    Nearest-neighbour with the same pixel-centre mapping as the image resize, so mask and image
    stay aligned; the output is ``(round(H * scale), round(W * scale))`` like the image (the
    classic ``scipy.ndimage.zoom(order=0)`` aligned corners instead, up to half a pixel off).

    Args:
        mask: [H, W, N] instance masks (bool or 0/1 numbers).
        scale: the factor from resize_image.
        padding: [(top, bottom), (left, right), ...] from resize_image; ignored when ``crop``.
        crop: (y, x, h, w) from resize_image's "crop" mode, or None.
    Returns:
        [h', w', N] bool masks matching the resized image.
    """
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError(f"resize_mask: mask must be [H, W, N], got shape {mask.shape}")
    if not scale or scale <= 0:
        raise ValueError(f"resize_mask: scale must be > 0, got {scale!r}")
    h, w = mask.shape[:2]
    out_h, out_w = round(h * scale), round(w * scale)
    mask = mask.astype(bool, copy=False)
    if (out_h, out_w) != (h, w):
        mask = mask[nearest_index(h, out_h)][:, nearest_index(w, out_w)]
    if crop is not None:
        y, x, ch, cw = crop
        return mask[y:y + ch, x:x + cw]
    pad = [tuple(padding[0]), tuple(padding[1]), (0, 0)]
    if any(p != (0, 0) for p in pad):
        mask = np.pad(mask, pad, mode="constant", constant_values=False)
    return mask
