"""BatchNorm with batch statistics (training mode) whose backward pass is one fused op.

Keras 3's ``BatchNormalization`` normalises in training with ``tf.nn.moments`` and
``tf.nn.batch_normalization``: a mean, a squared difference, a second mean, a multiply and an
add. Their automatic gradient is a dozen more elementwise ops and reductions (``Mul``, ``Sum``,
``Tile``, ``SquaredDifference``' gradient...), each one pass over the activation. In a training
step of ResNet-50 + FPN they added up to about a sixth of the op time.

:func:`normalize_with_batch_statistics` keeps that forward pass (same ops, same results) and
gives it the gradient of ``FusedBatchNormGradV3`` (training mode), which computes ``dx``,
``dgamma`` and ``dbeta`` from ``x``, the batch mean and the (biased) batch variance in two
passes: the same formula, ``dx = gamma / sigma * (dy - mean(dy) - x_hat * mean(dy * x_hat))``,
one kernel. Why not the fused forward op as well: under ``ONEDNN_MAX_CPU_ISA=AVX2`` oneDNN's
batch-normalisation forward kernel is about three times slower than the composite ops (2 x 128 x
128 x 256: 38 against 14 ms), while its backward kernel is fast on both paths. One BatchNorm,
forward and backward, 2 threads, Intel Emerald Rapids (docs/benchmarks.md, "Issue 9, eighth
pass"): 2 x 128 x 128 x 256 took 31 ms against Keras' 48 natively and 31 against 47 under the
AVX2 cap; 50 ROIs of 14 x 14 x 256 7.0 against 9.5 and 7.2 against 9.8 ms.

What the gradient keeps from the forward pass is what the composite's kept: ``x``, the mean and
variance (``[C]``) and gamma; or, with ``recompute_x``, not ``x`` but what computes it again.
Inputs of any rank >= 2 are normalised over all axes but the last (the fused op wants 4-D: the
gradient reshapes to ``[N, 1, 1, C]``, which changes nothing in a per-channel reduction).
"""
import tensorflow as tf

__all__ = ["normalize_with_batch_statistics"]


def _as_4d(t, channels):
    return t if len(t.shape) == 4 else tf.reshape(t, [-1, 1, 1, channels])


def normalize_with_batch_statistics(x, gamma, beta, epsilon, recompute_x=None):
    """Batch normalisation over all axes but the last, with the batch's own statistics.

    Args:
        x: float32 ``[..., C]`` (rank >= 2, C known when traced).
        gamma, beta: float32 ``[C]`` or None (``scale=False`` / ``center=False``).
        epsilon: the variance epsilon.
        recompute_x: None, or a function of no arguments that computes ``x`` again; the
            gradient then calls it (after the incoming gradient exists) instead of keeping
            ``x`` from the forward pass (mrcnn/model/recomputed_norm.py).
    Returns:
        ``(y, mean, variance)``: ``y`` like ``x``, ``(x - mean) / sqrt(variance + epsilon) *
        gamma + beta``; ``mean`` and the biased ``variance`` ``[C]`` (Keras 3 updates its
        moving statistics with these). Gradients reach ``x``, ``gamma`` and ``beta`` through
        ``FusedBatchNormGradV3``; ``mean`` and ``variance`` carry none of their own (use them
        for the moving averages, not in a loss).
    """
    if len(x.shape) < 2 or x.shape[-1] is None:
        raise ValueError(f"normalize_with_batch_statistics: x must be [..., C] with C known, "
                         f"got shape {x.shape}")
    channels = int(x.shape[-1])
    axes = list(range(len(x.shape) - 1))
    mean, variance = tf.nn.moments(x, axes)
    mean, variance = tf.stop_gradient(mean), tf.stop_gradient(variance)
    with_gamma, with_beta = gamma is not None, beta is not None
    scale = gamma if with_gamma else tf.ones([channels], x.dtype)
    offset = beta if with_beta else tf.zeros([channels], x.dtype)

    @tf.custom_gradient
    def normalize(x, scale, offset):
        y = tf.nn.batch_normalization(x, mean, variance, offset, scale, epsilon)

        def grad(dy):
            if recompute_x is None:
                x_again = x
            else:
                # Ordered after dy: otherwise the executor would run it as soon as its inputs
                # exist, in the forward pass, and hold its result as long as x was held.
                with tf.control_dependencies([dy]):
                    x_again = recompute_x()
            dx, dscale, doffset, _, _ = tf.raw_ops.FusedBatchNormGradV3(
                y_backprop=_as_4d(dy, channels), x=_as_4d(x_again, channels), scale=scale,
                reserve_space_1=mean, reserve_space_2=variance,
                reserve_space_3=tf.zeros([0], x.dtype), epsilon=epsilon, is_training=True)
            # dy has x's shape: reading it from x would hold x for this gradient.
            return (tf.reshape(dx, tf.shape(dy)), dscale if with_gamma else None,
                    doffset if with_beta else None)

        return y, grad

    return normalize(x, scale, offset), mean, variance
