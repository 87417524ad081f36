"""BatchNorm's input recomputed in the backward pass from the convolution before it.

In training with batch statistics, a BatchNorm layer's gradient needs the layer's input ``x``
(the output of the convolution before it): ``FusedBatchNormGradV3`` normalises it again. Kept
from the forward pass until the backward pass reaches the layer, these inputs are about half of
a ResNet's training activations: at 512 x 512 batch 2 the stage 2-3 convolution outputs alone
are about 500 MiB (32 and 16 MiB each), all alive when the backward pass starts, which is when
a Mask R-CNN step's memory peaks.

The convolution's own gradient keeps the convolution's input (its filter gradient needs it), so
the BatchNorm's input can be computed again from that input when the BatchNorm's gradient runs,
for the price of the convolution's forward pass. This module arranges it where that price is
small against the memory: at most :data:`MAX_RECOMPUTE_MACS` multiply-adds per recomputed value
(kernel height x width x input channels), i.e. the 1 x 1 convolutions over up to 256 channels
and the 7 x 7 stem over 3 (147). In ResNet-50 at 512 x 512 batch 2 these are the stem, stage
2's convolutions but its 3 x 3s, stage 3's ``branch2c``, ``branch1`` and first ``branch2a``,
and stage 4's ``branch2c``: about 320 MiB of activations for about 11 GMAC more per step
(docs/benchmarks.md, "Issue 9, ninth pass").

How: a :class:`~mrcnn.model.feature_conv.FeatureConv2D` linked to its BatchNorm
(:func:`mrcnn.model.folded_norm.link`, made by the model builder) records, in a training call,
its input, kernel, bias and output (:func:`record_convolution`); the BatchNorm, called on that
very output tensor, takes :func:`recompute_function` and hands it to
:func:`mrcnn.model.batch_norm_grad.normalize_with_batch_statistics`, whose gradient calls it
(ordered after the incoming gradient, so that the executor does not run it during the forward
pass) instead of holding ``x``. The values are the same: the same convolution of the same
tensors. Anything else (a BatchNorm called on another tensor, a convolution with an
activation, a frozen convolution, a costlier kernel) keeps ``x`` as before.
"""
import keras

from mrcnn.model.folded_norm import uses_moving_statistics

__all__ = ["RECOMPUTE_NORM_INPUT", "MAX_RECOMPUTE_MACS", "recompute_applies",
           "record_convolution", "recompute_function"]

#: False: every BatchNorm keeps its input for its gradient (read when a model's step is traced;
#: for comparisons, e.g. ``scripts/benchmark_train.py --keep-norm-inputs``).
RECOMPUTE_NORM_INPUT = True

#: Largest recompute cost, in multiply-adds per recomputed value (kh * kw * input channels).
MAX_RECOMPUTE_MACS = 256

_SOURCE = "_recomputable_output"


def _linked_norm(conv):
    ref = getattr(conv, "_folded_norm_ref", None)
    return ref() if ref is not None else None


def recompute_applies(conv, training):
    """Whether ``conv`` (a built FeatureConv2D) records a call with this ``training`` flag for
    its linked BatchNorm: linked to one that normalises with batch statistics in that call,
    trainable (so that its filter gradient keeps its input anyway), no activation (its output
    is what the BatchNorm normalises) and at most :data:`MAX_RECOMPUTE_MACS` multiply-adds
    per output value."""
    norm = _linked_norm(conv)
    if (not RECOMPUTE_NORM_INPUT or norm is None or not conv.trainable
            or uses_moving_statistics(norm, training)):
        return False
    if conv.activation is not keras.activations.linear:
        return False
    kh, kw, channels = conv.kernel.shape[:3]
    return kh * kw * channels <= MAX_RECOMPUTE_MACS


def record_convolution(conv, inputs, kernel, bias, outputs):
    """Remember that ``outputs`` is ``conv._forward(inputs, kernel, bias)`` (the call's traced
    tensors), for the BatchNorm called on ``outputs`` next."""
    setattr(conv, _SOURCE, (inputs, kernel, bias, outputs))


def recompute_function(norm, inputs):
    """A function of no arguments that computes ``inputs`` (the BatchNorm ``norm``'s input)
    again from the convolution's input, if ``inputs`` is the recorded output of the convolution
    linked to ``norm``; else None. The record is taken either way: it holds traced tensors,
    which must not outlive the call."""
    ref = getattr(norm, "_linked_conv_ref", None)
    conv = ref() if ref is not None else None
    source = getattr(conv, _SOURCE, None)
    if source is None:
        return None
    setattr(conv, _SOURCE, None)
    if source[3] is not inputs:
        return None
    conv_input, kernel, bias, _ = source
    return lambda: conv._forward(conv_input, kernel, bias)
