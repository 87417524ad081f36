"""3 x 3 convolutions by Winograd's minimal filtering, F(2 x 2, 3 x 3) and F(4 x 4, 3 x 3).

A stride-1 "same" 3 x 3 convolution computes every 2 x 2 block of output pixels from the 4 x 4
block of input pixels around it. Winograd's algorithm (Lavin & Gray, "Fast Algorithms for
Convolutional Neural Networks", 2016) does it with 16 products per input and output channel
instead of 36::

    Y = A^T [ (G g G^T) * (B^T d B) ] A        (per tile; * is elementwise over the 4 x 4)

so the convolution becomes 16 independent matrix products ``V[k] @ U[k]``, ``[P, C] @ [C, F]``
(P = number of 2 x 2 output tiles), 2.25 times less arithmetic, plus the transforms of the
input (``B^T d B``), the kernel (``G g G^T``) and the output (``A^T m A``), which are additions
and halvings only. The products run on oneDNN's matrix kernels. At inference in float32 the
input and output transforms are mrcnn's native kernels where the library is built
(mrcnn/native/winograd_transforms.cc, :func:`native_transforms`): each tile read once and
written to every plane, one pass over memory each, the padding read as zeros and the output
written cropped, and the kernel transform one matrix product by ``kron(G, G)``; no XLA. Else
(other dtypes, training's compiled form, inside XLA, no library) the transforms are
XLA-compiled (``jit_compile=True``): XLA fuses the strided slices and additions of each, where
as separate TensorFlow ops they cost more than the products saved, but writes its output plane
by plane, reading the input again for each. With the native transforms a 1024 x 1024
detection took 0.88 of the time under ``ONEDNN_MAX_CPU_ISA=AVX2`` and 0.86 natively, and
with them stages 2 and 3 gain too (:data:`MIN_NATIVE_CHANNELS`; docs/benchmarks.md,
"Issue 9, tenth pass").

F(2 x 2, 3 x 3) is exact in real arithmetic; in float32 its results differ from the direct
convolution's by about 1e-6 of the output's range, the size of the difference between two
direct kernels. F(4 x 4, 3 x 3), used at inference, saves more (36 products per 4 x 4 output
pixels against 64) and differs by 1.2-1.7e-5 of the range. F(6 x 6, 3 x 3) (64 per 6 x 6,
about 1e-5 of the range) is there for comparison (``scripts/benchmark.py --winograd-tile 6``):
its larger transforms cost more than the products it saves (a detection 1.03 times slower
under the AVX2 cap, tenth pass). oneDNN has Winograd kernels
of its own only for AVX-512, and TensorFlow's convolutions did not use them (ONEDNN_VERBOSE).

Measured (docs/benchmarks.md, "Issue 9, fifth pass"; one call per shape, 2 threads): on the
3 x 3 convolutions of Mask R-CNN with 256 or more input channels it took 0.55-0.6 of the
direct convolution's time under ``ONEDNN_MAX_CPU_ISA=AVX2`` and 0.6-0.8 natively on AVX-512;
with 64 or 128 input channels (ResNet stages 2 and 3) it was slower natively, so those keep
the direct convolution (:data:`MIN_CHANNELS`).

Training uses it too, in float32, with a gradient by the same algorithm. By default in the
XLA-free form of :mod:`mrcnn.model.winograd_matrix` (the transforms as matrix products,
F(4 x 4, 3 x 3), :data:`TRAINING_OUTPUT_TILE`) over at least :data:`MIN_TRAINING_PIXELS` output
pixels: XLA's CPU compiler costs a process about 300 MiB of resident memory however little it
compiles, more than a training step can spare against torchvision's peak RSS. At 512 x 512
batch 2 it takes the FPN's P2-P4, stage 4's and the mask head's 3 x 3 convolutions: the step
took 2.96-3.13 s against 3.65 s without it natively and 3.56-3.76 against 4.29 s under the AVX2
cap, for about 90 MiB more peak RSS (Zen 4; docs/benchmarks.md, "Issue 9, ninth pass").
The compiled form with its own gradient (:func:`winograd_conv2d`: the output gradient
transformed like the products, ``dM = A dy A^T``, then 16 products for the input gradient,
``dV = dM U^T``, transformed back and overlap-added, and 16 for the kernel's, ``dU = V^T dM``
with V recomputed from x) is kept behind :data:`COMPILED_TRAINING` (off). One 3 x 3
convolution forward and backward (``scripts/benchmark_winograd.py``, 2 threads, "Issue 9, sixth
pass"): the RPN's on P2 at 512 x 512 batch 2 took 0.81 against 1.30 s under the AVX2 cap, 0.71
against 1.13 s natively (Zen 4). At inference F(4 x 4, 3 x 3) (:data:`INFERENCE_OUTPUT_TILE`)
cut that convolution's forward pass at 1024 x 1024 from 0.55 to 0.41 s (direct 0.81) under the
AVX2 cap.

:class:`mrcnn.model.feature_conv.FeatureConv2D` uses it; ``scripts/benchmark.py
--no-winograd`` and ``scripts/benchmark_train.py --no-winograd`` turn it off.
"""
import contextlib
import functools

