"""The classic multi-GPU wrapper, kept importable: it tells what to use instead.

The classic ``ParallelModel`` split each batch over GPUs with Keras-2 graph code that never worked
on TensorFlow 2. Data-parallel training is now ``tf.distribute``: set ``GPU_COUNT`` to the number
of GPUs (``MaskRCNN`` builds a ``MirroredStrategy`` over the first ``GPU_COUNT`` visible GPUs), or
build the model inside any strategy's scope. See docs/distributed.md.
"""

__all__ = ["ParallelModel"]

_INSTEAD = (
    "mrcnn.parallel_model.ParallelModel is gone: it never worked on TensorFlow 2. For data-parallel "
    "training set Config.GPU_COUNT to the number of GPUs (MaskRCNN then builds a "
    "tf.distribute.MirroredStrategy over the first GPU_COUNT GPUs itself), or build the model "
    "inside a strategy: `with tf.distribute.MirroredStrategy().scope(): model = "
    "MaskRCNN('training', config, model_dir)`, then model.train(...). See docs/distributed.md.")


class ParallelModel:
    """Classic name; constructing it raises ``NotImplementedError`` saying what to use instead."""

    def __init__(self, keras_model=None, gpu_count=None):
        raise NotImplementedError(_INSTEAD)
