"""The one definition of the image_meta layout, and image molding.

An image_meta row describes one molded image, float32, length
``IMAGE_META_FIXED_SIZE + num_classes`` (= ``Config.IMAGE_META_SIZE``):

======================  =======  ==============================================
field                   columns  meaning
======================  =======  ==============================================
image_id                0        dataset image id
original_image_shape    1:4      (H, W, C) before resizing
image_shape             4:7      (H, W, C) of the molded image (after padding)
window                  7:11     (y1, x1, y2, x2) pixels of the molded image
                                 that hold the image (the rest is padding);
                                 y2, x2 exclusive
scale                   11       resize factor applied to the original image
active_class_ids        12:      1 for classes of the image's source dataset
======================  =======  ==============================================

``compose_image_meta`` builds a row, ``parse_image_meta`` (NumPy) and
``parse_image_meta_graph`` (TensorFlow) split rows back into fields.
``mold_image`` / ``unmold_image`` subtract / add the per-channel mean pixel.

TensorFlow is imported inside ``parse_image_meta_graph`` only, so importing this
module stays cheap.
"""
import numpy as np

__all__ = [
    "IMAGE_META_FIXED_SIZE",
    "image_meta_size",
    "compose_image_meta",
    "parse_image_meta",
    "parse_image_meta_graph",
    "mold_image",
    "unmold_image",
]

# Columns before active_class_ids: image_id 1, original shape 3, image shape 3,
# window 4, scale 1.
IMAGE_META_FIXED_SIZE = 12

# (name, first column, last column exclusive or None for "to the end")
_FIELDS = (
    ("image_id", 0, 1),
    ("original_image_shape", 1, 4),
    ("image_shape", 4, 7),
    ("window", 7, 11),
    ("scale", 11, 12),
    ("active_class_ids", 12, None),
)
_SCALAR_FIELDS = ("image_id", "scale")
_FLOAT_FIELDS = ("scale",)


def image_meta_size(num_classes):
    """Length of one image_meta row: ``12 + num_classes`` (int).

    ``num_classes`` counts the background class, as ``Config.NUM_CLASSES``.
    """
    if (isinstance(num_classes, (bool, np.bool_)) or not isinstance(num_classes, (int, np.integer))
            or num_classes <= 0):
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    return IMAGE_META_FIXED_SIZE + int(num_classes)


def compose_image_meta(image_id, original_image_shape, image_shape, window, scale,
                       active_class_ids):
    """Pack the attributes of one image into an image_meta row.

    Args:
        image_id: int, the image's id in its dataset (stored as float32, so exact
            up to 2**24).
        original_image_shape: (H, W, C) of the image before resizing.
        image_shape: (H, W, C) of the molded image (after resizing and padding).
        window: (y1, x1, y2, x2) in pixels of the molded image: the area that holds
            the image, the rest being padding (y2, x2 exclusive).
        scale: float, the resize factor applied to the original image.
        active_class_ids: [num_classes] 0/1, classes available in the image's
            source dataset (background included).

    Returns:
        [12 + num_classes] float32 array (layout in the module docstring).
    """
    parts = {
        "original_image_shape": (original_image_shape, 3),
        "image_shape": (image_shape, 3),
        "window": (window, 4),
    }
    arrays = {}
    for name, (value, length) in parts.items():
        array = np.asarray(value, dtype=np.float64)
        if array.shape != (length,):
            raise ValueError(f"{name} must have {length} values, got {value!r} "
                             f"(shape {array.shape})")
        arrays[name] = array
    for name, value in (("image_id", image_id), ("scale", scale)):
        if np.ndim(value) != 0:
            raise ValueError(f"{name} must be a scalar, got {value!r}")
    active = np.asarray(active_class_ids, dtype=np.float64)
    if active.ndim != 1 or active.size == 0:
        raise ValueError(f"active_class_ids must be a non-empty 1-D array [num_classes], "
                         f"got shape {active.shape}")
    meta = np.concatenate([
        [float(image_id)],
        arrays["original_image_shape"],
        arrays["image_shape"],
        arrays["window"],
        [float(scale)],
        active,
    ])
    return meta.astype(np.float32)


