"""A single image's stride-1 convolution, run as a batch of row bands.

oneDNN (TensorFlow's CPU convolutions) has no fast AVX2 kernel for a 3 x 3 convolution over a
batch of *one* image: on AVX2-only CPUs (here ``ONEDNN_MAX_CPU_ISA=AVX2`` on an AVX-512 host,
``ONEDNN_VERBOSE=1``) every such convolution runs ``x64:gemm:jit`` (im2col + GEMM), while the
same convolution over a batch of two runs ``brg_conv_fwd:avx2``. That is what inference sees:
``detect()`` runs one image at a time, so every backbone, FPN and RPN 3 x 3 convolution had
batch 1 (about 5 of the 6.5 s of oneDNN time of a 1024 x 1024 detection under the AVX2 cap).
With AVX-512, oneDNN's brgemm kernels take batch 1 and nothing changes.

:func:`row_band_conv2d` cuts each image into ``bands`` bands of rows, each with the ``kh // 2``
rows of its neighbours that the kernel reaches (the halo), stacks the bands along the batch
axis and convolves them with "valid" padding along the rows ("same" along the columns). The
output bands, ``[N * bands, T, W, F]`` in image-major order, are the output image's rows in
order, so one reshape (no copy) puts them back. The arithmetic is the convolution's: no output
pixel is computed twice; only the input is copied once, with ``2 * (kh // 2)`` halo rows per
band. The results equal ``tf.nn.conv2d(..., padding="SAME")`` to float rounding (the kernels
sum in another order).

Strided 1 x 1 convolutions over one image (ResNet's ``res*a_branch1`` and ``branch2a``, stride
2) are slow under the AVX2 cap too (``res4a_branch2a`` at 1024 x 1024: 48 GFLOP/s, 0.023 s):
as two bands they need no halo and no copy, one reshape each way (0.007 s; natively the same
time). Stride-1 1 x 1 convolutions gained nothing and stay as they are.

``scripts/benchmark.py`` measures it: ``--no-row-bands`` turns it off (:data:`ROW_BANDS`).
"""
import tensorflow as tf

__all__ = ["ROW_BANDS", "row_band_conv2d", "row_bands_apply", "strided_1x1_row_band_conv2d"]

#: False: every convolution runs over the image as it is (read when a model is traced; for
#: comparisons, e.g. ``scripts/benchmark.py --no-row-bands``).
ROW_BANDS = True

#: Bands per image. Two already give oneDNN the batch its brgemm kernel needs; 4 and 8 were
#: no faster on the shapes of a 1024 x 1024 detection (AVX2 cap, 2 threads and 1).
BANDS = 2

#: Images with fewer rows (when the height is known when traced) keep the plain convolution:
#: a band would be mostly halo.
MIN_ROWS = 8


def row_bands_apply(input_shape, kernel_size, strides, padding, dilation_rate, groups,
                    data_format):
    """Whether a convolution over ``input_shape`` (as known when traced) runs in row bands.

    Stride-1 "same" convolutions with odd kernels larger than 1 x 1, and 1 x 1 convolutions
    with equal strides larger than 1 over a height (known when traced) that the bands divide
    into whole strides; channels last, over a batch known to be one image: for stride-1 1 x 1
    convolutions and for batches of two or more, oneDNN's fast kernels apply anyway.
    """
    if not ROW_BANDS or data_format != "channels_last" or groups != 1:
        return False
    if tuple(dilation_rate) != (1, 1) or len(input_shape) != 4 or input_shape[0] != 1:
        return False
    if tuple(kernel_size) == (1, 1) and tuple(strides) != (1, 1):
        sh, sw = strides
        height = input_shape[1]
        # Equal strides only: oneDNN's filter gradient of a (2, 1)-strided 1 x 1 convolution
        # failed now and then ("could not create a primitive descriptor for the reorder").
        return (sh == sw and padding in ("same", "valid") and height is not None
                and height % (BANDS * sh) == 0 and height >= MIN_ROWS)
    if tuple(strides) != (1, 1) or padding != "same":
        return False
    kh, kw = kernel_size
    if kh % 2 == 0 or kw % 2 == 0 or (kh, kw) == (1, 1):
        return False
    height = input_shape[1]
    return height is None or height >= MIN_ROWS


