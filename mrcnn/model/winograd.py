"""3 x 3 convolutions by Winograd's minimal filtering, F(2 x 2, 3 x 3).

A stride-1 "same" 3 x 3 convolution computes every 2 x 2 block of output pixels from the 4 x 4
block of input pixels around it. Winograd's algorithm (Lavin & Gray, "Fast Algorithms for
Convolutional Neural Networks", 2016) does it with 16 products per input and output channel
instead of 36::

    Y = A^T [ (G g G^T) * (B^T d B) ] A        (per tile; * is elementwise over the 4 x 4)

so the convolution becomes 16 independent matrix products ``V[k] @ U[k]``, ``[P, C] @ [C, F]``
(P = number of 2 x 2 output tiles), 2.25 times less arithmetic, plus the transforms of the
input (``B^T d B``), the kernel (``G g G^T``) and the output (``A^T m A``), which are additions
and halvings only. The transforms are XLA-compiled (``jit_compile=True``): XLA fuses the strided
slices and additions of each into one pass over memory, where as separate TensorFlow ops they
cost more than the products saved. The products run on oneDNN's matrix kernels.

F(2 x 2, 3 x 3) is exact in real arithmetic; in float32 its results differ from the direct
convolution's by about 1e-6 of the output's range, the size of the difference between two
direct kernels (F(4 x 4, 3 x 3) would save more but loses 1.5e-5). oneDNN has Winograd kernels
of its own only for AVX-512, and TensorFlow's convolutions did not use them (ONEDNN_VERBOSE).

Measured (docs/benchmarks.md, "Issue 9, fifth pass"; one call per shape, 2 threads): on the
3 x 3 convolutions of Mask R-CNN with 256 or more input channels it took 0.55-0.6 of the
direct convolution's time under ``ONEDNN_MAX_CPU_ISA=AVX2`` and 0.6-0.8 natively on AVX-512;
with 64 or 128 input channels (ResNet stages 2 and 3) it was slower natively, so those keep
the direct convolution (:data:`MIN_CHANNELS`). :class:`mrcnn.model.feature_conv.FeatureConv2D`
uses it at inference only; ``scripts/benchmark.py --no-winograd`` turns it off.
"""
import contextlib

import numpy as np
import tensorflow as tf

__all__ = ["WINOGRAD", "MIN_CHANNELS", "direct_convolutions", "winograd_applies",
           "winograd_conv2d", "winograd_conv2d_numpy"]

#: False: every convolution is direct (read when a model is traced; for comparisons, e.g.
#: ``scripts/benchmark.py --no-winograd``).
WINOGRAD = True

#: Input channels from which the Winograd form is used: the products' inner dimension must be
#: large enough for them to outweigh the transforms (natively on AVX-512, 64 and 128 channels
#: were slower than the direct convolution).
MIN_CHANNELS = 256

# F(2 x 2, 3 x 3): input transform B^T, kernel transform G, output transform A^T.
_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64)
_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64)
_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)
#: Largest products tensor (``16 x tiles x F``) of one chunk of a convolution, in bytes.
CHUNK_BYTES = 64 * 2 ** 20

_TILE = 4   # input tile side
_STEP = 2   # output tile side


def winograd_applies(input_shape, kernel_size, strides, padding, dilation_rate, groups,
                     data_format):
    """Whether a convolution over ``input_shape`` (as known when traced) uses the Winograd
    form: stride-1 "same" 3 x 3 convolutions, channels last, with at least
    :data:`MIN_CHANNELS` input channels (known when traced)."""
    if not WINOGRAD or data_format != "channels_last" or groups != 1:
        return False
    if tuple(kernel_size) != (3, 3) or tuple(strides) != (1, 1):
        return False
    if tuple(dilation_rate) != (1, 1) or padding != "same" or len(input_shape) != 4:
        return False
    channels = input_shape[3]
    return channels is not None and channels >= MIN_CHANNELS


@contextlib.contextmanager
def direct_convolutions():
    """Within this block, models traced use direct convolutions only. For graphs that leave
    this process (SavedModel export): the transforms are XLA-compiled functions, which a
    serving binary without XLA's CPU JIT could not run."""
    global WINOGRAD
    before, WINOGRAD = WINOGRAD, False
    try:
        yield
    finally:
        WINOGRAD = before


def _combine(parts, coefficients):
    """``sum(c * p)`` over the non-zero coefficients, without multiplying by +-1."""
    total = None
    for c, part in zip(coefficients, parts):
        if c == 0:
            continue
        term = part if c == 1 else (-part if c == -1 else part * c)
        total = term if total is None else total + term
    return total


@tf.function(jit_compile=True, autograph=False)
def _kernel_transform(kernel):
    """``[3, 3, C, F]`` -> ``U [16, C, F]``, ``U[4a + b] = (G g G^T)[a, b]``."""
    rows = [_combine([kernel[i] for i in range(3)], _G[a]) for a in range(_TILE)]
    taps = [_combine([row[j] for j in range(3)], _G[b]) for row in rows for b in range(_TILE)]
    return tf.stack(taps)


@tf.function(jit_compile=True, autograph=False)
def _input_transform(padded):
    """``padded [N, 2 th + 2, 2 tw + 2, C]`` -> ``V [16, N * th * tw, C]``, ``V[4k + l, tile]
    = (B^T d B)[k, l]`` of the tile's 4 x 4 input block (tile ``(i, j)``: padded rows
    ``2i .. 2i + 3``, columns ``2j .. 2j + 3``)."""
    shape = tf.shape(padded)
    tiles_h, tiles_w = (shape[1] - 2) // 2, (shape[2] - 2) // 2
    rows = [padded[:, j:j + 2 * tiles_h:_STEP] for j in range(_TILE)]
    out = []
    for k in range(_TILE):
        row = _combine(rows, _BT[k])
        cols = [row[:, :, j:j + 2 * tiles_w:_STEP] for j in range(_TILE)]
        out.extend(_combine(cols, _BT[l]) for l in range(_TILE))
    return tf.reshape(tf.stack(out), [_TILE * _TILE, -1, shape[3]])


