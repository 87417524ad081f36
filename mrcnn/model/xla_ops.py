"""XLA-compatible twins of the ops the training step uses that XLA cannot compile.

``tf.image.crop_and_resize`` has no XLA kernel, and RoIAlign's per-level ``tf.where`` makes
shapes depend on data. :func:`crop_and_resize` computes the same bilinear samples by gathering the
four neighbours of every sampling point and interpolating (what TF Model Garden's multilevel
crop-and-resize does for TPUs); :func:`multilevel_crop_and_resize` does it for boxes spread over
the FPN levels in one gather from the levels flattened side by side, with static shapes
throughout. NMS needs no twin: the proposal layer already uses
``tf.image.non_max_suppression_padded``, which compiles.

Sampling follows ``tf.image.crop_and_resize`` exactly: for a crop of height ``ph > 1`` row ``i``
samples ``y = y1 * (H - 1) + i * (y2 - y1) * (H - 1) / (ph - 1)`` (``ph == 1``: the centre
``(y1 + y2) / 2 * (H - 1)``), likewise for x; points outside ``[0, H - 1] x [0, W - 1]`` give
``extrapolation_value`` (0).
"""
import tensorflow as tf

__all__ = ["crop_and_resize", "multilevel_crop_and_resize"]


def _sample_points(start, end, size, length):
    """Sampling coordinates [..., length] in pixels of a side of ``size`` pixels."""
    size = tf.cast(size, tf.float32)
    if length > 1:
        # The same float operations, in the same order, as tf.image.crop_and_resize
        # (in_y = y1 * (H - 1) + i * (y2 - y1) * (H - 1) / (crop - 1)), so that samples that land
        # on a pixel boundary round alike (mask targets are thresholded at 0.5).
        scale = (end - start) * (size - 1.0) / float(length - 1)
        steps = tf.range(length, dtype=tf.float32)
        return (start * (size - 1.0))[..., None] + steps * scale[..., None]
    return (0.5 * (start + end) * (size - 1.0))[..., None]


def _bilinear(flat, offset, height, width, boxes, crop_size, extrapolation_value):
    """Bilinear crops of ``boxes`` from maps flattened to ``flat`` [B, S, C].

    ``offset``, ``height``, ``width``: [B, R] where each box's map starts in ``flat`` and its size.
    Returns [B, R, ph, pw, C] in float32.
    """
    ph, pw = crop_size
    height_f = tf.cast(height, tf.float32)
    width_f = tf.cast(width, tf.float32)
    y = _sample_points(boxes[..., 0], boxes[..., 2], height_f, ph)  # [B, R, ph]
    x = _sample_points(boxes[..., 1], boxes[..., 3], width_f, pw)  # [B, R, pw]
    inside_y = tf.logical_and(y >= 0.0, y <= (height_f - 1.0)[..., None])
    inside_x = tf.logical_and(x >= 0.0, x <= (width_f - 1.0)[..., None])
    y0, x0 = tf.floor(y), tf.floor(x)
    y1, x1 = tf.math.ceil(y), tf.math.ceil(x)
    wy, wx = y - y0, x - x0

    def clamp(v, size):
        return tf.clip_by_value(tf.cast(v, tf.int32), 0, size[..., None] - 1)

    y0i, y1i = clamp(y0, height), clamp(y1, height)
    x0i, x1i = clamp(x0, width), clamp(x1, width)
    row0 = offset[..., None] + y0i * width[..., None]  # [B, R, ph]
    row1 = offset[..., None] + y1i * width[..., None]
    # [B, R, ph, pw] flat indices of the four neighbours.
    corners = [row0[..., :, None] + x0i[..., None, :], row0[..., :, None] + x1i[..., None, :],
               row1[..., :, None] + x0i[..., None, :], row1[..., :, None] + x1i[..., None, :]]
    shape = tf.shape(corners[0])
    index = tf.reshape(tf.stack(corners, axis=-1), [shape[0], -1])  # [B, R * ph * pw * 4]
    values = tf.gather(tf.cast(flat, tf.float32), index, batch_dims=1)
    values = tf.reshape(values, tf.concat([shape, [4, tf.shape(flat)[-1]]], axis=0))
    top_left, top_right, bottom_left, bottom_right = tf.unstack(values, axis=-2)
    wx = wx[..., None, :, None]  # [B, R, 1, pw, 1]
    wy = wy[..., :, None, None]  # [B, R, ph, 1, 1]
    top = top_left + (top_right - top_left) * wx
    bottom = bottom_left + (bottom_right - bottom_left) * wx
    out = top + (bottom - top) * wy
    inside = tf.logical_and(inside_y[..., :, None], inside_x[..., None, :])[..., None]
    return tf.where(inside, out, tf.cast(extrapolation_value, tf.float32))


def crop_and_resize(images, boxes, crop_size, extrapolation_value=0.0):
    """``tf.image.crop_and_resize`` (bilinear) for batched boxes, XLA-compatible.

    Args:
        images: [B, H, W, C] float (static H, W preferred; any float dtype).
        boxes: [B, R, 4] float normalized (y1, x1, y2, x2); box ``r`` of image ``b`` crops
            ``images[b]`` (the batch dimension replaces ``box_indices``).
        crop_size: (ph, pw) ints.
        extrapolation_value: value of samples outside the image.

    Returns:
        [B, R, ph, pw, C] float32. Gradients flow to ``images`` (not to ``boxes``).
    """
    images = tf.convert_to_tensor(images)
    shape = tf.shape(images)
    boxes = tf.stop_gradient(tf.cast(boxes, tf.float32))
    flat = tf.reshape(images, [shape[0], shape[1] * shape[2], shape[3]])
    zeros = tf.zeros(tf.shape(boxes)[:2], tf.int32)
    return _bilinear(flat, zeros, zeros + shape[1], zeros + shape[2], boxes,
                     tuple(int(v) for v in crop_size), extrapolation_value)


def multilevel_crop_and_resize(feature_maps, boxes, levels, crop_size):
    """RoIAlign over pyramid levels without data-dependent shapes.

    Args:
        feature_maps: list of [B, h_l, w_l, C] maps, one per level, in level order.
        boxes: [B, R, 4] float normalized (y1, x1, y2, x2).
        levels: [B, R] int32 index into ``feature_maps`` (0-based) of each box's level.
        crop_size: (ph, pw).

    Returns:
        [B, R, ph, pw, C] float32: box ``r`` cropped from its own level, as
        ``tf.image.crop_and_resize`` on that level would.
    """
    batch = tf.shape(feature_maps[0])[0]
    channels = tf.shape(feature_maps[0])[-1]
    flats, offsets, heights, widths = [], [], [], []
    start = tf.constant(0, tf.int32)
    for fm in feature_maps:
        shape = tf.shape(fm)
        flats.append(tf.reshape(tf.cast(fm, tf.float32), [batch, shape[1] * shape[2], channels]))
        offsets.append(start)
        heights.append(shape[1])
        widths.append(shape[2])
        start = start + shape[1] * shape[2]
    flat = tf.concat(flats, axis=1)  # [B, sum(h_l * w_l), C]
    levels = tf.cast(levels, tf.int32)
    offset = tf.gather(tf.stack(offsets), levels)
    height = tf.gather(tf.stack(heights), levels)
    width = tf.gather(tf.stack(widths), levels)
    boxes = tf.stop_gradient(tf.cast(boxes, tf.float32))
    return _bilinear(flat, offset, height, width, boxes, tuple(int(v) for v in crop_size), 0.0)
