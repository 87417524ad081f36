"""Convolutions over feature maps whose filter gradient is computed as matrix products.

oneDNN's filter-gradient kernel (``Conv2DBackpropFilter``) for 3 x 3 convolutions over large NHWC
feature maps is slow on AVX2-only CPUs: under ``ONEDNN_MAX_CPU_ISA=AVX2`` it runs its generic
``jit:avx2`` kernel (``ONEDNN_VERBOSE``), 2.07 s for the RPN's 3 x 3 convolution on P2 of a
512 x 512 batch of 2 (77 GFLOP, 37 GFLOP/s) where the forward pass takes a fraction of that, and
these filter gradients were about half of all convolution time of that training step. The same
gradient as matrix products takes 0.74 s there, and is faster on AVX-512 too (0.24 against
0.39 s): ``scripts/benchmark_filter_grad.py``, 2 threads, Zen 5.

The filter gradient of a stride-1 "same" convolution with an odd ``kh x kw`` kernel is, for each
kernel tap ``(i, j)``::

    dK[i, j] = shifted(x, i, j)^T @ dy      # [C, N*H*W] @ [N*H*W, F]

where ``shifted(x, i, j)`` is the zero-padded input cropped at offset ``(i, j)`` and flattened to
``[N*H*W, C]`` (the input pixels that tap multiplied). A 1 x 1 convolution is the single product
``x^T @ dy`` (strided 1 x 1 convolutions keep the convolution's gradient). Same arithmetic as the
convolution's gradient, but run by the GEMM kernels, which reach the CPU's FMA throughput on
every ISA.

:class:`FeatureConv2D` is a ``keras.layers.Conv2D`` (same arguments, weights ``kernel [kh, kw,
C, filters]`` and ``bias``, so classic ``.h5`` files load unchanged) that uses this gradient for
the eligible shapes and the plain convolution's gradient otherwise. Its input gradient is the
convolution's, and so is its forward pass, except that 3 x 3 convolutions over 256 or more
channels run by Winograd's algorithm, forward and backward (mrcnn/model/winograd.py; in
training over large maps only), and other 3 x 3 convolutions over a batch of one image as a
batch of row bands (mrcnn/model/row_bands.py: oneDNN's fast AVX2 kernel needs a batch of two).
Used for the backbone, FPN and RPN convolutions, and for the mask head's 3 x 3 convolutions
with ``gemm_filter_gradient=False``: they get Winograd's algorithm at inference, and over
their 14 x 14 ROI crops the convolution's own filter gradient was as fast or faster on
AVX-512.
"""
import keras
import tensorflow as tf

from mrcnn.model import recomputed_norm
from mrcnn.model.folded_norm import fold_kernel_and_bias, folded_norm
from mrcnn.model.row_bands import (row_band_conv2d, row_bands_apply,
                                   strided_1x1_row_band_conv2d)
from mrcnn.model.winograd import (TRAINING_OUTPUT_TILE, matrix_training_applies, output_tile,
                                  winograd_applies, winograd_conv2d)

__all__ = ["FeatureConv2D", "gemm_filter_gradient"]

_PACKAGE = "mrcnn"

#: Output pixels (N * H' * W') from which the products are used. Smaller maps keep the
#: convolution's own filter gradient: natively it was as fast or faster there (14 x 14 ROI
#: crops, the 128 x 128 training step), and the copies of x cost more than they save.
MIN_GEMM_ROWS = 16384

#: False: every FeatureConv2D uses the convolution's own filter gradient (read when a model's
#: step is traced; for comparisons, e.g. ``scripts/benchmark_train.py --no-gemm-filter-grad``).
GEMM_FILTER_GRADIENT = True


