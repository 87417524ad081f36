"""Training: the training graph, the training step (weighted losses + L2 decay) and ``train``.

The training model is a functional Keras model whose last five outputs are the classic losses
(``rpn_class_loss``, ``rpn_bbox_loss``, ``mrcnn_class_loss``, ``mrcnn_bbox_loss``,
``mrcnn_mask_loss``). Its ``train_step`` sums them with ``LOSS_WEIGHTS``, adds L2 weight decay
on the trainable weights except BatchNorm gamma/beta, and applies SGD with momentum and gradient
clipping.
"""
import logging
import os
import time

import keras
import numpy as np
import tensorflow as tf

from mrcnn.data.image_meta import parse_image_meta_graph
from mrcnn.model import distribution, precision
from mrcnn.model.freed_memory import ReturnFreedMemory
from mrcnn.model.graph import build_feature_pyramid, build_heads, build_mask_head, model_inputs
from mrcnn.model.guards import NonFiniteLossGuard, check_train_arguments
from mrcnn.model.losses import (LOSS_NAMES, MrcnnBboxLoss, MrcnnClassLoss, MrcnnMaskLoss,
                                RpnBboxLoss, RpnClassLoss)
from mrcnn.model.proposal import ProposalLayer
from mrcnn.model.targets import DetectionTargetLayer, NormalizeBoxes, RoiSlice
from mrcnn.model.weights_io import save_classic_weights
from mrcnn.model.optimizer import classic_sgd
from mrcnn.model.precision import Float32Layer

__all__ = ["LAYER_PRESETS", "TrainingModel", "build_training_model", "ClassicCheckpoint",
           "TimeLimit", "resolve_layer_regex", "ActiveClassIds"]

logger = logging.getLogger(__name__)

#: The classic ``layers=`` presets of ``MaskRCNN.train``.
LAYER_PRESETS = {
    "heads": r"(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
    "3+": r"(res3.*)|(bn3.*)|(res4.*)|(bn4.*)|(res5.*)|(bn5.*)|(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
    "4+": r"(res4.*)|(bn4.*)|(res5.*)|(bn5.*)|(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
    "5+": r"(res5.*)|(bn5.*)|(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
    "all": ".*",
}


def resolve_layer_regex(layers):
    """A preset name (heads, 3+, 4+, 5+, all) or a regex -> the regex."""
    return LAYER_PRESETS.get(layers, layers)


@keras.saving.register_keras_serializable(package="mrcnn")
class ActiveClassIds(Float32Layer):
    """image_meta [B, META] -> active_class_ids [B, NUM_CLASSES] float32."""

    def call(self, image_meta):
        return parse_image_meta_graph(image_meta)["active_class_ids"]


