"""Data-parallel training under ``tf.distribute``: replicas, gradients, input and who writes files.

How ``Config.GPU_COUNT`` relates to the strategy (the rule the rest follows):

* ``GPU_COUNT`` counts **replicas** (devices that each take ``IMAGES_PER_GPU`` images), over all
  workers. The global batch of one step is ``IMAGES_PER_GPU x replicas``.
* Under a strategy (``with strategy.scope(): MaskRCNN("training", ...)``) the replica count is
  the strategy's ``num_replicas_in_sync``. ``GPU_COUNT = 1`` (the default) means "take it from the
  strategy"; any other value must equal it, else :class:`ValueError` names both.
* Without a scope, ``GPU_COUNT > 1`` builds a ``MirroredStrategy`` over the first ``GPU_COUNT``
  visible GPUs (:func:`strategy_for_gpu_count`), the promise the classic ``ParallelModel`` made.

Losses and gradients (the training step calls :func:`loss_for_gradients` and
:func:`aggregate_gradients`): every loss is a sum over the global batch divided by the count over
the global batch (:func:`global_count` all-reduces the per-replica counts), so 2 replicas x 1 image
give the loss and gradients of 1 replica x 2 images. The loss each replica differentiates is
divided by the replica count, so L2 decay, which every replica adds, enters the summed gradient
once. Gradients are all-reduced first and clipped afterwards (Keras' ``clipnorm`` would clip each
replica's gradient before the sum).
"""
import contextlib
import logging
import os
import shutil
import tempfile

import tensorflow as tf

__all__ = ["replica_count", "global_count", "loss_for_gradients", "aggregate_gradients",
           "scope_of", "global_batch_size", "build_optimizer", "synchronize_batch_norm",
           "cross_replica_moments", "strategy_for_gpu_count", "resolve_replicas", "training_scope", "is_chief",
           "input_shard", "distribute_dataset", "broadcast_seed", "step_logs", "WorkerDirs"]

logger = logging.getLogger(__name__)


def replica_count(strategy=None):
    """Replicas that train in sync (1 without a strategy)."""
    strategy = strategy or tf.distribute.get_strategy()
    return int(strategy.num_replicas_in_sync)


def _replica_context_with_peers():
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return None
    return ctx


def global_count(count):
    """The mean over replicas of a per-replica count (float32, no gradient).

    A loss ``sum_r / global_count(count_r)`` on every replica, divided by the replica count and
    summed over replicas (what the gradient all-reduce does), is ``sum / count`` over the global
    batch. Outside a replica context with peers (no strategy, building the graph) it is ``count``.
    """
    count = tf.cast(count, tf.float32)
    ctx = _replica_context_with_peers()
    if ctx is None:
        return count
    total = ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.stop_gradient(count))
    return total / float(ctx.num_replicas_in_sync)


def loss_for_gradients(loss, optimizer):
    """The value a replica differentiates: ``loss / replicas``, times the loss scale if any.

    ``optimizer.scale_loss`` is Keras' hook: a ``LossScaleOptimizer`` multiplies by its dynamic
    scale, any other optimizer returns the loss unchanged.
    """
    loss = loss / float(replica_count())
    return optimizer.scale_loss(loss) if optimizer is not None else loss


def _loss_scale(optimizer):
    scale = getattr(optimizer, "dynamic_scale", None) if getattr(optimizer, "built", False) \
        else getattr(optimizer, "initial_scale", None)
    return None if scale is None else tf.cast(tf.convert_to_tensor(scale), tf.float32)


def aggregate_gradients(grads, clip_norm, optimizer=None):
    """All-reduce (sum) the replicas' gradients, clip each by norm, return what to ``apply``.

    Args:
        grads: list of per-replica gradients (tensors or None) of :func:`loss_for_gradients`.
        clip_norm: float or None: each gradient's L2 norm is clipped to it (Keras ``clipnorm``
            semantics, the classic GRADIENT_CLIP_NORM), on the aggregated, unscaled gradient.
        optimizer: the optimizer the result goes to; a ``LossScaleOptimizer`` is honoured (the
            clip norm is multiplied by its scale, which is the same as clipping unscaled values).

    Returns:
        list like ``grads``. Keras optimizers sum the gradients over replicas themselves, so with
        ``n`` replicas the aggregated gradient is returned divided by ``n``: their sum is it.
    """
    ctx = _replica_context_with_peers()
    present = [i for i, g in enumerate(grads) if g is not None]
    values = [tf.convert_to_tensor(grads[i]) for i in present]
    if ctx is not None and values:
        values = ctx.all_reduce(tf.distribute.ReduceOp.SUM, values)
    if clip_norm or ctx is not None:
        limit = None
        if clip_norm:
            scale = _loss_scale(optimizer)
            limit = float(clip_norm) if scale is None else float(clip_norm) * scale
        replicas = 1 if ctx is None else ctx.num_replicas_in_sync
        # One multiply per gradient by a scalar (the clip and the replica division together).
        values = [v * tf.cast(_clip_factor(v, limit) / replicas, v.dtype) for v in values]
    out = list(grads)
    for i, value in zip(present, values):
        out[i] = value
    return out


