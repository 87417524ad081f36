"""Input checks and conversions shared by ``detect()``, the training pipeline and the readers.

One place for the rules that turn a bad input into a clear message (naming the image, the
annotation or the argument) before it reaches the TensorFlow graph, and for the conversions
that make awkward but usable input equal to what ``Dataset.load_image`` would have produced:

- :func:`check_detect_images`: the ``images`` argument of ``MaskRCNN.detect`` -> a list of
  ``[H, W, C]`` uint8 images (float in [0, 1], float in [0, 255], uint16, bool, gray, RGBA
  converted exactly as :func:`mrcnn.data.dataset.to_rgb_uint8` converts decoded files).
- :func:`check_dataset_image`: what a Dataset's ``load_image`` returned, as the pipeline loads it
  (non-uint8 images are converted the same way, with a warning once per Dataset class).
- :func:`check_class_ids`: ``load_mask`` class ids against ``NUM_CLASSES`` (0 is the background,
  negative ids are crowd regions).
- :func:`check_coco_annotation_fields`: types of the COCO fields that pycocotools would
  misread silently (``iscrowd`` as a string, polygons as point pairs, uncompressed RLE counts
  that do not add up to the image size).

Every error is a ``ValueError`` (or ``TypeError`` for an argument of the wrong type) whose
message names the culprit; see docs/reliability.md.
"""
import logging
import numbers
import warnings

import numpy as np

from mrcnn.data.dataset import ImageLoadError, to_rgb_uint8

__all__ = ["InputWarning", "check_detect_images", "check_dataset_image", "check_class_ids",
           "check_coco_annotation_fields", "MIN_IMAGE_SIDE"]

logger = logging.getLogger(__name__)

#: The smallest image side detect() and the pipeline accept (a 1-pixel side cannot be resized).
MIN_IMAGE_SIDE = 2

# Dataset classes already warned about (one warning per class, not per image).
_WARNED_DATASETS = set()


class InputWarning(UserWarning):
    """Suspicious but usable input (converted or repaired); the message says what was done."""


def _convert_image(image, where, channel_count):
    """One image -> [H, W, C] uint8 following ``to_rgb_uint8``; raises naming ``where``."""
    if isinstance(image, (str, bytes)) or image is None:
        raise TypeError(f"{where}: expected an image array [H, W, 3], got "
                        f"{type(image).__name__} {image!r:.80}; load files with "
                        "skimage.io.imread or mrcnn.data.dataset.load_image_file first")
    array = np.asarray(image)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number)
                                     or array.dtype == np.bool_):
        raise TypeError(f"{where}: image has dtype {array.dtype}; expected a numeric or "
                        "bool array [H, W, 3]")
    if np.issubdtype(array.dtype, np.complexfloating):
        raise TypeError(f"{where}: image has complex dtype {array.dtype}")
    if array.ndim not in (2, 3):
        raise ValueError(f"{where}: image has shape {array.shape}; expected [H, W, 3] "
                         "(or [H, W] gray, [H, W, 4] RGBA)")
    if array.shape[0] < MIN_IMAGE_SIDE or array.shape[1] < MIN_IMAGE_SIDE:
        raise ValueError(f"{where}: image of size {array.shape[0]}x{array.shape[1]} is too "
                         f"small; at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} pixels are needed")
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        warnings.warn(f"{where}: {bad} pixel value(s) are NaN or infinite; they are set to 0 "
                      "(as load_image does)", InputWarning, stacklevel=4)
    if channel_count != 3:
        # No RGB conversion for other channel counts: the dtype rule alone, channels as given.
        if array.ndim != 3 or array.shape[2] != channel_count:
            raise ValueError(f"{where}: image has shape {array.shape}; expected [H, W, "
                             f"{channel_count}] (Config.IMAGE_CHANNEL_COUNT)")
        if array.dtype == np.uint8:
            return array
        return np.stack([to_rgb_uint8(array[..., c], source=where)[..., 0]
                         for c in range(channel_count)], axis=-1)
    try:
        return to_rgb_uint8(array, source=where)
    except ImageLoadError as exc:
        raise ValueError(str(exc)) from None


