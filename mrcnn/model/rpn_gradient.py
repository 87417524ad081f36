"""The RPN head's gradient, computed at the feature-map positions that its losses reach.

The RPN head (``rpn_model``: a shared 3 x 3 convolution with ReLU, then the 1 x 1 convolutions
that give each anchor's logits and box deltas) runs over every position of P2-P6, because the
proposal layer ranks every anchor. Its two losses, though, use the RPN_TRAIN_ANCHORS_PER_IMAGE
sampled anchors of each image (256 by default), and the proposals carry no gradient
(mrcnn/model/proposal.py stops it): the gradient that reaches the head's outputs is exactly zero
at every position that holds no sampled anchor. At 512 x 512 batch 2 that is all but at most
512 of the 43,520 positions of P2-P6. Differentiated as usual, the head's backward pass is
still two dense convolutions per level (the input and the filter gradient of the 3 x 3
convolution, 77 GFLOP each over P2 alone with the classic 512 channels), almost all of it
multiplying zeros.

:func:`rpn_head_with_sparse_gradient` computes the same gradient from the ``n`` positions where
the output gradient is not zero. With ``p`` the 3 x 3 input patches at those positions
(``[n, 9 C]``, zeros outside the map), ``K, b`` the 3 x 3 convolution's kernel (flattened to
``[9 C, F]``) and bias, ``W, c`` the two 1 x 1 convolutions side by side (``[F, 6 A]``) and
``g`` the output gradient at those positions (``[n, 6 A]``)::

    pre = p @ K + b                         recomputed, [n, F]
    dW  = relu(pre)^T @ g,   dc = sum(g)
    dh  = (g @ W^T) * [pre > 0]
    dK  = p^T @ dh,          db = sum(dh)
    dx  = dh @ K^T, added back into the 3 x 3 window of each position

These are the convolutions' own gradient sums without their zero terms. The hidden activation
is recomputed from the patches instead of being kept from the forward pass, so the head's
``[B, H, W, F]`` activation is not held until the backward pass either. Numerically: the
forward pass may run by Winograd's algorithm (mrcnn/model/winograd.py), whose output differs
from the direct convolution's by 1e-6 to 2e-5 of its range; the recomputed ``pre`` is the
direct one, so the ReLU's mask can differ from the forward pass's only where ``pre`` is that
close to zero.

Where more than :data:`MAX_SPARSE_FRACTION` of a level's positions carry a gradient (a loss
over every anchor, say), the dense gradient is computed instead: the same values, with the
forward pass recomputed. ``scripts/benchmark_train.py --dense-rpn-gradient`` turns the sparse
form off for comparisons; docs/benchmarks.md, "Issue 9, ninth pass", has the figures.
"""
import numpy as np
import tensorflow as tf

__all__ = ["SPARSE_RPN_GRADIENT", "MAX_SPARSE_FRACTION", "rpn_head_with_sparse_gradient"]

#: False: the RPN head is differentiated as usual (read when a model's step is traced; for
#: comparisons, e.g. ``scripts/benchmark_train.py --dense-rpn-gradient``).
SPARSE_RPN_GRADIENT = True

#: Largest share of a level's positions with a non-zero output gradient for which the sparse
#: form is used; above it the patches (9 C values per position) would outgrow the feature map
#: and the dense convolution gradients are the cheaper way.
MAX_SPARSE_FRACTION = 0.25

# (image, row, column) offsets of the 3 x 3 window's taps, row-major as the kernel's.
_TAP_OFFSETS = np.array([[0, i, j] for i in (-1, 0, 1) for j in (-1, 0, 1)], np.int64)


def rpn_head_with_sparse_gradient(x, conv_kernel, conv_bias, head_kernel, head_bias,
                                  conv_forward):
    """``relu(conv3x3(x)) @ head_kernel + head_bias`` whose gradient is computed sparsely.

    Args:
        x: ``[B, H, W, C]`` feature map, float (any float dtype; C known when traced).
        conv_kernel: ``[3, 3, C, F]``, ``conv_bias``: ``[F]``: the stride-1 "same" 3 x 3
            convolution (ReLU after it), in ``x``'s dtype.
        head_kernel: ``[F, K]``, ``head_bias``: ``[K]``: the 1 x 1 convolutions on the hidden
            map, side by side (the anchors' logits and box deltas), in ``x``'s dtype.
        conv_forward: ``(x, kernel, bias) -> [B, H, W, F]``, the 3 x 3 convolution's
            pre-activation output in any form (only its forward pass is used).
    Returns:
        ``[B, H, W, K]`` in ``x``'s dtype. Its gradient reaches ``x`` and the four weights as
        the module docstring describes.
    """
    if len(x.shape) != 4 or x.shape[-1] is None:
        raise ValueError(f"rpn_head_with_sparse_gradient: x must be [B, H, W, C] with C known, "
                         f"got shape {x.shape}")
    if tuple(conv_kernel.shape[:2]) != (3, 3):
        raise ValueError(f"rpn_head_with_sparse_gradient: conv_kernel must be [3, 3, C, F], "
                         f"got shape {conv_kernel.shape}")

    @tf.custom_gradient
    def head(x, conv_kernel, conv_bias, head_kernel, head_bias):
        hidden = tf.nn.relu(conv_forward(x, conv_kernel, conv_bias))
        filters = tf.shape(hidden)[-1]
        out = tf.matmul(tf.reshape(hidden, [-1, filters]), head_kernel) + head_bias
        out = tf.reshape(out, tf.concat([tf.shape(hidden)[:3], tf.shape(head_bias)], 0))

        def grad(dy):
            active = tf.reduce_any(tf.not_equal(dy, 0), axis=-1)
            positions = tf.where(active)
            sparse = (tf.cast(tf.shape(positions)[0], tf.float32)
                      <= MAX_SPARSE_FRACTION * tf.cast(tf.size(active), tf.float32))
            weights = (x, conv_kernel, conv_bias, head_kernel, head_bias)
            return tf.cond(sparse, lambda: _sparse_gradient(*weights, dy, positions),
                           lambda: _dense_gradient(*weights, dy))

        return out, grad

    return head(x, conv_kernel, conv_bias, head_kernel, head_bias)


