"""Winograd's F(m x m, 3 x 3) without XLA: the transforms as matrix products, for training.

:mod:`mrcnn.model.winograd` computes the tile transforms (``B^T d B``, ``G g G^T``,
``A^T m A``) as XLA-compiled slices and additions, one pass over memory each. XLA's CPU
compiler costs a process about 300 MiB of resident memory however little it compiles
(docs/benchmarks.md, "Issue 9, ninth pass"), which a training step cannot afford against
torchvision's peak RSS. Here each transform is one matrix product by the Kronecker square of
its matrix instead: with a tile's t x t values as a row of ``t * t``,
``vec(B^T d B) = kron(B^T, B^T) vec(d)``, likewise ``kron(G, G)`` on the kernel's 9 taps and
``kron(A^T, A^T)`` on the products; ``tf.image.extract_patches`` cuts the overlapping input
tiles, a transpose puts the output blocks in place. More passes over memory than the compiled
transforms, no XLA, and on the FPN's and mask head's convolutions about as fast.

Where mrcnn's native transforms run (float32 outside XLA, mrcnn/native; as at inference,
:func:`mrcnn.model.winograd.native_transforms`), the forward pass, the input gradient and the
filter gradient's input transform use them instead of patches and Kronecker products (no
patch, transpose, pad or crop copies): the 512 x 512 batch-2 training step took 0.86-0.90 of
the time on both ISAs (Zen 4, docs/benchmarks.md, "Issue 9, tenth pass").

The gradient uses the same form and tile (F(4 x 4, 3 x 3) in training,
:data:`mrcnn.model.winograd.TRAINING_OUTPUT_TILE`): the input gradient of a stride-1 "same"
3 x 3 convolution is the same convolution of ``dy`` with the kernel flipped and its channel
axes swapped, and the kernel gradient is ``kron(G, G)^T`` of ``sum V^T dM`` over the tiles.
In float32 outputs and gradients differ from the direct convolution's by about 1e-5 of their
range (tests/model/test_winograd_matrix.py). Measured per convolution, forward + input
gradient (2 threads, Zen 4, native / ``ONEDNN_MAX_CPU_ISA=AVX2``): FPN P2 at 512 x 512 batch 2
215 / 222 ms against the direct 359 / 384; filter gradient 102 / 128 ms against 225 / 255.

Shapes: ``x [N, H, W, C]`` channels last (N, H, W may be unknown when traced; C and the
kernel's sizes must be known), ``kernel [3, 3, C, F]`` and ``bias [F]`` in ``x``'s dtype.
The image is done in chunks of tile rows where its shape is known when traced
(:data:`mrcnn.model.winograd.CHUNK_BYTES`, :data:`~mrcnn.model.winograd.GRADIENT_CHUNK_BYTES`).
"""
import numpy as np
import tensorflow as tf

from mrcnn.model import winograd
from mrcnn.model.winograd import _ALGORITHMS, _Tiling

__all__ = ["matrix_forward", "matrix_filter_gradient", "matrix_winograd_conv2d"]


def _input_transform(padded_rows, input_matrix, m):
    """``V [t * t, P, C]`` of the t x t input tiles (t = m + 2, stride m) of ``padded_rows``
    ``[N, rows, cols, C]``: ``tf.image.extract_patches`` cuts them, one product by
    ``input_matrix = kron(B^T, B^T)`` transforms them all."""
    t = m + 2
    channels = int(padded_rows.shape[-1])
    patches = tf.image.extract_patches(padded_rows, [1, t, t, 1], [1, m, m, 1], [1, 1, 1, 1],
                                       "VALID")
    # [P, t2, C] -> [t2, P * C], then one product (faster than an einsum on both ISAs).
    v = tf.transpose(tf.reshape(patches, [-1, t * t, channels]), [1, 0, 2])
    return tf.reshape(tf.matmul(input_matrix, tf.reshape(v, [t * t, -1])), [t * t, -1, channels])


def matrix_forward(x, kernel, bias, tiling):
    """``conv2d(x, kernel, 1, "SAME") + bias`` by F(m x m, 3 x 3), m = ``tiling.m`` (a
    :class:`mrcnn.model.winograd._Tiling` of ``x``), each transform one matrix product by the
    Kronecker square of its matrix (``kron(B^T, B^T)`` on the input tiles extracted as
    patches, ``kron(G, G)``, ``kron(A^T, A^T)``), plus a transpose that puts the output blocks
    in place. ``bias`` ``[F]`` or a scalar. More memory passes than the compiled transforms'
    one each, but no XLA: on the RPN's 256 -> 512 convolution over P2 of a 512 x 512 batch of
    2, F(4 x 4, 3 x 3) took 177 ms this way and 172 ms compiled (direct convolution 377 ms;
    docs/benchmarks.md, "Issue 9, ninth pass")."""
    m = tiling.m
    algorithm, t = _ALGORITHMS[m], _ALGORITHMS[m].tile
    filters = int(kernel.shape[3])
    ops = winograd.native_transforms(x.dtype)
    if ops is not None:
        # mrcnn's native transforms (mrcnn/native): no patches, transposes, pad or crop copies.
        bias = tf.broadcast_to(tf.cast(bias, x.dtype), [filters])
        return winograd._native_forward(x, kernel, bias, tiling, ops, True)
    input_matrix = tf.constant(np.kron(algorithm.bt, algorithm.bt), x.dtype)     # [t2, t2]
    output_matrix = tf.constant(np.kron(algorithm.at, algorithm.at), x.dtype)    # [m2, t2]
    # Depends on weights only: tied to x so that the executor does not run it at the start of
    # the step and hold it until x exists.
    with tf.control_dependencies([x]):
        u = winograd.kernel_transform_product(kernel, m)
    padded = tiling.pad(x)
    outputs = []
    for first, end in tiling.chunks:
        with tf.control_dependencies(outputs[-1:]):
            v = _input_transform(tiling.rows(padded, first, end), input_matrix, m)
        blocks = tf.matmul(output_matrix, tf.reshape(tf.matmul(v, u), [t * t, -1]))
        blocks = tf.reshape(blocks, [m, m, tiling.batch, end - first, tiling.tiles_w, filters])
        # [m (a), m (b), N, rows, tw, F] -> [N, rows, m (a), tw, m (b), F] -> image rows.
        outputs.append(tf.reshape(tf.transpose(blocks, [2, 3, 0, 4, 1, 5]),
                                  [tiling.batch, m * (end - first), m * tiling.tiles_w,
                                   filters]))
    y = outputs[0] if len(outputs) == 1 else tf.concat(outputs, axis=1)
    y = y if tiling.whole_tiles else y[:, :tiling.height, :tiling.width]
    return y + bias


