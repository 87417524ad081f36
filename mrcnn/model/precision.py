"""Mixed precision: which layers compute in half precision, loss scaling, the Config switch.

The Keras global dtype policy (``keras.mixed_precision.set_global_policy("mixed_float16")`` or
``"mixed_bfloat16"``, set before the model is built), or ``Config.MIXED_PRECISION``, decides the
compute dtype of the convolutions and dense layers (backbone, FPN, RPN, heads); their weights stay
float32. Everything that handles coordinates or probabilities for the loss subclasses
:class:`Float32Layer` and computes in float32 whatever the policy: anchors, box deltas and their
decoding, NMS (:class:`~mrcnn.model.proposal.ProposalLayer`,
:class:`~mrcnn.model.detection.DetectionLayer`), RoIAlign boxes and sampling
(:class:`~mrcnn.model.roi_align.PyramidROIAlign`), ROI sampling and targets, and the losses.
Keras casts half-precision inputs of a float32 layer to float32.

float16 needs loss scaling (small gradients underflow): :func:`wrap_optimizer` wraps the optimizer
in Keras' dynamic ``LossScaleOptimizer`` when any layer computes in float16. bfloat16 has
float32's exponent range and needs none.
"""
import contextlib
import logging

import keras

__all__ = ["POLICIES", "Float32Layer", "policy_scope", "compute_dtypes", "uses_float16",
           "wrap_optimizer"]

logger = logging.getLogger(__name__)

#: Values of ``Config.MIXED_PRECISION`` (None: leave the Keras global policy as it is).
POLICIES = (None, "float32", "mixed_float16", "mixed_bfloat16")


class Float32Layer(keras.layers.Layer):
    """Base of the geometry and loss layers: float32 compute whatever the global policy.

    Pass ``dtype`` to override (e.g. when deserialising a saved config).
    """

    def __init__(self, *args, dtype=None, **kwargs):
        super().__init__(*args, dtype="float32" if dtype is None else dtype, **kwargs)


@contextlib.contextmanager
def policy_scope(policy):
    """Build layers under the dtype policy ``policy`` (one of :data:`POLICIES`), then restore.

    None leaves the current global policy in force. Layers keep the policy they were built with,
    so the model stays mixed after the scope ends while code built later is unaffected.
    """
    if policy not in POLICIES:
        raise ValueError(f"Config.MIXED_PRECISION must be one of {POLICIES}, got {policy!r}")
    if policy is None:
        yield
        return
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _layers(layer)
        else:
            yield layer


def compute_dtypes(model):
    """``{layer name: compute dtype}`` of every layer (nested models entered)."""
    return {layer.name: layer.compute_dtype for layer in _layers(model)}


def uses_float16(model):
    """Whether any layer of ``model`` computes in float16 (then loss scaling is needed)."""
    return any(dtype == "float16" for dtype in compute_dtypes(model).values())


def wrap_optimizer(optimizer, model):
    """``optimizer``, in a dynamic ``LossScaleOptimizer`` if ``model`` computes in float16."""
    if uses_float16(model) and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        logger.info("float16 layers: dynamic loss scaling (LossScaleOptimizer)")
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