def _check_meta_shape(shape, what):
    if len(shape) == 0 or (shape[-1] is not None and shape[-1] <= IMAGE_META_FIXED_SIZE):
        raise ValueError(f"{what} must have a last dimension of {IMAGE_META_FIXED_SIZE} + "
                         f"num_classes (num_classes >= 1), got shape {tuple(shape)}")


def parse_image_meta(meta):
    """Split image_meta rows into their fields (NumPy).

    Args:
        meta: [batch, 12 + num_classes] (or a single row [12 + num_classes]) array.

    Returns:
        dict with, for a batch (drop the leading dimension for a single row):
        ``image_id`` [batch] int32, ``original_image_shape`` [batch, 3] int32,
        ``image_shape`` [batch, 3] int32, ``window`` [batch, 4] int32 (y1, x1, y2, x2
        pixels of the molded image), ``scale`` [batch] float32,
        ``active_class_ids`` [batch, num_classes] int32.
    """
    meta = np.asarray(meta)
    _check_meta_shape(meta.shape, "meta")
    out = {}
    for name, start, stop in _FIELDS:
        value = meta[..., start] if name in _SCALAR_FIELDS else meta[..., start:stop]
        if name in _FLOAT_FIELDS:
            out[name] = value.astype(np.float32)
        else:
            # Rounding guards against values that were not stored exactly.
            out[name] = np.rint(value).astype(np.int32)
    return out


def parse_image_meta_graph(meta):
    """Split image_meta rows into their fields (TensorFlow).

    Args:
        meta: [batch, 12 + num_classes] tensor (any leading dimensions work; a
            single row [12 + num_classes] too); cast to float32.

    Returns:
        dict of float32 tensors, keys as :func:`parse_image_meta`:
        ``image_id`` [batch], ``original_image_shape`` [batch, 3],
        ``image_shape`` [batch, 3], ``window`` [batch, 4] (pixels of the molded
        image), ``scale`` [batch], ``active_class_ids`` [batch, num_classes].
    """
    import tensorflow as tf

    meta = tf.cast(tf.convert_to_tensor(meta), tf.float32)
    _check_meta_shape(meta.shape.as_list() if meta.shape.rank is not None else [None],
                      "meta")
    out = {}
    for name, start, stop in _FIELDS:
        out[name] = meta[..., start] if name in _SCALAR_FIELDS else meta[..., start:stop]
    return out


def _mean_pixel(mean_pixel, images):
    # A Config (anything with MEAN_PIXEL) is accepted for the classic call
    # ``mold_image(images, config)``.
    mean = np.asarray(getattr(mean_pixel, "MEAN_PIXEL", mean_pixel), dtype=np.float32)
    if mean.ndim != 1 or images.ndim == 0 or images.shape[-1] != mean.shape[0]:
        raise ValueError(f"mean_pixel must have one value per channel: images have shape "
                         f"{images.shape} (channels last), mean_pixel is {mean.tolist()}")
    return mean


def mold_image(images, mean_pixel):
    """Subtract the per-channel mean: the network's input normalization.

    Args:
        images: [..., H, W, C] image(s), any numeric dtype (usually uint8 RGB).
        mean_pixel: [C] mean per channel (``Config.MEAN_PIXEL``), or a Config.

    Returns:
        float32 array of the same shape: ``images - mean_pixel``.
    """
    images = np.asarray(images)
    return images.astype(np.float32) - _mean_pixel(mean_pixel, images)


def unmold_image(normalized_images, mean_pixel):
    """Inverse of :func:`mold_image`: add the mean back.

    Args:
        normalized_images: [..., H, W, C] float molded image(s).
        mean_pixel: [C] mean per channel (``Config.MEAN_PIXEL``), or a Config.

    Returns:
        uint8 array of the same shape, rounded and clipped to [0, 255] (the
        classic code truncated, which turned float noise like 99.99998 into 99).
    """
    normalized_images = np.asarray(normalized_images)
    images = normalized_images.astype(np.float32) + _mean_pixel(mean_pixel, normalized_images)
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)
