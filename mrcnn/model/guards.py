"""Checks around ``train()``: its arguments before the graph, and finite losses while it runs.

- :func:`check_train_arguments`: ``learning_rate``, ``epochs`` and ``layers`` of
  ``MaskRCNN.train``, with ``layers`` (a preset or a regex) required to match at least one layer
  that owns weights (an empty selection used to fail inside ``tf.add_n``).
- :class:`NonFiniteLossGuard`: a Keras callback that stops training at the first step whose
  loss is NaN or infinite, raising :class:`NonFiniteLossError` naming the epoch, the step and the
  loss components that went non-finite. The exception ends ``fit`` before ``on_epoch_end``, so
  the checkpoint of that epoch is not written.
"""
import logging
import math
import numbers
import re

import keras

__all__ = ["NonFiniteLossError", "NonFiniteLossGuard", "check_train_arguments",
           "weight_layer_names"]

logger = logging.getLogger(__name__)

_LOSS_KEYS = ("loss", "rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss",
              "mrcnn_mask_loss")


class NonFiniteLossError(FloatingPointError):
    """Training stopped: a loss became NaN or infinite (the message names epoch, step, losses)."""


def weight_layer_names(keras_model):
    """Names of the layers that own weights, nested models entered (as ``set_trainable`` sees
    them)."""
    names = []
    for layer in keras_model.layers:
        if isinstance(layer, keras.Model):
            names.extend(weight_layer_names(layer))
        elif layer.weights:
            names.append(layer.name)
    return names


def check_train_arguments(keras_model, learning_rate, epochs, layers, regex):
    """Raise ValueError / TypeError naming the argument when ``train()`` would fail later.

    Args:
        keras_model: the training Keras model.
        learning_rate: must be a finite number > 0.
        epochs: must be a non-negative integer.
        layers: what the user passed (a preset name or a regex), for messages.
        regex: ``layers`` resolved to a regex.
    """
    if (not isinstance(learning_rate, numbers.Real) or isinstance(learning_rate, bool)
            or not math.isfinite(learning_rate) or learning_rate <= 0):
        raise ValueError(f"train(): learning_rate must be a number > 0, got {learning_rate!r}")
    if not isinstance(epochs, numbers.Integral) or isinstance(epochs, bool) or epochs < 0:
        raise ValueError(f"train(): epochs must be an integer >= 0 (the epoch to stop at), got "
                         f"{epochs!r}")
    if not isinstance(regex, str):
        raise TypeError(f"train(): layers must be a preset (heads, 3+, 4+, 5+, all) or a regex "
                        f"string, got {type(layers).__name__} {layers!r}")
    try:
        pattern = re.compile(regex)
    except re.error as exc:
        raise ValueError(f"train(): layers={layers!r} is not a valid regex ({exc})") from None
    names = weight_layer_names(keras_model)
    if not any(pattern.fullmatch(name) for name in names):
        raise ValueError(
            f"train(): layers={layers!r} (regex {regex!r}) matches no layer of the model, so "
            f"nothing would train. Use a preset (heads, 3+, 4+, 5+, all) or a regex that fully "
            f"matches layer names such as {names[:3] + names[-3:]}")


class NonFiniteLossGuard(keras.callbacks.Callback):
    """Stop training at the first batch whose loss (or a loss component) is NaN or infinite.

    Raises :class:`NonFiniteLossError` from ``on_train_batch_end``: ``fit`` ends there, before
    ``on_epoch_end``, so no checkpoint of the broken epoch is written. The running means Keras
    reports become non-finite at the first bad step, so the step named is that step.
    """

    def __init__(self):
        super().__init__()
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        bad = {}
        for key in _LOSS_KEYS:
            if logs is None or key not in logs:
                continue
            try:
                value = float(logs[key])
            except (TypeError, ValueError):
                continue
            if not math.isfinite(value):
                bad[key] = value
        if bad:
            components = ", ".join(f"{k}={v}" for k, v in bad.items())
            raise NonFiniteLossError(
                f"Training stopped: non-finite loss in epoch {self._epoch + 1} (1-based, as in "
                f"the checkpoint names), step {batch + 1}: {components}. The checkpoint of this "
                "epoch is not written. Lower the learning rate, check the inputs for NaN, or "
                "resume from find_last().")