@tf.function(jit_compile=True, autograph=False)
def _output_transform(products, bias, tiles):
    """``M [16, N * th * tw, F]`` (+ ``bias [F]``) -> ``[N, 2 th, 2 tw, F]``: each tile's
    2 x 2 output block ``A^T m A``, the blocks put in place. ``tiles``: ``[N, th, tw]``."""
    batch, tiles_h, tiles_w = tiles[0], tiles[1], tiles[2]
    filters = tf.shape(products)[-1]
    m = tf.reshape(products, [_TILE, _TILE, batch, tiles_h, tiles_w, filters])
    rows = [_combine([m[k] for k in range(_TILE)], _AT[a]) for a in range(_STEP)]
    blocks = []
    for a in range(_STEP):
        cols = [rows[a][l] for l in range(_TILE)]
        blocks.append(tf.stack([_combine(cols, _AT[b]) for b in range(_STEP)], axis=3))
    # [N, th, 2 (a), tw, 2 (b), F] -> [N, 2 th, 2 tw, F]
    return tf.reshape(tf.stack(blocks, axis=2), [batch, 2 * tiles_h, 2 * tiles_w, filters]) + bias


def _tile_row_chunks(batch, tiles_h, tiles_w, filters, itemsize):
    """``[(first, end), ...]`` tile rows per chunk, so that each chunk's products ``M`` take
    at most :data:`CHUNK_BYTES` (all sizes known when traced)."""
    per_row = _TILE * _TILE * batch * tiles_w * filters * itemsize
    rows = max(1, CHUNK_BYTES // per_row)
    return [(r, min(r + rows, tiles_h)) for r in range(0, tiles_h, rows)]


def winograd_conv2d(x, kernel, bias=None):
    """``tf.nn.conv2d(x, kernel, 1, "SAME")`` (+ ``bias``) by F(2 x 2, 3 x 3).

    The transformed input and the products are 4 times the input and the output: where the
    shapes are known when traced, the image is done in chunks of tile rows, one after the
    other, each with products of at most :data:`CHUNK_BYTES`.

    Args:
        x: ``[N, H, W, C]`` (channels last; float32, float16 or bfloat16; shapes may be
            dynamic, XLA compiles the transforms once per shape).
        kernel: ``[3, 3, C, F]`` in ``x``'s dtype.
        bias: optional ``[F]``.
    Returns:
        ``[N, H, W, F]`` in ``x``'s dtype.
    """
    if bias is None:
        bias = tf.zeros([tf.shape(kernel)[-1]], x.dtype)
    dynamic = tf.shape(x)
    batch, height, width = (dynamic[i] if x.shape[i] is None else int(x.shape[i])
                            for i in range(3))
    tiles_h, tiles_w = (height + 1) // 2, (width + 1) // 2
    # "same" padding (one zero row/column before), plus what completes the last tile.
    padded = tf.pad(x, [[0, 0], [1, 2 * tiles_h + 1 - height], [1, 2 * tiles_w + 1 - width],
                        [0, 0]])
    u = _kernel_transform(kernel)
    if None in (x.shape[0], x.shape[1], x.shape[2], kernel.shape[3]):
        chunks = [(0, tiles_h)]  # sizes unknown when traced: one chunk
    else:
        chunks = _tile_row_chunks(batch, tiles_h, tiles_w, int(kernel.shape[3]), x.dtype.size)
    outputs = []
    for first, end in chunks:
        # Each chunk starts when the previous one is done, so that one chunk's transformed
        # input and products are alive at a time.
        with tf.control_dependencies(outputs[-1:]):
            part = padded if len(chunks) == 1 else padded[:, 2 * first:2 * end + 2]
            v = _input_transform(part)
        m = tf.matmul(v, u)
        outputs.append(_output_transform(m, bias, tf.stack([batch, end - first, tiles_w])))
    y = outputs[0] if len(outputs) == 1 else tf.concat(outputs, axis=1)
    if not (isinstance(height, int) and height % 2 == 0 and width % 2 == 0):
        y = y[:, :height, :width]
    y.set_shape(x.shape[:3].concatenate(kernel.shape[3:]))
    return y


def winograd_conv2d_numpy(x, kernel, bias=None):
    """NumPy reference of :func:`winograd_conv2d` (float64 arithmetic, tile by tile), for
    tests: ``x [N, H, W, C]``, ``kernel [3, 3, C, F]`` -> ``[N, H, W, F]``."""
    n, h, w, _ = x.shape
    th, tw = -(-h // 2), -(-w // 2)
    xp = np.pad(x.astype(np.float64), [(0, 0), (1, 2 * th + 1 - h), (1, 2 * tw + 1 - w), (0, 0)])
    u = np.einsum("ai,ijcf,bj->abcf", _G, kernel.astype(np.float64), _G)
    y = np.zeros((n, 2 * th, 2 * tw, kernel.shape[-1]))
    for i in range(th):
        for j in range(tw):
            d = xp[:, 2 * i:2 * i + 4, 2 * j:2 * j + 4]                 # [N, 4, 4, C]
            v = np.einsum("ki,nijc,lj->nklc", _BT, d, _BT)
            m = np.einsum("nklc,klcf->nklf", v, u)
            y[:, 2 * i:2 * i + 2, 2 * j:2 * j + 2] = np.einsum("ak,nklf,bl->nabf", _AT, m, _AT)
    y = y[:, :h, :w]
    return y + (0 if bias is None else bias)