def _sparse_gradient(x, conv_kernel, conv_bias, head_kernel, head_bias, dy, positions):
    """The gradients from the output gradient ``dy`` at ``positions`` ``[n, 3]`` (int64
    image, row, column), which must hold every position where ``dy`` is not zero."""
    shape = tf.shape(x, out_type=tf.int64)
    channels = x.shape[-1]
    # [n, 9, 3]: the 3 x 3 window of each position, clipped to the map; taps outside it
    # (the "same" padding's zeros) are masked out of the patches and of their gradient.
    window = positions[:, None, :] + _TAP_OFFSETS
    rows, columns = window[..., 1], window[..., 2]
    inside = ((rows >= 0) & (rows < shape[1]) & (columns >= 0) & (columns < shape[2]))
    inside = tf.cast(inside, x.dtype)[..., None]
    window = tf.stack([window[..., 0], tf.clip_by_value(rows, 0, shape[1] - 1),
                       tf.clip_by_value(columns, 0, shape[2] - 1)], axis=-1)
    patches = tf.reshape(tf.gather_nd(x, window) * inside, [-1, 9 * channels])
    flat_kernel = tf.reshape(conv_kernel, [9 * channels, -1])
    pre = tf.matmul(patches, flat_kernel) + conv_bias
    g = tf.gather_nd(dy, positions)
    d_head_kernel = tf.matmul(tf.nn.relu(pre), g, transpose_a=True)
    d_head_bias = tf.reduce_sum(g, axis=0)
    d_pre = tf.matmul(g, head_kernel, transpose_b=True) * tf.cast(pre > 0, pre.dtype)
    d_conv_kernel = tf.reshape(tf.matmul(patches, d_pre, transpose_a=True),
                               tf.shape(conv_kernel))
    d_conv_bias = tf.reduce_sum(d_pre, axis=0)
    d_patches = tf.reshape(tf.matmul(d_pre, flat_kernel, transpose_b=True),
                           [-1, 9, channels]) * inside
    # Windows overlap: scatter_nd sums the updates of a pixel.
    dx = tf.scatter_nd(window, d_patches, shape)
    return dx, d_conv_kernel, d_conv_bias, d_head_kernel, d_head_bias


def _dense_gradient(x, conv_kernel, conv_bias, head_kernel, head_bias, dy):
    """The same gradients by the dense convolution gradients (forward pass recomputed)."""
    strides, padding = [1, 1, 1, 1], "SAME"
    pre = tf.nn.conv2d(x, conv_kernel, strides, padding) + conv_bias
    filters = tf.shape(pre)[-1]
    flat_dy = tf.reshape(dy, [-1, tf.shape(dy)[-1]])
    d_head_kernel = tf.matmul(tf.reshape(tf.nn.relu(pre), [-1, filters]), flat_dy,
                              transpose_a=True)
    d_head_bias = tf.reduce_sum(flat_dy, axis=0)
    d_pre = (tf.reshape(tf.matmul(flat_dy, head_kernel, transpose_b=True), tf.shape(pre))
             * tf.cast(pre > 0, pre.dtype))
    dx = tf.raw_ops.Conv2DBackpropInput(input_sizes=tf.shape(x), filter=conv_kernel,
                                        out_backprop=d_pre, strides=strides, padding=padding)
    d_conv_kernel = tf.raw_ops.Conv2DBackpropFilter(
        input=x, filter_sizes=tf.shape(conv_kernel), out_backprop=d_pre, strides=strides,
        padding=padding)
    d_conv_bias = tf.reduce_sum(d_pre, axis=[0, 1, 2])
    return dx, d_conv_kernel, d_conv_bias, d_head_kernel, d_head_bias