def strided_1x1_row_band_conv2d(x, kernel, strides, bias=None, bands=BANDS):
    """``tf.nn.conv2d(x, kernel, strides, "VALID")`` (+ ``bias``) of a 1 x 1 kernel, over
    ``bands`` row bands per image.

    Args:
        x: ``[N, H, W, C]`` with ``H`` a multiple of ``bands * strides[0]`` (static).
        kernel: ``[1, 1, C, F]``.
        strides: ``(sh, sw)``.
        bias: optional ``[F]``.
    Returns:
        ``[N, H / sh, ceil(W / sw), F]`` in ``x``'s dtype (1 x 1: "same" and "valid" agree).
    """
    sh, sw = strides
    height, width, channels = int(x.shape[1]), x.shape[2], x.shape[3]
    dynamic = tf.shape(x)
    batch = dynamic[0] if x.shape[0] is None else int(x.shape[0])
    width = dynamic[2] if width is None else int(width)
    # Each band starts on a row the stride samples (H / bands is a multiple of sh), so the
    # bands' outputs are the image's output rows in order.
    y = tf.nn.conv2d(tf.reshape(x, [batch * bands, height // bands, width, channels]),
                     kernel, strides=[1, sh, sw, 1], padding="VALID")
    if bias is not None:
        y = tf.nn.bias_add(y, bias)
    y = tf.reshape(y, [batch, height // sh, tf.shape(y)[2], int(kernel.shape[3])])
    y.set_shape([x.shape[0], height // sh, None if x.shape[2] is None else -(-x.shape[2] // sw),
                 kernel.shape[3]])
    return y


def row_band_conv2d(x, kernel, bias=None, bands=BANDS):
    """``tf.nn.conv2d(x, kernel, 1, "SAME")`` (+ ``bias``) computed over ``bands`` row bands
    per image.

    Args:
        x: ``[N, H, W, C]`` images (channels last; any float dtype, shapes may be dynamic).
        kernel: ``[kh, kw, C, F]`` with odd ``kh`` and ``kw``.
        bias: optional ``[F]``, added to the bands' output before it is reshaped back, so
            that TensorFlow fuses it into the convolution (it does not fuse across a reshape).
        bands: bands per image; the last band is zero-padded at the bottom when ``H`` is not
            a multiple of it, and those rows are cut from the output.
    Returns:
        ``[N, H, W, F]`` in ``x``'s dtype, the stride-1 "same" convolution of ``x``.
    """
    kh, kw = int(kernel.shape[0]), int(kernel.shape[1])
    halo_h, halo_w = kh // 2, kw // 2
    dynamic = tf.shape(x)
    # Static sizes where known (so the band arithmetic is done when traced), else dynamic.
    batch, height, width, channels = (
        dynamic[i] if x.shape[i] is None else int(x.shape[i]) for i in range(4))
    band_rows = (height + bands - 1) // bands
    # Zero rows above and below, as "same" padding has them, plus the rows that make the
    # height a multiple of `bands`.
    extra = band_rows * bands - height
    padded = tf.pad(x, [[0, 0], [halo_h, halo_h + extra], [0, 0], [0, 0]])
    # Image-major, band-minor: output band b of image n is rows [b*T, (b+1)*T) of image n.
    stacked = tf.stack(
        [padded[:, b * band_rows:(b + 1) * band_rows + 2 * halo_h] for b in range(bands)],
        axis=1)
    stacked = tf.reshape(stacked, [batch * bands, band_rows + 2 * halo_h, width, channels])
    y = tf.nn.conv2d(stacked, kernel, strides=1,
                     padding=[[0, 0], [0, 0], [halo_w, halo_w], [0, 0]])
    if bias is not None:
        y = tf.nn.bias_add(y, bias)
    y = tf.reshape(y, [batch, band_rows * bands, width, int(kernel.shape[3])])
    if not (isinstance(extra, int) and extra == 0):
        y = y[:, :height]
    y.set_shape(x.shape[:3].concatenate([kernel.shape[3]]))
    return y