def check_detect_images(images, channel_count=3):
    """Check and convert the ``images`` argument of ``MaskRCNN.detect``.

    Args:
        images: a list (or tuple) of images, each ``[H, W, 3]`` RGB of any numeric or bool dtype,
            ``[H, W]`` gray or ``[H, W, 4]`` RGBA; a 4-D array ``[N, H, W, C]`` counts as N
            images.
        channel_count: ``Config.IMAGE_CHANNEL_COUNT``; only 3 gets the gray/RGBA conversion.

    Returns:
        list of ``[H, W, channel_count]`` uint8 arrays (the input arrays themselves when already
        uint8 with the right layout). Conversion: as :func:`mrcnn.data.dataset.to_rgb_uint8`
        (float in [0, 1] x 255, uint16 scaled by its maximum, bool -> 0/255, gray replicated,
        alpha dropped), so ``detect`` sees what ``load_image`` would have given for the file.

    Raises:
        TypeError: ``images`` is one image (a 2-D/3-D array: "pass a list, detect([image])"),
            not a sequence, or holds a non-array.
        ValueError: an image (named by its index) is empty, smaller than 2 x 2 or of a layout
            that has no conversion.
    """
    if isinstance(images, np.ndarray):
        if images.ndim in (2, 3):
            raise TypeError(
                f"detect() takes a list of images, got one array of shape {images.shape}; "
                "pass a list: detect([image])")
        if images.ndim != 4:
            raise TypeError(f"detect() takes a list of [H, W, 3] images, got an array of shape "
                            f"{images.shape}")
        images = list(images)
    elif not isinstance(images, (list, tuple)):
        raise TypeError(f"detect() takes a list of images, got {type(images).__name__}; "
                        "pass a list: detect([image])")
    return [_convert_image(image, f"detect(): images[{i}]", channel_count)
            for i, image in enumerate(images)]


def check_dataset_image(dataset, image_id, image, label, channel_count=3):
    """Check what ``dataset.load_image(image_id)`` returned; convert non-uint8 images.

    ``Dataset.load_image`` returns ``[H, W, 3]`` uint8; a subclass that returns floats in [0, 1]
    (or uint16, bool ...) used to train on a nearly black image. Such images are converted as
    :func:`to_rgb_uint8` does and an :class:`InputWarning` is issued once per Dataset class.

    Args:
        dataset: the Dataset (only its class is used, for the once-per-class warning).
        image_id: internal image id (for messages).
        image: the returned value.
        label: text naming the image in messages (e.g. "image 3 (source 'x', path 'y')").
        channel_count: ``Config.IMAGE_CHANNEL_COUNT``.
    Returns:
        ``[H, W, C]`` uint8.
    Raises:
        TypeError / ValueError naming ``label``: not an array, wrong layout, smaller than 2 x 2.
    """
    where = f"load_image of {label}"
    array = image if isinstance(image, np.ndarray) else None
    if array is not None and array.dtype == np.uint8 and array.ndim == 3 \
            and array.shape[2] == channel_count and min(array.shape[:2]) >= MIN_IMAGE_SIDE:
        return array
    converted = _convert_image(image, where, channel_count)
    dtype = np.asarray(image).dtype
    if dtype != np.uint8:
        key = type(dataset)
        if key not in _WARNED_DATASETS:
            _WARNED_DATASETS.add(key)
            warnings.warn(
                f"{where} returned a {dtype} image (values {float(np.nanmin(image)):g} .. "
                f"{float(np.nanmax(image)):g}); Dataset.load_image must return uint8 RGB. "
                f"Converted as load_image_file does (floats in [0, 1] times 255, wider integers "
                f"scaled by their maximum); this warning is shown once per "
                f"{type(dataset).__name__}", InputWarning, stacklevel=4)
    return converted