def matrix_filter_gradient(x, dy, tiling):
    """``dkernel [3, 3, C, F]`` of :func:`matrix_forward` by the same algorithm: per chunk of
    tile rows ``dU += V^T dM`` (``V`` the input transform of ``x`` again, ``dM =
    kron(A^T, A^T)^T`` on the output gradient's m x m blocks), then ``kron(G, G)^T dU``."""
    m = tiling.m
    algorithm, t = _ALGORITHMS[m], _ALGORITHMS[m].tile
    channels, filters = int(x.shape[3]), int(dy.shape[3])
    input_matrix = tf.constant(np.kron(algorithm.bt, algorithm.bt), x.dtype)
    output_matrix = tf.constant(np.kron(algorithm.at, algorithm.at), x.dtype)
    ops = winograd.native_transforms(x.dtype)
    # Tied to dy: made when this gradient runs, not when the forward pass made x. The native
    # transform reads x unpadded (the padding as zeros).
    with tf.control_dependencies([dy]):
        source = tiling.pad(x) if ops is None else tf.identity(x)
    if not tiling.whole_tiles:
        dy = tf.pad(dy, [[0, 0], [0, m * tiling.tiles_h - tiling.height],
                         [0, m * tiling.tiles_w - tiling.width], [0, 0]])
    du = None
    for first, end in tiling.chunks:
        with tf.control_dependencies([] if du is None else [du]):
            if ops is None:
                v = _input_transform(tiling.rows(source, first, end), input_matrix, m)
            else:
                v = ops.mrcnn_winograd_input_transform(source, tf.stack([first, end]), m=m)
        # The chunk's output gradient as m x m blocks: [m (a), m (b), N, rows, tw, F].
        blocks = tf.reshape(dy[:, m * first:m * end],
                            [tiling.batch, end - first, m, tiling.tiles_w, m, filters])
        blocks = tf.reshape(tf.transpose(blocks, [2, 4, 0, 1, 3, 5]), [m * m, -1])
        dm = tf.reshape(tf.matmul(output_matrix, blocks, transpose_a=True), [t * t, -1, filters])
        chunk_du = tf.matmul(v, dm, transpose_a=True)                        # [t2, C, F]
        du = chunk_du if du is None else du + chunk_du
    kernel_matrix = tf.constant(np.kron(algorithm.g, algorithm.g), x.dtype)   # [t2, 9]
    return tf.reshape(tf.matmul(kernel_matrix, tf.reshape(du, [t * t, -1]), transpose_a=True),
                      [3, 3, channels, filters])


def matrix_winograd_conv2d(x, kernel, bias=None, output_tile=4):
    """:func:`mrcnn.model.winograd.winograd_conv2d` without XLA (``[N, H, W, C]`` ->
    ``[N, H, W, F]``), forward and gradient by F(m x m, 3 x 3), m = ``output_tile`` (2 or 4):
    ``dx`` is the same form's
    convolution of ``dy`` with the kernel flipped and its channel axes swapped (the input
    gradient of a stride-1 "same" 3 x 3 convolution), ``dkernel`` is
    :func:`matrix_filter_gradient`."""
    with_bias = bias is not None
    channels, filters = kernel.shape[2], kernel.shape[3]

    @tf.custom_gradient
    def conv(x, kernel, *bias):
        b = bias[0] if with_bias else tf.zeros([], x.dtype)
        # The chunk sizes are read at each trace (tests change them).
        y = matrix_forward(x, kernel, b,
                           _Tiling(x, filters, winograd.CHUNK_BYTES, output_tile))

        def grad(dy):
            with tf.control_dependencies([dy]):
                flipped = tf.transpose(tf.reverse(kernel, [0, 1]), [0, 1, 3, 2])
            chunk = winograd.GRADIENT_CHUNK_BYTES
            dx = matrix_forward(dy, flipped, tf.zeros([], dy.dtype),
                                _Tiling(dy, channels, chunk, output_tile))
            dkernel = matrix_filter_gradient(
                x, dy, _Tiling(x, filters, chunk, output_tile))
            return [dx, dkernel] + ([tf.reduce_sum(dy, axis=[0, 1, 2])] if with_bias else [])

        return y, grad

    return conv(x, kernel, *((bias,) if with_bias else ()))
