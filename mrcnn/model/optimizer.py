"""SGD with momentum that updates each weight in place, in one kernel, once its gradient exists.

Keras 3's ``SGD.update_step`` writes the momentum rule as separate ops::

    m <- m * momentum - lr * g        # ops.multiply(m, momentum) reads only m
    w <- w + m

``m * momentum`` depends on the momentum slot alone, so TensorFlow's executor computes it for
every weight as soon as the step starts and keeps the result until that weight's gradient
arrives, at the end of the backward pass for the backbone: one weight-sized temporary per
variable, all alive at the step's memory peak (170 MiB of the 1,431 MiB the allocator held at
128 x 128 batch 8, ResNet-50; docs/benchmarks.md, issue 9). :class:`MomentumSGD` runs the
same rule as ``ResourceApplyKerasMomentum`` (the fused kernel ``tf.keras`` used before Keras 3):
it reads the slot only when the gradient is there and writes ``m`` and ``w`` in place, with no
temporaries. The update is the same arithmetic in the same order (tests/model/test_optimizer.py
compares it with Keras' SGD, Nesterov included).

Falls back to Keras' own update for what the kernel does not cover: sparse gradients
(``tf.IndexedSlices``), weights whose dtype differs from float32/float16/bfloat16/float64, or
``momentum == 0`` (plain SGD has no slot to read early).
"""

import keras
import tensorflow as tf

_FUSED_DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64)


def _tf_variable(variable):
    """The ``tf.Variable`` (or distributed variable) behind a Keras variable."""
    return variable.value if isinstance(variable, keras.Variable) else variable


@keras.saving.register_keras_serializable(package="mrcnn")
class MomentumSGD(keras.optimizers.SGD):
    """``keras.optimizers.SGD`` whose momentum update is one in-place kernel per weight.

    Same arguments, slots (``momentums``), checkpoints and update rule as Keras' SGD; a model
    saved with it loads into Keras' SGD and back. See the module docstring for why.
    """

    def update_step(self, gradient, variable, learning_rate):
        tf_var = _tf_variable(variable)
        if (self.momentum == 0 or isinstance(gradient, tf.IndexedSlices)
                or tf_var.dtype not in _FUSED_DTYPES):
            return super().update_step(gradient, variable, learning_rate)
        momentum_slot = _tf_variable(self.momentums[self._get_variable_index(variable)])
        dtype = tf_var.dtype
        # Inside Strategy.extended.update the handles are those of this device's components.
        return tf.raw_ops.ResourceApplyKerasMomentum(
            var=tf_var.handle, accum=momentum_slot.handle,
            lr=tf.cast(learning_rate, dtype), grad=tf.cast(gradient, dtype),
            momentum=tf.cast(self.momentum, dtype), use_locking=False,
            use_nesterov=bool(self.nesterov))


def classic_sgd(learning_rate, momentum, clipnorm=None):
    """The classic training optimizer: SGD with momentum (and Keras ``clipnorm`` if given)."""
    return MomentumSGD(learning_rate=learning_rate, momentum=momentum, clipnorm=clipnorm)