def check_class_ids(class_ids, num_classes, label):
    """Check ``load_mask`` class ids: 1 <= |id| < num_classes (negative ids are crowd regions).

    Args:
        class_ids: [N] integer array.
        num_classes: ``Config.NUM_CLASSES`` (background included).
        label: text naming the image.
    Raises:
        ValueError naming the image, the offending ids and their instance indices.
    """
    class_ids = np.asarray(class_ids).reshape(-1)
    if not class_ids.size:
        return
    zero = np.flatnonzero(class_ids == 0)
    if zero.size:
        raise ValueError(
            f"load_mask of {label} returned class id 0 (the background) for instance(s) "
            f"{zero.tolist()}; object class ids start at 1 (negative ids mark crowd regions)")
    high = np.flatnonzero(np.abs(class_ids) >= num_classes)
    if high.size:
        raise ValueError(
            f"load_mask of {label} returned class id(s) {class_ids[high].tolist()} (instances "
            f"{high.tolist()}) but Config.NUM_CLASSES is {num_classes}: ids must be in "
            f"1..{num_classes - 1} (-{num_classes - 1}..-1 for crowd regions)")


def _is_int_like(value):
    return isinstance(value, numbers.Integral) or (
        isinstance(value, float) and value.is_integer())


def check_coco_annotation_fields(ann, height, width, where):
    """Types of the COCO annotation fields that pycocotools misreads without a word.

    - ``iscrowd`` must be 0/1 (or a bool): the string ``"0"`` is truthy and made the object a
      crowd region.
    - a polygon must be a flat list of numbers ``[x1, y1, x2, y2, ...]``; a list of point pairs
      ``[[x1, y1], ...]`` passed the length check and was then dropped.
    - an uncompressed RLE (``counts`` a list) must hold non-negative integers adding up to
      ``height * width`` of its ``size``; otherwise it decoded into a wrong mask.

    Raises:
        CocoFormatError (a ValueError) naming ``where``, the annotation id and the image id.
    """
    from mrcnn.data.coco import CocoFormatError

    ann_id, image_id = ann.get("id"), ann.get("image_id")
    head = f"{where}: annotation id {ann_id!r} (image_id {image_id!r})"
    crowd = ann.get("iscrowd", 0)
    if isinstance(crowd, bool):
        pass
    elif not (isinstance(crowd, numbers.Integral) and crowd in (0, 1)):
        raise CocoFormatError(f"{head}: 'iscrowd' must be 0 or 1, got {crowd!r} "
                              f"({type(crowd).__name__})")
    segm = ann.get("segmentation")
    if isinstance(segm, list):
        for k, polygon in enumerate(segm):
            if isinstance(polygon, (list, tuple)) and not all(
                    isinstance(v, numbers.Real) and not isinstance(v, bool) for v in polygon):
                first = next(v for v in polygon
                             if not isinstance(v, numbers.Real) or isinstance(v, bool))
                raise CocoFormatError(
                    f"{head}: polygon {k} must be a flat list of numbers [x1, y1, x2, y2, ...], "
                    f"got an element {first!r:.40}"
                    + (" (point pairs [[x, y], ...]? flatten them)"
                       if isinstance(first, (list, tuple)) else ""))
    elif isinstance(segm, dict) and isinstance(segm.get("counts"), list):
        counts = segm["counts"]
        size = segm.get("size")
        if not all(_is_int_like(c) and c >= 0 for c in counts):
            raise CocoFormatError(f"{head}: uncompressed RLE counts must be non-negative "
                                  "integers")
        if isinstance(size, (list, tuple)) and len(size) == 2:
            total = int(sum(counts))
            expected = int(size[0]) * int(size[1])
            if total != expected:
                raise CocoFormatError(
                    f"{head}: uncompressed RLE counts add up to {total} pixels but its size "
                    f"{list(size)} has {expected} (height * width)")
