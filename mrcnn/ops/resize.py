"""``resize``: a drop-in for ``skimage.transform.resize`` (the classic ``utils.resize``).

Bilinear (``order=1``) and nearest (``order=0``) resizes run through OpenCV / NumPy and
reproduce scikit-image's pixel mapping, including the dark half-pixel border that
``mode="constant"`` gives when enlarging. Everything else falls back to scikit-image.

It lives in ``mrcnn.ops`` (the ground floor, imported by ``mrcnn.ops.masks``);
``mrcnn.data.transforms`` builds the network-input resizing on it and re-exports it.
"""
import logging

import cv2
import numpy as np

__all__ = ["resize", "nearest_index"]

logger = logging.getLogger(__name__)

# dtypes that cv2.resize(INTER_LINEAR) handles exactly once converted to float32.
_FLOAT32_EXACT = (np.uint8, np.int8, np.uint16, np.int16, np.float16, np.float32)
# OpenCV 5 refuses more than 128 channels per call (OpenCV 4: 512).
_CV2_MAX_CHANNELS = 128


def nearest_index(n_in, n_out):
    """Source index for each of ``n_out`` output samples over ``n_in`` inputs, pixel-centre
    aligned: ``floor((i + 0.5) * n_in / n_out)``. Integer arithmetic keeps the ties exact, so
    the result equals scikit-image's ``order=0`` mapping."""
    i = np.arange(n_out, dtype=np.int64)
    return np.minimum(((2 * i + 1) * n_in) // (2 * n_out), n_in - 1)


def _constant_border_weight(n_in, n_out):
    """Per-output-row weight of the real image in a bilinear resize with a constant border.

    Output sample ``i`` sits at source coordinate ``(i + 0.5) * n_in / n_out - 0.5``; where that
    lies outside ``[0, n_in - 1]`` (only when enlarging) scikit-image's ``mode="constant"`` blends
    the edge pixel with ``cval`` in proportion to the distance. OpenCV replicates the edge, so the
    edge rows are corrected with this weight afterwards."""
    y = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    outside = np.maximum(np.maximum(-y, y - (n_in - 1)), 0.0)
    return 1.0 - np.minimum(outside, 1.0)


def _channel_chunks(channels, dtype):
    """Channel slices for separate cv2 calls. float64 is only exact (float64 weights) for 1, 3 or
    4 channels per call; other counts go through a float32-weight path (~1e-6 error)."""
    if dtype != np.float64:
        return [slice(c, c + _CV2_MAX_CHANNELS) for c in range(0, channels, _CV2_MAX_CHANNELS)]
    chunks = [slice(c, c + 4) for c in range(0, channels - channels % 4, 4)]
    rest = channels % 4
    start = channels - rest
    if rest == 3:
        chunks.append(slice(start, start + 3))
    else:
        chunks.extend(slice(c, c + 1) for c in range(start, channels))
    return chunks


def _cv2_linear(image, out_h, out_w):
    """cv2 INTER_LINEAR for ``[H, W]`` or ``[H, W, C]`` float arrays of any channel count."""
    image = np.ascontiguousarray(image)
    if image.ndim == 2:
        return cv2.resize(image, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    chunks = []
    for channel_slice in _channel_chunks(image.shape[2], image.dtype):
        part = np.ascontiguousarray(image[:, :, channel_slice])
        out = cv2.resize(part, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
        # cv2 drops a trailing channel axis of length 1.
        chunks.append(out.reshape(out_h, out_w, part.shape[2]))
    return chunks[0] if len(chunks) == 1 else np.concatenate(chunks, axis=2)


def _cast_back(result, dtype):
    """Cast a float result to ``dtype``; integers are rounded and clipped to the dtype range."""
    dtype = np.dtype(dtype)
    if dtype == result.dtype:
        return result
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return np.clip(np.rint(result), info.min, info.max).astype(dtype)
    if dtype.kind == "b":
        return result >= 0.5
    return result.astype(dtype)


def _clip_like_skimage(out, image, cval):
    """scikit-image's ``clip=True`` for ``mode="constant"``: clip to the input's value range,
    keeping pixels that equal ``cval`` when ``cval`` lies outside that range. Blending with an
    in-range ``cval`` cannot leave the range, so only an out-of-range ``cval`` needs work."""
    lo, hi = np.min(image), np.max(image)
    if np.isnan(lo) or lo <= cval <= hi:
        return out
    keep = out == cval
    out = np.clip(out, lo, hi)
    out[keep] = cval
    return out


def _check_output_shape(image, output_shape):
    """Validate ``output_shape`` against ``image``; return ``(out_h, out_w)`` when the fast path
    can serve it (only the two spatial axes change), else None."""
    try:
        shape = tuple(int(s) for s in output_shape)
    except TypeError:
        raise ValueError(f"resize: output_shape must be a sequence of ints, got {output_shape!r}")
    if len(shape) < 2 or any(s < 1 for s in shape):
        raise ValueError(f"resize: output_shape must hold at least two sizes >= 1, got {shape}")
    if image.ndim < 2 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"resize: image must be [H, W] or [H, W, C] with H, W > 0, "
                         f"got shape {image.shape}")
    if image.ndim > 3 or len(shape) > image.ndim:
        return None
    if len(shape) == 3 and shape[2] != image.shape[2]:
        return None
    return shape[0], shape[1]


# ----------------------------------------------------------------------------- resize
def resize(image, output_shape, order=1, mode="constant", cval=0, clip=True,
           preserve_range=False, anti_aliasing=False, anti_aliasing_sigma=None):
    """Resize an image; same arguments and results as ``skimage.transform.resize``.

    The classic ``utils.resize`` wrapper, with the classic defaults (``mode="constant"``,
    ``anti_aliasing=False``). ``order`` 0 (nearest) and 1 (bilinear) with ``mode`` "constant" or
    "edge" and no anti-aliasing on a shrink run through NumPy / OpenCV and reproduce
    scikit-image's pixel-centre mapping (within float32 rounding); anything else is passed to
    scikit-image.

    Args:
        image: [H, W] or [H, W, C] array, any channel count.
        output_shape: (h, w) or (h, w, C); channels are kept when only (h, w) is given.
        order: spline order; 0 nearest, 1 bilinear (fast), 2-5 via scikit-image.
        mode: border handling, as scikit-image ("constant", "edge", "reflect", ...).
        cval: border value for ``mode="constant"``.
        clip: clip the output to the input range (for orders 0 and 1 this only matters when
            ``cval`` lies outside that range).
        preserve_range: keep the input value range. Unlike scikit-image (which returns floats)
            the result then also keeps the input dtype; integers are rounded and clipped.
        anti_aliasing, anti_aliasing_sigma: Gaussian pre-filter before shrinking (scikit-image).
    Returns:
        The resized array [h, w] or [h, w, C]. dtype: the input dtype when ``preserve_range`` is
        set; otherwise scikit-image's choice: ``order=0`` keeps the dtype (float16 becomes
        float32); ``order=1`` turns integers into float64 rescaled to [0, 1] / [-1, 1], keeps
        float32/float64 and turns float16 into float32.
    """
    image = np.asarray(image)
    in_dtype = image.dtype
    size = _check_output_shape(image, output_shape)
    shrinking = size is not None and (size[0] < image.shape[0] or size[1] < image.shape[1])
    if anti_aliasing is None:  # scikit-image's automatic choice
        anti_aliasing = order > 0 and in_dtype.kind != "b"
    fast = (size is not None and order in (0, 1) and mode in ("constant", "edge")
            and not (anti_aliasing and shrinking)
            and not (in_dtype.kind == "b" and order != 0)
            and in_dtype.kind in "uifb")
    if not fast:
        from skimage.transform import resize as sk_resize
        out = sk_resize(image, output_shape, order=order, mode=mode, cval=cval, clip=clip,
                        preserve_range=preserve_range, anti_aliasing=anti_aliasing,
                        anti_aliasing_sigma=anti_aliasing_sigma)
        return _cast_back(out, in_dtype) if preserve_range else out

    out_h, out_w = size
    if order == 0:
        # Pure indexing: every source pixel keeps its exact value and dtype.
        out = image[nearest_index(image.shape[0], out_h)][:, nearest_index(image.shape[1], out_w)]
        # scikit-image keeps the dtype for order 0 too, promoting only float16 to float32.
        if in_dtype == np.float16 and not preserve_range:
            return out.astype(np.float32)
        return out

    if in_dtype.kind in "ui" and not preserve_range:
        from skimage.util import img_as_float
        image = img_as_float(image)
    work = np.float32 if image.dtype.type in _FLOAT32_EXACT else np.float64
    out = _cv2_linear(image.astype(work, copy=False), out_h, out_w)
    if mode == "constant":
        wy = _constant_border_weight(image.shape[0], out_h)
        wx = _constant_border_weight(image.shape[1], out_w)
        if wy.min() < 1.0 or wx.min() < 1.0:
            weight = (wy[:, None] * wx[None, :]).astype(work)
            if out.ndim == 3:
                weight = weight[:, :, None]
            out = out * weight + work(cval) * (1 - weight)
            if clip:
                out = _clip_like_skimage(out, image, cval)
    if preserve_range:
        return _cast_back(out, in_dtype)
    if in_dtype.kind in "ui":
        return out.astype(np.float64, copy=False)
    return out


# ----------------------------------------------------------------------------- resize_image
