"""Shared checks for convolution layers: equality with ``keras.layers.Conv2D``, and which ops
call XLA-compiled functions."""
import numpy as np
import tensorflow as tf


def outputs_and_gradients(layer, x):
    """``[y, dloss/dx, dloss/dkernel, dloss/dbias]`` of ``layer`` on ``x`` as NumPy arrays."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        # A loss that weights every output differently, so that no gradient term can hide.
        loss = tf.reduce_sum(y * tf.reshape(tf.range(tf.size(y), dtype=y.dtype), tf.shape(y)))
    dx, dkernel, dbias = tape.gradient(loss, [x, layer.kernel, layer.bias])
    return [np.asarray(t) for t in (y, dx, dkernel, dbias)]


def xla_compiled_calls(graph):
    """Ops of a traced ``graph`` that call an XLA-compiled function (``jit_compile=True``)."""
    return [op for op in graph.get_operations()
            if "_XlaMustCompile" in op.node_def.attr and op.node_def.attr["_XlaMustCompile"].b]


def xla_free_winograd_transform_op():
    """The op type by which the XLA-free Winograd form (mrcnn/model/winograd_matrix.py)
    transforms its input tiles in float32: mrcnn's native op where the library is built
    (mrcnn/native), else ``ExtractImagePatches`` (then a product by ``kron(B^T, B^T)``)."""
    from mrcnn import native
    if native.winograd_ops() is not None:
        return "MrcnnWinogradInputTransform"
    return "ExtractImagePatches"
