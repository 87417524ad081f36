"""``batch_slice``: the classic helper that runs a per-image graph function over a batch.

The graph of this package is batched and does not use it; it is kept because user code and
the classic notebooks call ``utils.batch_slice``.
"""

__all__ = ["batch_slice"]


def batch_slice(inputs, graph_fn, batch_size, names=None):
    """Split ``inputs`` along the batch axis, apply ``graph_fn`` per image and stack the results.

    Args:
        inputs: a tensor or list of tensors with a leading batch dimension of ``batch_size``.
        graph_fn: function taking one slice of each input and returning a tensor or a list.
        batch_size: number of images (a Python int).
        names: optional names for the stacked outputs.
    Returns:
        a stacked tensor, or a list of them when ``graph_fn`` returns several.
    """
    import tensorflow as tf
    if not isinstance(inputs, list):
        inputs = [inputs]
    outputs = []
    for i in range(batch_size):
        output_slice = graph_fn(*[x[i] for x in inputs])
        if not isinstance(output_slice, (tuple, list)):
            output_slice = [output_slice]
        outputs.append(output_slice)
    outputs = list(zip(*outputs))
    if names is None:
        names = [None] * len(outputs)
    result = [tf.stack(o, axis=0, name=n) for o, n in zip(outputs, names)]
    return result[0] if len(result) == 1 else result