class TrainingModel(keras.Model):
    """Functional training graph with the Mask R-CNN training step.

    Args (besides the functional ``inputs``/``outputs``):
        loss_weights: dict loss name -> weight (the five classic names).
        weight_decay: L2 factor; the step adds ``weight_decay / 2 * sum(w ** 2)`` over trainable
            weights except BatchNorm gamma/beta, i.e. SGD weight decay ``w -= lr * wd * w``.
        gradient_clip_norm: clip each gradient's norm to it after the replicas' gradients are
            summed (None: no clipping); see :mod:`mrcnn.model.distribution`.
    """

    def __init__(self, *args, loss_weights=None, weight_decay=0.0, gradient_clip_norm=None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.gradient_clip_norm = gradient_clip_norm
        self.loss_weights_ = {name: float((loss_weights or {}).get(name, 1.0))
                              for name in LOSS_NAMES}
        self.weight_decay = float(weight_decay)
        self._loss_trackers = {name: keras.metrics.Mean(name=name)
                          for name in ("loss",) + tuple(LOSS_NAMES)}

    @property
    def metrics(self):
        return list(self._loss_trackers.values())

    def _decayed_variables(self):
        return [v for v in self.trainable_variables if v.name not in ("gamma", "beta")]

    def _named_losses(self, data, training):
        # fit() passes the input dict itself, train_on_batch()/test_on_batch() (x, y, weights).
        inputs, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        outputs = self(inputs, training=training)
        named = dict(zip(LOSS_NAMES, outputs[-len(LOSS_NAMES):]))
        total = tf.add_n([self.loss_weights_[n] * tf.reduce_mean(named[n]) for n in LOSS_NAMES])
        return named, total

    def _update(self, named, total):
        self._loss_trackers["loss"].update_state(total)
        for name in LOSS_NAMES:
            self._loss_trackers[name].update_state(named[name])
        return distribution.step_logs(
            {name: tracker.result() for name, tracker in self._loss_trackers.items()})

    def train_step(self, data):
        with tf.GradientTape() as tape:
            named, total = self._named_losses(data, training=True)
            # Divided by the replica count, loss-scaled.
            scaled = distribution.loss_for_gradients(total, self.optimizer)
        variables = self.trainable_variables
        grads = tape.gradient(scaled, variables)
        if self.weight_decay:
            grads = self._add_weight_decay(grads, variables)
        grads = distribution.aggregate_gradients(grads, self.gradient_clip_norm, self.optimizer)
        self.optimizer.apply(grads, variables)
        return self._update(named, total)

    def _add_weight_decay(self, grads, variables):
        """Each gradient plus that of ``weight_decay / 2 * sum(w ** 2)``: ``g + c * w``.

        ``c`` is ``weight_decay`` passed through :func:`distribution.loss_for_gradients` (which is
        linear: divided by the replica count, so that the summed gradient holds the decay once,
        and times the loss scale), i.e. the gradient the decay would get as a term of the loss.
        Added here rather than to the loss because TensorFlow computes a gradient that depends on
        weights alone (``c * w``) for every weight at the start of the backward pass and keeps
        it until the weight's own gradient arrives: all of them were alive at the step's memory
        peak (160 MiB at 128 x 128 batch 8, docs/benchmarks.md). Ordered after the gradient, each
        lives only for its addition.
        """
        coefficient = distribution.loss_for_gradients(
            tf.constant(self.weight_decay, tf.float32), self.optimizer)
        decayed = {id(v) for v in self._decayed_variables()}
        out = []
        for grad, variable in zip(grads, variables):
            if id(variable) not in decayed:
                out.append(grad)
                continue
            with tf.control_dependencies([] if grad is None else [grad]):
                weight = tf.convert_to_tensor(variable)
            dtype = weight.dtype if grad is None else grad.dtype
            decay = tf.cast(coefficient, dtype) * tf.cast(weight, dtype)
            out.append(decay if grad is None else grad + decay)
        return out

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Under a strategy Keras 3 averages the first distributed batch to build the model with,
        # which fails on the bool GT masks. This functional model is built and compiles no
        # losses or metrics: only the optimizer's slots are left to create.
        distribution.build_optimizer(self)

    def test_step(self, data):
        named, total = self._named_losses(data, training=False)
        return self._update(named, total)


def build_training_model(config):
    """The training graph for ``config``.

    Inputs (names, shapes per image): input_image [H, W, C] molded float32, input_image_meta
    [META], input_anchors [A, 4] normalized, input_rpn_match [A, 1] int32, input_rpn_bbox
    [RPN_TRAIN_ANCHORS_PER_IMAGE, 4], input_gt_class_ids [MAX_GT] int32, input_gt_boxes
    [MAX_GT, 4] pixels, input_gt_masks [mh, mw, MAX_GT] bool (mini-masks if USE_MINI_MASK), and
    input_roi [POST_NMS_ROIS_TRAINING, 4] pixels when USE_RPN_ROIS is False.
    Outputs: rpn_class_logits, rpn_class, rpn_bbox, mrcnn_class_logits, mrcnn_class, mrcnn_bbox,
    mrcnn_mask, rpn_rois, output_rois, then the five losses (scalars).
    """
    input_image, input_image_meta, input_anchors = model_inputs(config)
    input_rpn_match = keras.Input([None, 1], dtype="int32", name="input_rpn_match")
    input_rpn_bbox = keras.Input([None, 4], dtype="float32", name="input_rpn_bbox")
    input_gt_class_ids = keras.Input([None], dtype="int32", name="input_gt_class_ids")
    input_gt_boxes = keras.Input([None, 4], dtype="float32", name="input_gt_boxes")
    mask_shape = config.MINI_MASK_SHAPE if config.USE_MINI_MASK else config.IMAGE_SHAPE[:2]
    input_gt_masks = keras.Input([int(mask_shape[0]), int(mask_shape[1]), None], dtype="bool",
                                 name="input_gt_masks")
    inputs = [input_image, input_image_meta, input_anchors, input_rpn_match, input_rpn_bbox,
              input_gt_class_ids, input_gt_boxes, input_gt_masks]

    gt_boxes = NormalizeBoxes(name="gt_boxes_normalized")([input_gt_boxes, input_image])
    _, mrcnn_feature_maps, (rpn_class_logits, rpn_class, rpn_bbox) = build_feature_pyramid(
        input_image, config)
    rpn_rois = ProposalLayer(
        proposal_count=config.POST_NMS_ROIS_TRAINING, nms_threshold=config.RPN_NMS_THRESHOLD,
        pre_nms_limit=config.PRE_NMS_LIMIT, rpn_bbox_std_dev=config.RPN_BBOX_STD_DEV,
        xla_compatible=bool(getattr(config, "XLA", False)),
        name="ROI")([rpn_class, rpn_bbox, input_anchors])
    if config.USE_RPN_ROIS:
        target_rois = rpn_rois
    else:
        input_rois = keras.Input([config.POST_NMS_ROIS_TRAINING, 4], dtype="float32",
                                 name="input_roi")
        inputs.append(input_rois)
        target_rois = NormalizeBoxes(name="input_roi_normalized")([input_rois, input_image])

    mask_rois_per_image = max(1, int(config.TRAIN_ROIS_PER_IMAGE * config.ROI_POSITIVE_RATIO))
    rois, target_class_ids, target_bbox, target_mask = DetectionTargetLayer(
        train_rois_per_image=config.TRAIN_ROIS_PER_IMAGE,
        roi_positive_ratio=config.ROI_POSITIVE_RATIO, mask_shape=list(config.MASK_SHAPE),
        use_mini_mask=config.USE_MINI_MASK, bbox_std_dev=config.BBOX_STD_DEV,
        mask_rois_per_image=mask_rois_per_image,
        include_gt_boxes=bool(config.TRAIN_ROIS_INCLUDE_GT),
        xla_compatible=bool(config.XLA),
        name="proposal_targets")(
        [target_rois, input_gt_class_ids, gt_boxes, input_gt_masks])

    mrcnn_class_logits, mrcnn_class, mrcnn_bbox = build_heads(rois, input_image_meta,
                                                              mrcnn_feature_maps, config)
    # Mask targets exist only for positive ROIs, which DetectionTargetLayer puts first: the mask
    # head runs on those slots alone, and within them on the positives only (the negatives that
    # fill the slots get zero masks, which the loss ignores): the loss is the same, the work a
    # fraction.
    mask_rois = RoiSlice(mask_rois_per_image, name="mask_rois")(rois)
    mask_positive = RoiSlice(mask_rois_per_image, name="mask_roi_class_ids")(target_class_ids)
    mrcnn_mask = build_mask_head(mask_rois, input_image_meta, mrcnn_feature_maps, config,
                                 valid=mask_positive)
    active_class_ids = ActiveClassIds(name="active_class_ids")(input_image_meta)

    losses = [
        RpnClassLoss(name="rpn_class_loss")([input_rpn_match, rpn_class_logits]),
        RpnBboxLoss(name="rpn_bbox_loss")([input_rpn_bbox, input_rpn_match, rpn_bbox]),
        MrcnnClassLoss(name="mrcnn_class_loss", class_weights=config.CLASS_WEIGHTS)(
            [target_class_ids, mrcnn_class_logits, active_class_ids, rois]),
        MrcnnBboxLoss(name="mrcnn_bbox_loss")([target_bbox, target_class_ids, mrcnn_bbox]),
        MrcnnMaskLoss(name="mrcnn_mask_loss")([target_mask, target_class_ids, mrcnn_mask]),
    ]
    outputs = [rpn_class_logits, rpn_class, rpn_bbox, mrcnn_class_logits, mrcnn_class,
               mrcnn_bbox, mrcnn_mask, rpn_rois, rois] + losses
    return TrainingModel(inputs, outputs, name="mask_rcnn", loss_weights=config.LOSS_WEIGHTS,
                         weight_decay=config.WEIGHT_DECAY,
                         gradient_clip_norm=config.GRADIENT_CLIP_NORM)


class ClassicCheckpoint(keras.callbacks.Callback):
    """Write ``checkpoint_path.format(epoch=N)`` (1-based) in the classic .h5 layout each epoch.

    The file is written to a temporary name and renamed, so a crash never leaves a half-written
    checkpoint as the newest file.
    """

    def __init__(self, checkpoint_path):
        super().__init__()
        self.checkpoint_path = checkpoint_path

    def on_epoch_end(self, epoch, logs=None):
        path = self.checkpoint_path.format(epoch=epoch + 1)
        save_classic_weights(self.model, path, require_finite=True)
        logger.info("Saved checkpoint %s", path)


class TimeLimit(keras.callbacks.Callback):
    """Stop training after ``minutes`` of wall time, counted from the first batch.

    Checked after every batch: the epoch in progress ends early, and its checkpoint is still
    written (``on_epoch_end`` runs). ``elapsed_minutes`` tells how long training ran.

    Args:
        minutes: the budget, > 0; None never stops (only measures ``elapsed_minutes``).
        start: a ``time.monotonic()`` value to count from instead of the first batch, so that
            several callbacks (or ``train`` calls) share one clock. One instance passed to
            successive ``train`` calls also shares its clock: it starts at the first batch of the
            first call.

    ``expired()`` tells whether the budget is spent, e.g. to skip a later training stage.
    """

    def __init__(self, minutes, start=None):
        super().__init__()
        if minutes is not None and not minutes > 0:
            raise ValueError(f"TimeLimit: minutes must be positive, got {minutes}")
        self.minutes = minutes
        self.start = start
        self.elapsed_minutes = 0.0

    def expired(self):
        """Whether ``minutes`` have passed since the start (False before it or without limit)."""
        if self.minutes is None or self.start is None:
            return False
        return (time.monotonic() - self.start) / 60.0 >= self.minutes

    def on_train_batch_begin(self, batch, logs=None):
        if self.start is None:
            self.start = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        self.elapsed_minutes = (time.monotonic() - self.start) / 60.0
        if self.minutes is not None and self.elapsed_minutes >= self.minutes:
            if not self.model.stop_training:
                logger.info("Time limit of %.1f minutes reached: stopping training",
                            self.minutes)
            self.model.stop_training = True


def train(mrcnn_model, train_dataset, val_dataset, learning_rate, epochs, layers,
          augmentation=None, custom_callbacks=None, no_augmentation_sources=None, verbose=1,
          seed=None, evaluation=None):
    """Implementation of :meth:`MaskRCNN.train` (see there)."""
    from mrcnn.data.pipeline import make_training_dataset
    from mrcnn.ops.anchors import generate_pyramid_anchors

    config = mrcnn_model.config
    if mrcnn_model.mode != "training":
        raise RuntimeError("train() needs a MaskRCNN built with mode='training'")
    check_train_arguments(mrcnn_model.keras_model, learning_rate, epochs, layers,
                          resolve_layer_regex(layers))
    image_shape = tuple(int(d) for d in config.IMAGE_SHAPE[:2])
    anchors_pixels = generate_pyramid_anchors(
        config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS,
        mrcnn_model.compute_backbone_shapes(image_shape), config.BACKBONE_STRIDES,
        config.RPN_ANCHOR_STRIDE)
    anchors_normalized = mrcnn_model.get_anchors(image_shape)
    seed = int(np.random.randint(0, 2 ** 31 - 1)) if seed is None else int(seed)
    # Under tf.distribute: one pipeline per worker on its own shard, batches per replica.
    strategy = getattr(mrcnn_model, "strategy", None)
    global_batch = distribution.global_batch_size(config, strategy)
    seed = distribution.broadcast_seed(strategy, seed)

    def train_input(batch_size, shard):
        return make_training_dataset(train_dataset, config, anchors_normalized, anchors_pixels,
                                     shuffle=True, augmentation=augmentation,
                                     no_augmentation_sources=no_augmentation_sources,
                                     seed=seed + mrcnn_model.epoch, batch_size=batch_size,
                                     shard=shard)

    def val_input(batch_size, shard):
        return make_training_dataset(val_dataset, config, anchors_normalized, anchors_pixels,
                                     shuffle=True, seed=seed + 1, batch_size=batch_size,
                                     shard=shard)

    train_ds = distribution.distribute_dataset(strategy, train_input, global_batch)
    val_ds = None
    if val_dataset is not None and config.VALIDATION_STEPS:
        val_ds = distribution.distribute_dataset(strategy, val_input, global_batch)

    # Only the chief writes into log_dir; other workers write to a temp folder removed below.
    dirs = distribution.WorkerDirs(mrcnn_model.log_dir, mrcnn_model.checkpoint_path, strategy)
    if dirs.chief:
        mrcnn_model.prepare_log_dir()
    else:
        os.makedirs(dirs.log_dir, exist_ok=True)
    # COCO evaluation callbacks go before TensorBoard: they add their figures to the epoch logs,
    # which the TensorBoard and History callbacks read afterwards.
    from mrcnn.eval.callback import CocoEvalCallback, evaluation_callback
    custom_callbacks = list(custom_callbacks or [])
    evaluators = [c for c in custom_callbacks if isinstance(c, CocoEvalCallback)]
    evaluators += evaluation_callback(mrcnn_model, val_dataset, evaluation)
    callbacks = [NonFiniteLossGuard()] + evaluators + [
        keras.callbacks.TensorBoard(log_dir=dirs.log_dir, histogram_freq=0,
                                    write_graph=False),
        ClassicCheckpoint(dirs.checkpoint_path), ReturnFreedMemory()]
    callbacks += [c for c in custom_callbacks if not isinstance(c, CocoEvalCallback)]

    logger.info("Starting at epoch %d. LR=%s", mrcnn_model.epoch, learning_rate)
    logger.info("Checkpoint Path: %s", mrcnn_model.checkpoint_path)
    mrcnn_model.set_trainable(resolve_layer_regex(layers), verbose=verbose)
    keras_model = mrcnn_model.keras_model
    with distribution.scope_of(strategy):
        # GRADIENT_CLIP_NORM is applied by the training step, after the replicas' gradients
        # are summed (an optimizer clipnorm would clip each replica's share).
        keras_model.compile(
            optimizer=precision.wrap_optimizer(
                classic_sgd(learning_rate, config.LEARNING_MOMENTUM), keras_model),
            jit_compile=bool(config.XLA))
    if mrcnn_model.epoch >= epochs:
        logger.warning("Nothing to train: the model is at epoch %d and epochs=%d",
                       mrcnn_model.epoch, epochs)
        dirs.cleanup()
        return None
    try:
        with distribution.scope_of(strategy):
            history = keras_model.fit(
                train_ds, initial_epoch=mrcnn_model.epoch, epochs=epochs,
                steps_per_epoch=config.STEPS_PER_EPOCH, callbacks=callbacks,
                validation_data=val_ds,
                validation_steps=config.VALIDATION_STEPS if val_ds else None, verbose=verbose)
    finally:
        dirs.cleanup()
    # An early stop (a callback setting stop_training) ends before ``epochs``: count what ran.
    if history.epoch:
        mrcnn_model.epoch = max(mrcnn_model.epoch, history.epoch[-1] + 1)
    return history
