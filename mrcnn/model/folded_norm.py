"""BatchNorm folded into the convolution before it, wherever it uses its moving statistics.

A BatchNorm layer that normalises with its moving statistics (at inference always; in training
with the classic ``TRAIN_BN = False``, or when the layer is frozen) is an affine map per channel,
``y = x * s + t`` with ``s = gamma / sqrt(moving_variance + epsilon)`` and
``t = beta - moving_mean * s``. After a convolution ``x = conv(u, K) + b`` it is the convolution

    y = conv(u, K * s) + (b * s + t)        # s scales K's output-channel axis

so the linked convolution (:class:`~mrcnn.model.feature_conv.FeatureConv2D`) can compute ``y``
with the folded kernel and bias, and the BatchNorm layer pass it through: no multiply and add
over every normalised activation. The fold's gradient reaches kernel, bias, gamma and beta
through ``K * s`` and ``b * s + t`` (small tensors).

**Off by default** (:data:`FOLD_BATCH_NORM`): measured on an Intel Emerald Rapids host
(docs/benchmarks.md, "Issue 9, seventh pass"), it made nothing faster: a 1024 x 1024
detection took the same time natively and under ``ONEDNN_MAX_CPU_ISA=AVX2`` (the elementwise
passes it saves, about 0.12 s of op time, came back as slower fused convolutions), its peak
RSS rose by about 150 MiB under the AVX2 cap (every layer's folded kernel is computed from
weights alone, so the executor runs them all early and holds them), and a frozen-BN training
step at 512 x 512 batch 2 took the same time with about 100 MiB more. It stays for hosts and
graphs where it may pay (``--fold-bn`` in the benchmark scripts measures it).

Nothing changes in the weights or their names: the kernel and bias stay the convolution's, gamma,
beta and the moving statistics the BatchNorm layer's, so classic ``.h5`` files load unchanged.
What changes is what the two layers' outputs mean when folded: the convolution's output is
already normalised and the BatchNorm layer's equals it (``docs/classic-differences.md``). The
link is made by the model builder (:func:`conv_then_norm`) and is not part of either layer's
config: a model rebuilt from its config runs the two layers unfolded (same results).

Set :data:`FOLD_BATCH_NORM` to True before a model is traced to fold.
"""
import weakref

import tensorflow as tf

__all__ = ["FOLD_BATCH_NORM", "conv_then_norm", "link", "folded_norm", "fold_kernel_and_bias",
           "uses_moving_statistics"]

#: True: linked BatchNorm layers are folded into their convolutions where they use their
#: moving statistics (read when a model is traced). Off: measured no faster (module docstring).
FOLD_BATCH_NORM = False


def link(conv, norm):
    """Make ``norm`` (a :class:`~mrcnn.model.layers.BatchNorm` called on ``conv``'s output
    only) foldable into ``conv`` (a FeatureConv2D), and its input recomputable from ``conv``'s
    in training (:mod:`mrcnn.model.recomputed_norm`). Each layer holds a weak reference to the
    other, so that Keras does not track either as a sublayer of the other (their weights would
    be listed twice)."""
    conv._folded_norm_ref = weakref.ref(norm)
    norm._folded_into_conv = True
    norm._linked_conv_ref = weakref.ref(conv)


def conv_then_norm(x, conv, norm):
    """``norm(conv(x))`` with ``norm`` linked to ``conv`` (:func:`link`)."""
    link(conv, norm)
    return norm(conv(x))


def uses_moving_statistics(norm, training):
    """Whether BatchNorm layer ``norm`` normalises with its moving statistics in a call with
    this ``training`` flag: Keras' rule (batch statistics only when training and trainable) and
    the classic ``train_bn=False`` (always the moving statistics). A symbolic ``training`` counts
    as training."""
    if getattr(norm, "train_bn", None) is False or not norm.trainable:
        return True
    if training is None:
        return True
    return not tf.is_tensor(training) and not bool(training)


def folded_norm(conv, training):
    """The BatchNorm layer linked to ``conv`` if it is folded in a call with this ``training``
    flag, else None."""
    ref = getattr(conv, "_folded_norm_ref", None)
    norm = ref() if ref is not None else None
    if not FOLD_BATCH_NORM or norm is None or not uses_moving_statistics(norm, training):
        return None
    return norm


def passes_through(norm, training):
    """Whether ``norm``'s call returns its input: it is linked and folded (see
    :func:`folded_norm`)."""
    return (FOLD_BATCH_NORM and getattr(norm, "_folded_into_conv", False)
            and uses_moving_statistics(norm, training))


def fold_kernel_and_bias(kernel, bias, norm):
    """The kernel and bias of the convolution followed by BatchNorm ``norm`` (moving statistics).

    Args:
        kernel: ``[kh, kw, C, F]`` float variable or tensor.
        bias: ``[F]`` or None (a convolution without bias).
        norm: a Keras BatchNormalization over the last axis with F channels; gamma and beta may
            be absent (``scale=False``, ``center=False``).
    Returns:
        ``(kernel * s, b * s + t)`` in the BatchNorm variables' dtype (float32 under mixed
        precision too); the caller casts them to the compute dtype.
    """
    dtype = norm.moving_variance.dtype
    scale = tf.math.rsqrt(tf.cast(norm.moving_variance, dtype) + norm.epsilon)
    if norm.gamma is not None:
        scale = scale * tf.cast(norm.gamma, dtype)
    bias = tf.zeros_like(scale) if bias is None else tf.cast(bias, dtype)
    folded_bias = (bias - tf.cast(norm.moving_mean, dtype)) * scale
    if norm.beta is not None:
        folded_bias = folded_bias + tf.cast(norm.beta, dtype)
    return tf.cast(kernel, dtype) * scale, folded_bias