def _clip_factor(value, limit):
    """``limit / max(||value||, limit)`` (float32 scalar; 1 for ``limit`` None), the factor of
    ``tf.clip_by_norm(value, limit)``.

    Not ``tf.clip_by_norm`` itself: it squares ``value`` for the norm and multiplies it by the
    limit before dividing, two more tensors the size of the gradient held at once with it (98
    MiB for the 12544 x 1024 ``mrcnn_class_conv1`` kernel's, alive at a 512 x 512 training
    step's memory peak). ``L2Loss`` (``sum(value ** 2) / 2``) is one fused reduction, as
    exact (1e-8 relative on that gradient) and faster, and XLA compiles it (``Config.XLA``;
    ``EuclideanNorm``, as fast, has no XLA kernel); the caller's one multiply by a scalar can
    reuse the gradient's buffer.
    """
    if limit is None:
        return tf.constant(1.0, tf.float32)
    norm = tf.sqrt(2.0 * tf.cast(tf.nn.l2_loss(value), tf.float32))
    return limit / tf.maximum(norm, limit)


def scope_of(strategy):
    """``strategy.scope()``, or a no-op context for None."""
    return contextlib.nullcontext() if strategy is None else strategy.scope()


def global_batch_size(config, strategy=None):
    """Images of one step: ``IMAGES_PER_GPU x replicas`` under a strategy, else BATCH_SIZE."""
    if strategy is None:
        return int(config.BATCH_SIZE)
    return int(config.IMAGES_PER_GPU) * resolve_replicas(config, strategy)


def build_optimizer(keras_model):
    """Create the optimizer's variables for the trainable weights, in the model's strategy."""
    optimizer = keras_model.optimizer
    if optimizer is not None and not optimizer.built:
        with keras_model.distribute_strategy.scope():
            optimizer.build(keras_model.trainable_variables)


def cross_replica_moments(x, axes):
    """Mean and variance of ``x`` over ``axes`` and over every replica's ``x`` (float32 math).

    One all-reduce of ``[sum, sum of squares, count]`` per call. Keras' ``synchronized=True``
    all-reduces the three separately; under MirroredStrategy on TF 2.21 the three collectives of
    a layer can then be paired with the wrong partner across replicas ("Shape mismatch in the
    collective instance: expected shape [64] but another member in the group expected shape
    [1]"). One fused collective per layer leaves nothing to pair wrongly: the layers' collectives
    are ordered by the data flow (each layer's input depends on the previous layer's output).
    Outside a replica context with peers it is ``tf.nn.moments``. Returns (mean, variance), the
    shape of ``x`` without ``axes``.
    """
    ctx = _replica_context_with_peers()
    if ctx is None:
        return tf.nn.moments(x, axes)
    x32 = tf.cast(x, tf.float32)
    local_sum = tf.reduce_sum(x32, axis=axes)
    local_squares = tf.reduce_sum(tf.square(x32), axis=axes)
    local_count = tf.cast(tf.reduce_prod(tf.gather(tf.shape(x32), axes)), tf.float32)
    channels = tf.shape(local_sum)
    packed = tf.concat([tf.reshape(local_sum, [-1]), tf.reshape(local_squares, [-1]),
                        tf.reshape(local_count, [1])], axis=0)
    total = ctx.all_reduce(tf.distribute.ReduceOp.SUM, packed)
    n = tf.size(local_sum)
    count = total[2 * n]
    mean = tf.reshape(total[:n], channels) / count
    mean_of_squares = tf.reshape(total[n:2 * n], channels) / count
    # var = E(x^2) - E(x)^2, clamped at 0 against rounding (as Keras does).
    variance = tf.maximum(mean_of_squares - tf.square(mean), 0.0)
    return tf.cast(mean, x.dtype), tf.cast(variance, x.dtype)


def _cross_replica_layer_moments(layer, inputs, mask):
    """``BatchNormalization._moments`` replacement bound by :func:`synchronize_batch_norm`."""
    if mask is not None:
        raise ValueError(f"{layer.name}: synchronised BatchNorm does not take a mask")
    return cross_replica_moments(inputs, layer._reduction_axes)