def gemm_filter_gradient(x, dy, kernel_size, strides):
    """Gradient of a convolution's loss with respect to its kernel, as matrix products.

    Args:
        x: ``[N, H, W, C]`` the convolution's input (channels last).
        dy: ``[N, H', W', F]`` the gradient with respect to its output.
        kernel_size: ``(kh, kw)``: ``(1, 1)`` ("same" or "valid" padding alike) or odd sizes
            with "same" padding; :func:`supports` says which (the layer uses stride 1 only;
            the function also computes a strided 1 x 1 gradient).
        strides: ``(sh, sw)``.
    Returns:
        ``[kh, kw, C, F]`` in ``dy``'s dtype.
    """
    kh, kw = kernel_size
    channels = tf.shape(x)[-1]
    filters = tf.shape(dy)[-1]
    flat_dy = tf.reshape(dy, [-1, filters])
    if (kh, kw) == (1, 1):
        sh, sw = strides
        sampled = x[:, ::sh, ::sw, :] if (sh, sw) != (1, 1) else x
        flat_x = tf.reshape(sampled, [-1, channels])
        return tf.reshape(tf.matmul(flat_x, flat_dy, transpose_a=True),
                          [1, 1, channels, filters])
    height, width = tf.shape(x)[1], tf.shape(x)[2]
    # The copies below depend on forward tensors only, so the executor would cut them as soon
    # as the forward pass made x, for every layer at once (+1.2 GB of peak memory at 512 x 512
    # batch 2). Tied to dy they are made when this gradient runs, and each tap's copy waits for
    # the product two taps back: at most two shifted copies of x live at a time.
    with tf.control_dependencies([dy]):
        padded = tf.pad(x, [[0, 0], [kh // 2, kh // 2], [kw // 2, kw // 2], [0, 0]])
    taps = []
    for i in range(kh):
        for j in range(kw):
            with tf.control_dependencies(taps[-2:-1]):
                shifted = padded[:, i:i + height, j:j + width, :]
            taps.append(tf.matmul(tf.reshape(shifted, [-1, channels]), flat_dy,
                                  transpose_a=True))
    return tf.reshape(tf.stack(taps), [kh, kw, channels, filters])


def supports(kernel_size, strides, padding, dilation_rate, groups, data_format):
    """Whether :func:`gemm_filter_gradient` computes this convolution's filter gradient."""
    if data_format != "channels_last" or tuple(dilation_rate) != (1, 1) or groups != 1:
        return False
    kh, kw = kernel_size
    if tuple(strides) != (1, 1):
        # A strided 1 x 1 would need a strided copy of x, which cost more than the product
        # saved (scripts/benchmark_filter_grad.py: 0.020 against 0.006 s).
        return False
    if (kh, kw) == (1, 1):
        return padding in ("same", "valid")
    return padding == "same" and kh % 2 == 1 and kw % 2 == 1


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FeatureConv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` computed, where each applies (decided when traced):

    1. by Winograd's algorithm, forward and gradient
       (:func:`mrcnn.model.winograd.winograd_applies`: 3 x 3 over 256 or more channels; in
       training over large maps only);
    2. else with :func:`gemm_filter_gradient` as its filter gradient (see the module
       docstring) where the output has at least ``MIN_GEMM_ROWS`` pixels (decided per call,
       shapes may be dynamic), its forward pass over a single image in row bands
       (:func:`mrcnn.model.row_bands.row_bands_apply`);
    3. else as the convolution.

    Identical outputs and gradients (to float rounding), weights and config.

    ``gemm_filter_gradient=False`` keeps the convolution's own filter gradient for every shape
    (the mask head's many small ROI crops, where the shifted copies of x cost more than the
    products save, whatever the pixel count); the forward pass stays as above."""

    def __init__(self, *args, gemm_filter_gradient=True, **kwargs):
        super().__init__(*args, **kwargs)
        self.gemm_filter_gradient = bool(gemm_filter_gradient)

    def get_config(self):
        config = super().get_config()
        config["gemm_filter_gradient"] = self.gemm_filter_gradient
        return config

    def _gemm_gradient_applies(self):
        return GEMM_FILTER_GRADIENT and self.gemm_filter_gradient and supports(
            self.kernel_size, self.strides, self.padding, self.dilation_rate, self.groups,
            self.data_format)

    def _conv_args(self, x):
        return (tuple(x.shape), self.kernel_size, self.strides, self.padding,
                self.dilation_rate, self.groups, self.data_format)

    def _forward(self, x, kernel, bias):
        """The direct convolution's output (+ ``bias``, may be None), in row bands where
        they apply to ``x``'s traced shape (module docstring)."""
        if row_bands_apply(*self._conv_args(x)):
            if tuple(self.kernel_size) == (1, 1):
                return strided_1x1_row_band_conv2d(x, kernel, self.strides, bias)
            return row_band_conv2d(x, kernel, bias)
        y = tf.nn.conv2d(x, kernel, [1, *self.strides, 1], self.padding.upper())
        # The bias as an AddV2, not a BiasAdd: Grappler fuses Conv2D + BiasAdd + Add (a
        # residual or FPN sum that follows) into one oneDNN convolution with a "sum" post-op,
        # which oneDNN's gemm convolution (batch-1 1 x 1 convolutions under the AVX2 cap) ran
        # 2-4x slower than the convolution and the sum apart: 1 x [256, 256, 64] -> 256 plus a
        # computed addend, 2 threads, Emerald Rapids, ONEDNN_MAX_CPU_ISA=AVX2: 111 ms against
        # 50 (natively 32 against 37). In a whole detection the difference was within the
        # noise on that host (docs/benchmarks.md, "Issue 9, seventh pass"). Conv2D + AddV2
        # + Relu still fuses as bias and ReLU (same time as BiasAdd).
        return y if bias is None else y + bias

    def forward_only(self, inputs, kernel, bias, training=None):
        """The convolution of ``inputs`` with ``kernel`` (+ ``bias``, may be None), no
        activation, in the form this layer's call with this ``training`` flag would take for
        its forward pass (Winograd's where it applies, in training without XLA), for callers
        that compute the gradient themselves (mrcnn/model/rpn_gradient.py). ``kernel`` and
        ``bias`` in ``inputs``'s dtype."""
        outputs = self._winograd_call(inputs, kernel, bias, training)
        return outputs if outputs is not None else self._forward(inputs, kernel, bias)

    def _winograd_call(self, inputs, kernel, bias, training):
        """The convolution by Winograd's algorithm, forward and gradient, in the form a call
        over ``inputs`` with this ``training`` flag takes (:meth:`_winograd_form`); None where
        the convolution is direct."""
        form = self._winograd_form(inputs, training)
        if form is None:
            return None
        return winograd_conv2d(inputs, kernel, bias, output_tile=form[0], compiled=form[1],
                               defer_kernel_transform=bool(training))

    def _winograd_form(self, inputs, training):
        """``(output_tile, compiled)`` of the Winograd form a call over ``inputs`` with this
        ``training`` flag takes (mrcnn/model/winograd.py), or None for a direct convolution:
        the compiled form at inference (and in training if switched on), the XLA-free one in
        training where it applies."""
        args = self._conv_args(inputs)
        if winograd_applies(*args, training=training, dtype=inputs.dtype):
            return output_tile(training), True
        if training and matrix_training_applies(*args, inputs.dtype):
            return TRAINING_OUTPUT_TILE, False
        return None

    def call(self, inputs, training=None):
        kernel, bias = self.kernel, self.bias if self.use_bias else None
        norm = folded_norm(self, training)
        if norm is not None:
            # The BatchNorm layer after this one, folded in (mrcnn/model/folded_norm.py).
            kernel, bias = fold_kernel_and_bias(kernel, bias, norm)
        kernel = tf.cast(kernel, inputs.dtype)
        bias = tf.cast(bias, inputs.dtype) if bias is not None else None
        # Forward and gradient by Winograd's algorithm where it applies (mrcnn/model/winograd.py).
        outputs = self._winograd_call(inputs, kernel, bias, training)
        if outputs is None:
            if self._gemm_gradient_applies():
                outputs = self._with_gemm_filter_gradient(inputs, kernel, bias)
            else:
                # Differentiated through whichever form _forward took.
                outputs = self._forward(inputs, kernel, bias)
        outputs = self.activation(outputs) if self.activation is not None else outputs
        if training and norm is None and recomputed_norm.recompute_applies(self, training):
            # The linked BatchNorm may recompute this output in its gradient instead of
            # keeping it (mrcnn/model/recomputed_norm.py).
            recomputed_norm.record_convolution(self, inputs, kernel, bias, outputs)
        return outputs

    def _with_gemm_filter_gradient(self, inputs, kernel, bias):
        """:meth:`_forward`, with the convolution's input gradient and
        :func:`gemm_filter_gradient` (or the convolution's below ``MIN_GEMM_ROWS``)."""
        strides = [1, *self.strides, 1]
        padding = self.padding.upper()
        kernel_size = tuple(self.kernel_size)
        use_bias = bias is not None

        @tf.custom_gradient
        def conv_bias(x, kernel, *bias):
            # Only the forward pass takes another form: the gradient below is the
            # convolution's own (input) and the products' (filter) whichever ran.
            y = self._forward(x, kernel, bias[0] if use_bias else None)

            def grad(dy):
                dx = tf.raw_ops.Conv2DBackpropInput(
                    input_sizes=tf.shape(x), filter=kernel, out_backprop=dy, strides=strides,
                    padding=padding)

                def by_gemm():
                    return gemm_filter_gradient(x, dy, kernel_size, self.strides)

                def by_convolution():
                    return tf.raw_ops.Conv2DBackpropFilter(
                        input=x, filter_sizes=tf.shape(kernel), out_backprop=dy,
                        strides=strides, padding=padding)

                static = dy.shape[:3]
                if static.is_fully_defined():  # decided when traced
                    rows = static.num_elements()
                    dkernel = by_gemm() if rows >= MIN_GEMM_ROWS else by_convolution()
                else:
                    rows = tf.reduce_prod(tf.shape(dy)[:3])
                    dkernel = tf.cond(rows >= MIN_GEMM_ROWS, by_gemm, by_convolution)
                grads = [dx, tf.cast(dkernel, kernel.dtype)]
                if use_bias:
                    grads.append(tf.reduce_sum(dy, axis=[0, 1, 2]))
                return grads

            return y, grad

        return conv_bias(inputs, kernel, *((bias,) if use_bias else ()))