import numpy as np
import tensorflow as tf

from mrcnn import native

__all__ = ["WINOGRAD", "MIN_CHANNELS", "MIN_NATIVE_CHANNELS", "COMPILED_TRAINING",
           "MATRIX_TRAINING", "MIN_TRAINING_MAP", "INFERENCE_OUTPUT_TILE", "TRAINING_OUTPUT_TILE",
           "MIN_TRAINING_PIXELS", "matrix_training_applies", "direct_convolutions", "output_tile",
           "kernel_transform_product", "native_transforms", "winograd_applies", "winograd_conv2d",
           "winograd_conv2d_numpy"]

#: False: every convolution is direct (read when a model is traced; for comparisons, e.g.
#: ``scripts/benchmark.py --no-winograd``).
WINOGRAD = True

#: Input channels from which the Winograd form is used: the products' inner dimension must be
#: large enough for them to outweigh the transforms (natively on AVX-512, 64 and 128 channels
#: were slower than the direct convolution).
MIN_CHANNELS = 256

#: The same where mrcnn's native transforms run (:func:`native_transforms`: float32, outside
#: XLA): with one pass over memory per transform, stages 2 and 3 of the ResNet (64 and 128
#: channels) gained too: a 1024 x 1024 detection took 0.92 of the time with 256 under the
#: AVX2 cap and 0.95 natively (Zen 4; docs/benchmarks.md, "Issue 9, tenth pass").
MIN_NATIVE_CHANNELS = 64

#: True: training uses the XLA-compiled F(2 x 2, 3 x 3) form with its own gradient
#: (:func:`winograd_conv2d`) over maps of at least :data:`MIN_TRAINING_MAP` pixels. Off by
#: default: XLA's CPU compiler raised the process's peak RSS by about 300 MiB however little it
#: compiled (docs/benchmarks.md, "Issue 9, ninth pass"), and the XLA-free form
#: (:func:`matrix_training_applies`) is as fast on these convolutions.
COMPILED_TRAINING = False

#: Pixels per image (H * W, known when traced, as the batch) from which training uses the
#: compiled form when :data:`COMPILED_TRAINING` is on: P2 and P3 at 512 x 512 (128 x 128 and
#: 64 x 64), no map at 128 x 128 (P2 is 32 x 32).
MIN_TRAINING_MAP = 64 * 64

#: False: training uses no XLA-free Winograd form (for comparisons, ``scripts/benchmark_train.py
#: --no-matrix-winograd``).
MATRIX_TRAINING = True

#: Output tile of the XLA-free training form (:func:`matrix_training_applies`): forward,
#: input and filter gradient by F(4 x 4, 3 x 3), each within about 1e-5 of the direct
#: convolution's range (float32); F(2 x 2, 3 x 3) without XLA saved too little.
TRAINING_OUTPUT_TILE = 4

#: Output pixels (N * H * W, when known when traced) from which training uses the XLA-free
#: form: at 512 x 512 batch 2 the FPN's P2-P4 and stage 4's convolutions (2 x 32 x 32 = 2048),
#: not stage 5's (2 x 16 x 16 over 512 channels), where it was no faster. A batch unknown when
#: traced (the mask head's ROIs) counts as large enough.
MIN_TRAINING_PIXELS = 2048

#: Output tile side of the forward pass outside training: 4 is F(4 x 4, 3 x 3) (36 products
#: per 4 x 4 outputs instead of 144, against F(2 x 2, 3 x 3)'s 16 per 2 x 2; less exact, see
#: :func:`winograd_conv2d`); 2 is F(2 x 2, 3 x 3), which the compiled training form uses; 6 is
#: F(6 x 6, 3 x 3), measured slower (module docstring).
INFERENCE_OUTPUT_TILE = 4