def _assign_collective_keys_when_tracing(strategy):
    """Give collectives their instance keys when the step is traced, in creation order.

    TF 2.21 assigns them when the traced step is *called* (``capture_call_time_value``), and with
    the BatchNorm collectives of the forward pass the two replicas of a MirroredStrategy then pair
    different collectives under one key ("Shape mismatch in the collective instance 100 ...
    expected shape [17] but another member in the group expected shape [1]", also
    tensorflow/tensorflow#62790). Keys taken at trace time follow the creation order, which is the
    same on every replica of one process. Only for a single-worker strategy: TF keeps call-time
    keys because workers of a cluster may retrace at different times.
    """
    if strategy is None or not isinstance(strategy, tf.distribute.MirroredStrategy):
        return
    from tensorflow.python.distribute import cross_device_utils

    launcher = cross_device_utils.CollectiveReplicaLauncher
    if getattr(launcher, "_prefer_unique_instance_key", False):
        launcher._prefer_unique_instance_key = False
        logger.info("SYNC_BATCH_NORM: collective instance keys are assigned at trace time")


def synchronize_batch_norm(keras_model):
    """Make every BatchNormalization layer of ``keras_model`` compute cross-replica moments.

    With trainable BatchNorm (``TRAIN_BN = None``) each replica normalises with the mean and
    variance of the whole global batch instead of its own few images (outside a strategy it
    changes nothing). The moments come from :func:`cross_replica_moments`, bound to each layer
    (``synchronized`` is set too, so the layer's config says what it does). Returns the layer
    count.
    """
    import types

    import keras

    _assign_collective_keys_when_tracing(keras_model.distribute_strategy)
    count = 0
    stack = [keras_model]
    while stack:
        model = stack.pop()
        for layer in model.layers:
            if isinstance(layer, keras.Model):
                stack.append(layer)
            elif isinstance(layer, keras.layers.BatchNormalization):
                layer.synchronized = True
                layer._moments = types.MethodType(_cross_replica_layer_moments, layer)
                count += 1
    return count


def _visible_gpus():
    return [d.name for d in tf.config.list_logical_devices("GPU")]


def strategy_for_gpu_count(gpu_count, devices=None):
    """A ``MirroredStrategy`` over the first ``gpu_count`` devices; None for ``gpu_count == 1``.

    Args:
        gpu_count: Config.GPU_COUNT, positive int.
        devices: device names to choose from (default: the visible GPUs, logical devices).

    Raises:
        ValueError: fewer devices than ``gpu_count``; the message names GPU_COUNT, its value and
            the devices found.
    """
    gpu_count = int(gpu_count)
    if gpu_count == 1:
        return None
    found = list(_visible_gpus() if devices is None else devices)
    if len(found) < gpu_count:
        raise ValueError(
            f"Config.GPU_COUNT = {gpu_count} asks for data-parallel training on {gpu_count} GPUs, "
            f"but TensorFlow sees {len(found)}: {found or 'none'} (CPU devices: "
            f"{[d.name for d in tf.config.list_logical_devices('CPU')]}). Set GPU_COUNT to at "
            "most the number of GPUs, or build the model inside a tf.distribute strategy's "
            "scope (GPU_COUNT = 1 then takes the replica count from the strategy).")
    chosen = found[:gpu_count]
    logger.info("GPU_COUNT = %d: MirroredStrategy over %s", gpu_count, chosen)
    return tf.distribute.MirroredStrategy(devices=chosen)


def resolve_replicas(config, strategy=None):
    """Replica count of ``strategy`` (default: the current one), checked against GPU_COUNT.

    Returns:
        int: the number of replicas; the global batch is ``IMAGES_PER_GPU`` times it.

    Raises:
        ValueError: GPU_COUNT is neither 1 nor the strategy's replica count.
    """
    replicas = replica_count(strategy)
    gpu_count = int(config.GPU_COUNT)
    if gpu_count not in (1, replicas):
        raise ValueError(
            f"Config.GPU_COUNT = {gpu_count} contradicts the tf.distribute strategy "
            f"{type(strategy or tf.distribute.get_strategy()).__name__}, which has {replicas} "
            f"replica(s) in sync. Set GPU_COUNT = {replicas}, or 1 to take the count from the "
            "strategy.")
    return replicas


@contextlib.contextmanager
def training_scope(config):
    """The scope a training model is built in; yields the strategy (None: no distribution).

    Inside a strategy's scope: that strategy (GPU_COUNT checked by :func:`resolve_replicas`).
    Otherwise GPU_COUNT > 1: a new MirroredStrategy over the first GPU_COUNT GPUs, entered here.
    """
    if tf.distribute.has_strategy():
        strategy = tf.distribute.get_strategy()
        resolve_replicas(config, strategy)
        yield strategy
        return
    strategy = strategy_for_gpu_count(config.GPU_COUNT)
    if strategy is None:
        yield None
        return
    with strategy.scope():
        yield strategy


def _cluster_task(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return None, None, {}
    spec = resolver.cluster_spec().as_dict() if resolver.cluster_spec() else {}
    return resolver.task_type, resolver.task_id, spec


def is_chief(strategy=None):
    """Whether this process writes checkpoints and logs: the chief task, else worker 0.

    True without a cluster (one process) and for every single-worker strategy.
    """
    task_type, task_id, spec = _cluster_task(strategy or tf.distribute.get_strategy())
    if not task_type:
        return True
    if task_type == "chief":
        return True
    return task_type == "worker" and int(task_id or 0) == 0 and "chief" not in spec


def input_shard(input_context):
    """``(num_shards, index)`` of one input pipeline, or None for a single pipeline."""
    if input_context is None or input_context.num_input_pipelines <= 1:
        return None
    return int(input_context.num_input_pipelines), int(input_context.input_pipeline_id)


def distribute_dataset(strategy, dataset_fn, global_batch_size):
    """The training input of ``strategy``: one ``tf.data`` pipeline per worker, batches per replica.

    Args:
        strategy: a ``tf.distribute.Strategy`` or None (no distribution).
        dataset_fn: callable ``(batch_size, shard)`` -> ``tf.data.Dataset`` of batches of
            ``batch_size``, reading only the image ids of ``shard`` (``(num_shards, index)`` or
            None for all).
        global_batch_size: images of one step over all replicas.

    Returns:
        the dataset (no strategy) or a distributed dataset from
        ``strategy.distribute_datasets_from_function``: each worker runs its own pipeline on its
        own shard of the image ids, and each replica gets batches of ``global / replicas`` images,
        prefetched to its device.
    """
    if strategy is None or replica_count(strategy) == 1 and is_single_worker(strategy):
        return dataset_fn(global_batch_size, None)

    def per_pipeline(input_context):
        batch = input_context.get_per_replica_batch_size(global_batch_size)
        return dataset_fn(batch, input_shard(input_context))

    options = tf.distribute.InputOptions(experimental_fetch_to_device=True)
    return strategy.distribute_datasets_from_function(per_pipeline, options)


def step_logs(logs):
    """A training/test step's ``logs`` in the shape Keras can reduce under the current strategy.

    Keras 3.15 reduces a step's outputs across workers of a MultiWorkerMirroredStrategy with
    ``strategy.reduce(MEAN, value, axis=0)``, which fails on the scalar losses ("Invalid
    reduction dimension 0 for input with 0 dimensions"). There each value becomes ``[1]``, and
    the reduction over axis 0 gives the mean over all replicas as a scalar again. Elsewhere the
    logs are returned as they are.
    """
    strategy = tf.distribute.get_strategy()
    if (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.extended._in_multi_worker_mode()):
        return {name: tf.reshape(value, [1]) for name, value in logs.items()}
    return logs


def is_single_worker(strategy):
    """Whether the strategy runs in one process (no TF_CONFIG cluster of several workers)."""
    _, _, spec = _cluster_task(strategy)
    return sum(len(v) for k, v in spec.items() if k in ("chief", "worker")) <= 1


def broadcast_seed(strategy, seed):
    """The chief's ``seed`` on every worker (each worker's input must permute the same way)."""
    if strategy is None or is_single_worker(strategy):
        return int(seed)

    def first_replica_value():
        ctx = tf.distribute.get_replica_context()
        mine = tf.where(tf.equal(ctx.replica_id_in_sync_group, 0), tf.constant(seed, tf.int64),
                        tf.constant(0, tf.int64))
        return ctx.all_reduce(tf.distribute.ReduceOp.SUM, mine)

    values = strategy.experimental_local_results(strategy.run(first_replica_value))
    return int(values[0].numpy())


class WorkerDirs:
    """Where this worker writes logs and checkpoints: ``log_dir`` on the chief, else a temp folder.

    Non-chief workers of a multi-worker run must still run the same callbacks (saving reads
    variables in sync), but their files are thrown away: they go to a temporary folder that
    :meth:`cleanup` removes.
    """

    def __init__(self, log_dir, checkpoint_path, strategy=None):
        self.chief = is_chief(strategy)
        self._temp = None
        if self.chief:
            self.log_dir, self.checkpoint_path = log_dir, checkpoint_path
        else:
            self._temp = tempfile.mkdtemp(prefix="mrcnn_worker_")
            self.log_dir = self._temp
            self.checkpoint_path = os.path.join(self._temp, os.path.basename(checkpoint_path))
            logger.info("Not the chief: logs and checkpoints go to %s (removed afterwards)",
                        self._temp)

    def cleanup(self):
        if self._temp is not None:
            shutil.rmtree(self._temp, ignore_errors=True)
            self._temp = None