class _Algorithm:
    """F(m x m, 3 x 3): input transform ``B^T [m + 2, m + 2]``, kernel transform
    ``G [m + 2, 3]``, output transform ``A^T [m, m + 2]`` (Lavin & Gray, section 4)."""

    def __init__(self, bt, g, at):
        self.bt, self.g, self.at = (np.array(t, np.float64) for t in (bt, g, at))
        self.tile = self.bt.shape[0]


_ALGORITHMS = {
    2: _Algorithm(bt=[[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
                  g=[[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]],
                  at=[[1, 1, 1, 0], [0, 1, -1, -1]]),
    # Interpolation points 0, 1, -1, 2, -2 and infinity.
    4: _Algorithm(bt=[[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                      [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
                  g=[[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                     [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
                  at=[[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
                      [0, 1, -1, 8, -8, 1]]),
    # Interpolation points 0, 1, -1, 2, -2, 1/2, -1/2 and infinity.
    6: _Algorithm(bt=[[1, 0, -21 / 4, 0, 21 / 4, 0, -1, 0],
                      [0, 1, 1, -17 / 4, -17 / 4, 1, 1, 0],
                      [0, -1, 1, 17 / 4, -17 / 4, -1, 1, 0],
                      [0, 1 / 2, 1 / 4, -5 / 2, -5 / 4, 2, 1, 0],
                      [0, -1 / 2, 1 / 4, 5 / 2, -5 / 4, -2, 1, 0],
                      [0, 2, 4, -5 / 2, -5, 1 / 2, 1, 0],
                      [0, -2, 4, 5 / 2, -5, -1 / 2, 1, 0],
                      [0, -1, 0, 21 / 4, 0, -21 / 4, 0, 1]],
                  g=[[1, 0, 0], [-2 / 9, -2 / 9, -2 / 9], [-2 / 9, 2 / 9, -2 / 9],
                     [1 / 90, 1 / 45, 2 / 45], [1 / 90, -1 / 45, 2 / 45],
                     [32 / 45, 16 / 45, 8 / 45], [32 / 45, -16 / 45, 8 / 45], [0, 0, 1]],
                  at=[[1, 1, 1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 1 / 2, -1 / 2, 0],
                      [0, 1, 1, 4, 4, 1 / 4, 1 / 4, 0], [0, 1, -1, 8, -8, 1 / 8, -1 / 8, 0],
                      [0, 1, 1, 16, 16, 1 / 16, 1 / 16, 0],
                      [0, 1, -1, 32, -32, 1 / 32, -1 / 32, 1]]),
}
# The gradient's transforms (adjoints) are those of F(2 x 2, 3 x 3).
_BT, _G, _AT = _ALGORITHMS[2].bt, _ALGORITHMS[2].g, _ALGORITHMS[2].at
#: Largest products tensor (``16 x tiles x F``) of one chunk of a convolution, in bytes.
CHUNK_BYTES = 64 * 2 ** 20
#: The same for the gradient's chunks (``dM``, ``dV``), which hold about five such tensors
#: at a time against the forward pass's two: with 64 MiB the RPN's gradient on P2 at
#: 512 x 512 batch 2 raised the peak RSS by 340 MiB, with 16 MiB by 140 MiB.
GRADIENT_CHUNK_BYTES = 16 * 2 ** 20

_TILE = 4   # input tile side of F(2 x 2, 3 x 3)
_STEP = 2   # output tile side


def native_transforms(dtype):
    """mrcnn's native transform ops (mrcnn/native) where a forward pass in ``dtype`` traced
    here uses them: float32, the library built and loaded, and not inside an XLA-compiled
    function (XLA cannot compile them; its own transforms run there); else None."""
    if dtype is None or tf.as_dtype(dtype) != tf.float32:
        return None
    ops = native.winograd_ops()
    if ops is None or _in_xla_context():
        return None
    return ops


def _in_xla_context():
    """Whether the graph being traced is (within) an XLA-compiled function."""
    try:
        from tensorflow.python.framework import ops as framework_ops
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # TensorFlow internals moved: assume not
        return False
    return control_flow_util.GraphOrParentsInXlaContext(framework_ops.get_default_graph())


def winograd_applies(input_shape, kernel_size, strides, padding, dilation_rate, groups,
                     data_format, training=False, dtype=None):
    """Whether a convolution over ``input_shape`` (as known when traced) uses the Winograd
    form: stride-1 "same" 3 x 3 convolutions, channels last, with at least
    :data:`MIN_CHANNELS` input channels (known when traced; at inference in a ``dtype`` that
    the native transforms take, :func:`native_transforms`, :data:`MIN_NATIVE_CHANNELS`); in
    training (a truthy ``training``) only with :data:`COMPILED_TRAINING` and over maps of at
    least :data:`MIN_TRAINING_MAP` pixels per image, with the batch known when traced too."""
    if not WINOGRAD or data_format != "channels_last" or groups != 1:
        return False
    if tuple(kernel_size) != (3, 3) or tuple(strides) != (1, 1):
        return False
    if tuple(dilation_rate) != (1, 1) or padding != "same" or len(input_shape) != 4:
        return False
    channels = input_shape[3]
    native_inference = not training and native_transforms(dtype) is not None
    if channels is None or channels < (MIN_NATIVE_CHANNELS if native_inference
                                       else MIN_CHANNELS):
        return False
    if not training:
        return True
    batch, height, width = input_shape[:3]
    return (COMPILED_TRAINING and None not in (batch, height, width)
            and height * width >= MIN_TRAINING_MAP)


def matrix_training_applies(input_shape, kernel_size, strides, padding, dilation_rate,
                                groups, data_format, dtype):
    """Whether a convolution in training takes the XLA-free Winograd form (forward and
    gradients, :func:`winograd_conv2d` with ``compiled=False``): where :func:`winograd_applies`
    holds at inference, in float32 (F(4 x 4, 3 x 3)'s coefficients cost half-precision types
    too much), over at least :data:`MIN_TRAINING_PIXELS` output pixels when known when traced.
    Measured per convolution (forward + both gradients, 2 threads, Zen 4): FPN P2 at 512 x 512
    batch 2 0.32 s against 0.58 s natively, 0.35 against 1.24 s under
    ``ONEDNN_MAX_CPU_ISA=AVX2`` (docs/benchmarks.md, "Issue 9, ninth pass")."""
    if not MATRIX_TRAINING or tf.as_dtype(dtype) != tf.float32:
        return False
    if not winograd_applies(input_shape, kernel_size, strides, padding, dilation_rate, groups,
                            data_format, training=False):
        return False
    batch, height, width = input_shape[:3]
    return None in (batch, height, width) or batch * height * width >= MIN_TRAINING_PIXELS


def output_tile(training):
    """Output tile side of the compiled Winograd form for a call with this ``training`` flag: 2
    in training (the compiled gradient's algorithm), :data:`INFERENCE_OUTPUT_TILE` otherwise."""
    return 2 if training else INFERENCE_OUTPUT_TILE


@contextlib.contextmanager
def direct_convolutions():
    """Within this block, models traced use direct convolutions only. For graphs that leave
    this process (SavedModel export): the transforms are mrcnn's native ops or XLA-compiled
    functions, which a serving binary (without this library or XLA's CPU JIT) could not
    run."""
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


def _per_tile_side(fn):
    """``fn(*tensors, m)`` as one XLA-compiled function per output tile side ``m`` (a
    keyword, 2 by default), so that calls with either m do not retrace each other's."""
    compiled = {m: tf.function(functools.partial(fn, m=m), jit_compile=True, autograph=False,
                               reduce_retracing=True) for m in _ALGORITHMS}

    @functools.wraps(fn)
    def call(*tensors, m=2):
        return compiled[m](*tensors)
    return call


# The transforms below take the output tile side m (2 or 4); t = m + 2 is the input tile
# side, and a tile's input block overlaps its neighbours' by two.
@_per_tile_side
def _kernel_transform(kernel, m):
    """``[3, 3, C, F]`` -> ``U [t * t, C, F]``, ``U[t a + b] = (G g G^T)[a, b]``."""
    g, t = _ALGORITHMS[m].g, _ALGORITHMS[m].tile
    rows = [_combine([kernel[i] for i in range(3)], g[a]) for a in range(t)]
    taps = [_combine([row[j] for j in range(3)], g[b]) for row in rows for b in range(t)]
    return tf.stack(taps)


@_per_tile_side
def _input_transform(padded, m):
    """``padded [N, m th + 2, m tw + 2, C]`` -> ``V [t * t, N * th * tw, C]``, ``V[t k + l,
    tile] = (B^T d B)[k, l]`` of the tile's t x t input block (tile ``(i, j)``: padded rows
    ``m i .. m i + t - 1``, columns likewise)."""
    bt, t = _ALGORITHMS[m].bt, _ALGORITHMS[m].tile
    shape = tf.shape(padded)
    tiles_h, tiles_w = (shape[1] - 2) // m, (shape[2] - 2) // m
    rows = [padded[:, j:j + m * tiles_h:m] for j in range(t)]
    out = []
    for k in range(t):
        row = _combine(rows, bt[k])
        cols = [row[:, :, j:j + m * tiles_w:m] for j in range(t)]
        out.extend(_combine(cols, bt[l]) for l in range(t))
    return tf.reshape(tf.stack(out), [t * t, -1, shape[3]])


@_per_tile_side
def _output_transform(products, bias, tiles, m):
    """``M [t * t, N * th * tw, F]`` (+ ``bias [F]``) -> ``[N, m th, m tw, F]``: each tile's
    m x m output block ``A^T M A``, the blocks put in place. ``tiles``: ``[N, th, tw]``."""
    at, t = _ALGORITHMS[m].at, _ALGORITHMS[m].tile
    batch, tiles_h, tiles_w = tiles[0], tiles[1], tiles[2]
    filters = tf.shape(products)[-1]
    p = tf.reshape(products, [t, t, batch, tiles_h, tiles_w, filters])
    rows = [_combine([p[k] for k in range(t)], at[a]) for a in range(m)]
    blocks = []
    for a in range(m):
        cols = [rows[a][l] for l in range(t)]
        blocks.append(tf.stack([_combine(cols, at[b]) for b in range(m)], axis=3))
    # [N, th, m (a), tw, m (b), F] -> [N, m th, m tw, F]
    return tf.reshape(tf.stack(blocks, axis=2), [batch, m * tiles_h, m * tiles_w, filters]) + bias


@tf.function(jit_compile=True, autograph=False, reduce_retracing=True)
def _kernel_transform_adjoint(du):
    """Gradient of :func:`_kernel_transform`: ``dU [16, C, F]`` -> ``[3, 3, C, F]``,
    ``dg[i, j] = sum_ab G[a, i] G[b, j] dU[4a + b]``."""
    rows = [[_combine([du[_TILE * a + b] for a in range(_TILE)], _G[:, i]) for b in range(_TILE)]
            for i in range(3)]
    return tf.stack([tf.stack([_combine(row, _G[:, j]) for j in range(3)]) for row in rows])


@tf.function(jit_compile=True, autograph=False, reduce_retracing=True)
def _output_transform_adjoint(dy, tiles):
    """Gradient of :func:`_output_transform` (bias aside): ``dy [N, 2 th, 2 tw, F]`` ->
    ``dM [16, N * th * tw, F]``, ``dM[4k + l] = sum_ab A^T[a, k] A^T[b, l] dy[2i + a, 2j + b]``."""
    batch, tiles_h, tiles_w = tiles[0], tiles[1], tiles[2]
    filters = tf.shape(dy)[-1]
    blocks = tf.reshape(dy, [batch, tiles_h, _STEP, tiles_w, _STEP, filters])
    rows = [blocks[:, :, a] for a in range(_STEP)]                 # [N, th, tw, 2 (b), F]
    out = []
    for k in range(_TILE):
        row = _combine(rows, _AT[:, k])
        cols = [row[:, :, :, b] for b in range(_STEP)]
        out.extend(_combine(cols, _AT[:, l]) for l in range(_TILE))
    return tf.reshape(tf.stack(out), [_TILE * _TILE, -1, filters])


@tf.function(jit_compile=True, autograph=False, reduce_retracing=True)
def _input_transform_adjoint(dv, tiles):
    """Gradient of :func:`_input_transform`: ``dV [16, N * th * tw, C]`` -> ``[N, 2 th + 2,
    2 tw + 2, C]``. Each tile's ``B dV B^T`` block is added at its place; neighbouring tiles
    overlap by two rows and columns."""
    batch, tiles_h, tiles_w = tiles[0], tiles[1], tiles[2]
    channels = tf.shape(dv)[-1]
    v = tf.reshape(dv, [_TILE, _TILE, batch, tiles_h, tiles_w, channels])
    block = {}
    for i in range(_TILE):
        row = _combine([v[k] for k in range(_TILE)], _BT[:, i])  # [4 (l), N, th, tw, C]
        for j in range(_TILE):
            block[i, j] = _combine([row[l] for l in range(_TILE)], _BT[:, j])
    # Block pixel (i, j) = (2p + q, 2s + r) of tile (t, u) lands on padded pixel
    # (2 (t + p) + q, 2 (u + s) + r): per parity (q, r) a sum of four shifted tile grids.
    parities = []
    for q in range(_STEP):
        cols = []
        for r in range(_STEP):
            cols.append(tf.add_n([
                tf.pad(block[2 * p + q, 2 * s + r], [[0, 0], [p, 1 - p], [s, 1 - s], [0, 0]])
                for p in range(_STEP) for s in range(_STEP)]))
        parities.append(tf.stack(cols, axis=3))                  # [N, th+1, tw+1, 2 (r), C]
    grid = tf.stack(parities, axis=2)                             # [N, th+1, 2 (q), tw+1, 2, C]
    return tf.reshape(grid, [batch, 2 * tiles_h + 2, 2 * tiles_w + 2, channels])


def _tile_row_chunks(batch, tiles_h, tiles_w, filters, itemsize, chunk_bytes, m=2):
    """``[(first, end), ...]`` tile rows per chunk, so that each chunk's products ``M`` take
    at most ``chunk_bytes`` (all sizes known when traced)."""
    per_row = (m + 2) ** 2 * batch * tiles_w * filters * itemsize
    rows = max(1, chunk_bytes // per_row)
    return [(r, min(r + rows, tiles_h)) for r in range(0, tiles_h, rows)]


class _Tiling:
    """How :func:`winograd_conv2d` cuts ``x [N, H, W, C]`` for ``filters`` outputs into m x m
    output tiles: sizes (Python ints where known when traced, else scalar tensors), tiles and
    chunks of at most ``chunk_bytes`` products."""

    def __init__(self, x, filters, chunk_bytes, m=2):
        self.m = m
        dynamic = tf.shape(x)
        self.batch, self.height, self.width = (
            dynamic[i] if x.shape[i] is None else int(x.shape[i]) for i in range(3))
        self.tiles_h, self.tiles_w = (self.height + m - 1) // m, (self.width + m - 1) // m
        if None in (x.shape[0], x.shape[1], x.shape[2], filters):
            self.chunks = [(0, self.tiles_h)]  # sizes unknown when traced: one chunk
        else:
            # The larger of the products M (forward) and the gradient dV (backward).
            widest = max(int(filters), int(x.shape[3]))
            self.chunks = _tile_row_chunks(self.batch, self.tiles_h, self.tiles_w, widest,
                                           x.dtype.size, chunk_bytes, m)
        self.whole_tiles = (isinstance(self.height, int) and isinstance(self.width, int)
                            and self.height % m == 0 and self.width % m == 0)

    def pad(self, x):
        """"same" padding (one zero row/column before), plus what completes the last tile:
        ``[N, m th + 2, m tw + 2, C]``."""
        m = self.m
        return tf.pad(x, [[0, 0], [1, m * self.tiles_h + 1 - self.height],
                          [1, m * self.tiles_w + 1 - self.width], [0, 0]])

    def rows(self, padded, first, end):
        """Padded input rows of tile rows ``first .. end - 1`` (two shared with each
        neighbouring chunk)."""
        m = self.m
        return padded if len(self.chunks) == 1 else padded[:, m * first:m * end + 2]

    def tiles(self, first, end):
        return tf.stack([self.batch, end - first, self.tiles_w])


def kernel_transform_product(kernel, m):
    """``U [t * t, C, F]`` of ``kernel [3, 3, C, F]`` (known C, F) for F(m x m, 3 x 3) as one
    matrix product, ``kron(G, G) @ kernel [9, C * F]``: no XLA."""
    t, g = m + 2, _ALGORITHMS[m].g
    u = tf.matmul(tf.constant(np.kron(g, g), kernel.dtype), tf.reshape(kernel, [9, -1]))
    return tf.reshape(u, [t * t, int(kernel.shape[2]), int(kernel.shape[3])])


def _native_forward(x, kernel, bias, tiling, ops, defer_kernel_transform):
    """:func:`_winograd_forward` with the input and output transforms of mrcnn's native
    kernels (mrcnn/native/winograd_transforms.cc: one pass over the input and one over the
    output; the padding is read as zeros, the output written cropped) and the kernel transform
    as one matrix product by ``kron(G, G)``: no XLA. float32 only."""
    m = tiling.m
    with tf.control_dependencies([x] if defer_kernel_transform else []):
        u = kernel_transform_product(kernel, m)
    outputs = []
    for first, end in tiling.chunks:
        with tf.control_dependencies(outputs[-1:]):
            v = ops.mrcnn_winograd_input_transform(x, tf.stack([first, end]), m=m)
        rows = tf.minimum(m * end, tiling.height) - m * first
        out_shape = tf.stack([tiling.batch, rows, tiling.width])
        outputs.append(ops.mrcnn_winograd_output_transform(tf.matmul(v, u), bias, out_shape,
                                                           m=m))
    return outputs[0] if len(outputs) == 1 else tf.concat(outputs, axis=1)


def _winograd_forward(x, kernel, bias, tiling, defer_kernel_transform=False):
    m = tiling.m
    ops = native_transforms(x.dtype)
    if ops is not None:
        return _native_forward(x, kernel, bias, tiling, ops, defer_kernel_transform)
    # The kernel transform depends on weights only: the executor runs it at the start of the
    # call and holds it until x exists. At inference that lets it fill idle cores early; in a
    # training step it held the RPN's (36 x 256 x 512 values at F(4 x 4, 3 x 3), once per
    # pyramid level) at the memory peak, 94 MiB at 512 x 512 batch 2: deferred, it runs
    # when x exists.
    with tf.control_dependencies([x] if defer_kernel_transform else []):
        u = _kernel_transform(kernel, m=m)
    padded = tiling.pad(x)
    outputs = []
    for first, end in tiling.chunks:
        # Each chunk starts when the previous one is done, so that one chunk's transformed
        # input and products are alive at a time.
        with tf.control_dependencies(outputs[-1:]):
            v = _input_transform(tiling.rows(padded, first, end), m=m)
        outputs.append(_output_transform(tf.matmul(v, u), bias, tiling.tiles(first, end), m=m))
    y = outputs[0] if len(outputs) == 1 else tf.concat(outputs, axis=1)
    return y if tiling.whole_tiles else y[:, :tiling.height, :tiling.width]


def _winograd_backward(x, kernel, dy, tiling):
    """``(dx, dkernel)`` of :func:`_winograd_forward` by the same tiles: per chunk,
    ``dM = A dy A^T``, ``dV = dM @ U^T`` (-> dx, blocks overlap-added) and ``dU += V^T @ dM``
    (-> dkernel), with ``V`` recomputed from ``x`` (not kept from the forward pass: it is four
    times ``x``)."""
    # What depends on forward tensors only would otherwise run as soon as the forward pass
    # made them, for every layer at once, and be held to the backward pass (+760 MiB peak
    # RSS at 512 x 512 batch 2): tied to dy, it is made when this gradient runs.
    with tf.control_dependencies([dy]):
        u = _kernel_transform(kernel)
        padded = tiling.pad(x)
    if not tiling.whole_tiles:
        dy = tf.pad(dy, [[0, 0], [0, 2 * tiling.tiles_h - tiling.height],
                         [0, 2 * tiling.tiles_w - tiling.width], [0, 0]])
    parts, du = [], None
    for first, end in tiling.chunks:
        with tf.control_dependencies(parts[-1:]):
            dm = _output_transform_adjoint(dy[:, 2 * first:2 * end], tiling.tiles(first, end))
        parts.append(_input_transform_adjoint(tf.matmul(dm, u, transpose_b=True),
                                              tiling.tiles(first, end)))
        with tf.control_dependencies([dm]):
            v = _input_transform(tiling.rows(padded, first, end))
        chunk_du = tf.matmul(v, dm, transpose_a=True)
        du = chunk_du if du is None else du + chunk_du
    # Neighbouring chunks share two padded rows: add those, keep the rest of each part.
    pieces = [parts[0]]
    for part in parts[1:]:
        pieces[-1], shared = pieces[-1][:, :-2], pieces[-1][:, -2:]
        pieces += [shared + part[:, :2], part[:, 2:]]
    dpadded = pieces[0] if len(pieces) == 1 else tf.concat(pieces, axis=1)
    dx = dpadded[:, 1:1 + tiling.height, 1:1 + tiling.width]
    return dx, _kernel_transform_adjoint(du)


def winograd_conv2d(x, kernel, bias=None, output_tile=2, compiled=True,
                    defer_kernel_transform=False):
    """``tf.nn.conv2d(x, kernel, 1, "SAME")`` (+ ``bias``) by F(m x m, 3 x 3), m =
    ``output_tile``, with a gradient by F(2 x 2, 3 x 3) whichever m ran forward.

    F(4 x 4, 3 x 3) does 36 products per 4 x 4 output pixels where F(2 x 2, 3 x 3) does 64,
    but its transforms' coefficients (up to 8 and 1/24) cost precision: in float32 its
    results differ from the direct convolution's by about 1e-5 of the output's range, against
    1e-6 (tests/model/test_winograd.py); for inference only (:data:`INFERENCE_OUTPUT_TILE`).

    The transformed input and the products are (m + 2)^2 / m^2 times the input and the output
    (4 for m = 2, 2.25 for m = 4): where the shapes are known when traced, the image is done
    in chunks of tile rows, one after the other, each with products of at most
    :data:`CHUNK_BYTES` (in the gradient
    :data:`GRADIENT_CHUNK_BYTES`). The gradient keeps only ``x`` and ``kernel`` from the
    forward pass: ``dx`` and ``dkernel`` take 16 matrix products each, like the forward pass,
    over the transformed output gradient and the input transformed again.

    With ``compiled=False`` it runs without XLA, the transforms as matrix products, with a
    gradient by the same form and tile (:mod:`mrcnn.model.winograd_matrix`);
    training uses it (:func:`matrix_training_applies`). XLA's CPU compiler costs a process
    about 300 MiB of resident memory however little it compiles (docs/benchmarks.md, "Issue 9,
    ninth pass").

    Args:
        x: ``[N, H, W, C]`` (channels last; float32, float16 or bfloat16; shapes may be
            dynamic, XLA compiles the transforms once per shape).
        kernel: ``[3, 3, C, F]`` in ``x``'s dtype.
        bias: optional ``[F]``.
        output_tile: 2, 4 or 6.
        compiled: False for the forward pass without XLA (see above).
        defer_kernel_transform: True to transform the kernel only when ``x`` exists (in
            training, where a transform made at the start of the step would be held to the
            memory peak); False lets it run early (inference). The XLA-free form always
            defers.
    Returns:
        ``[N, H, W, F]`` in ``x``'s dtype.
    """
    if output_tile not in _ALGORITHMS:
        raise ValueError(f"output_tile must be one of {sorted(_ALGORITHMS)}, got {output_tile!r}")
    if not compiled:
        from mrcnn.model.winograd_matrix import matrix_winograd_conv2d  # imports this module
        y = matrix_winograd_conv2d(x, kernel, bias, output_tile)
        y.set_shape(x.shape[:3].concatenate(kernel.shape[3:]))
        return y
    tiling = _Tiling(x, kernel.shape[3], CHUNK_BYTES, output_tile)
    with_bias = bias is not None

    @tf.custom_gradient
    def conv(x, kernel, *bias):
        b = bias[0] if with_bias else tf.zeros([tf.shape(kernel)[-1]], x.dtype)
        y = _winograd_forward(x, kernel, b, tiling, defer_kernel_transform)

        def grad(dy):
            gradient_tiling = _Tiling(x, kernel.shape[3], GRADIENT_CHUNK_BYTES)  # m = 2
            dx, dkernel = _winograd_backward(x, kernel, dy, gradient_tiling)
            return [dx, dkernel] + ([tf.reduce_sum(dy, axis=[0, 1, 2])] if with_bias else [])

        return y, grad

    y = conv(x, kernel, *((bias,) if with_bias else ()))
    y.set_shape(x.shape[:3].concatenate(kernel.shape[3:]))
    return y


def winograd_conv2d_numpy(x, kernel, bias=None, output_tile=2):
    """NumPy reference of :func:`winograd_conv2d` (float64 arithmetic, tile by tile), for
    tests: ``x [N, H, W, C]``, ``kernel [3, 3, C, F]`` -> ``[N, H, W, F]``."""
    algorithm, m = _ALGORITHMS[output_tile], output_tile
    t = algorithm.tile
    n, h, w, _ = x.shape
    th, tw = -(-h // m), -(-w // m)
    xp = np.pad(x.astype(np.float64), [(0, 0), (1, m * th + 1 - h), (1, m * tw + 1 - w), (0, 0)])
    u = np.einsum("ai,ijcf,bj->abcf", algorithm.g, kernel.astype(np.float64), algorithm.g)
    y = np.zeros((n, m * th, m * tw, kernel.shape[-1]))
    for i in range(th):
        for j in range(tw):
            d = xp[:, m * i:m * i + t, m * j:m * j + t]                 # [N, t, t, C]
            v = np.einsum("ki,nijc,lj->nklc", algorithm.bt, d, algorithm.bt)
            p = np.einsum("nklc,klcf->nklf", v, u)
            y[:, m * i:m * i + m, m * j:m * j + m] = np.einsum("ak,nklf,bl->nabf", algorithm.at,
                                                               p, algorithm.at)
    y = y[:, :h, :w]
    return y + (0 if bias is None else bias)
