"""Training end to end on a tiny config: optimisation, layer presets, checkpoints and resuming."""
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn.config import Config
from mrcnn.data.pipeline import make_training_dataset, pyramid_anchors_for_config
from mrcnn.model.maskrcnn import MaskRCNN
from mrcnn.model.optimizer import classic_sgd
from mrcnn.model.training import LAYER_PRESETS, TimeLimit
from samples.shapes.shapes import make_dataset


class TinyTrainConfig(Config):
    NAME = "tinytrain"
    IMAGES_PER_GPU = 2
    NUM_CLASSES = 4
    BACKBONE = "resnet50"
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    TRAIN_BN = None
    PRE_NMS_LIMIT = 300
    POST_NMS_ROIS_TRAINING = 64
    POST_NMS_ROIS_INFERENCE = 32
    RPN_TRAIN_ANCHORS_PER_IMAGE = 32
    TRAIN_ROIS_PER_IMAGE = 16
    MAX_GT_INSTANCES = 6
    DETECTION_MAX_INSTANCES = 8
    STEPS_PER_EPOCH = 2
    VALIDATION_STEPS = 1
    LEARNING_RATE = 0.01


@pytest.fixture(scope="module")
def shapes():
    train = make_dataset(8, split="train", seed=3, height=128, width=128)
    val = make_dataset(4, split="val", seed=3, height=128, width=128)
    return train, val


@pytest.fixture(scope="module")
def training_model(tmp_path_factory):
    return MaskRCNN(mode="training", config=TinyTrainConfig(),
                    model_dir=str(tmp_path_factory.mktemp("logs")))


def _trainable_weight_layers(model):
    names = set()
    for layer in model.keras_model.layers:
        sub_layers = layer.layers if isinstance(layer, keras.Model) else [layer]
        for sub in sub_layers:
            if sub.weights and sub.trainable:
                names.add(sub.name)
    return names


def _all_weight_layers(model):
    names = set()
    for layer in model.keras_model.layers:
        sub_layers = layer.layers if isinstance(layer, keras.Model) else [layer]
        names.update(sub.name for sub in sub_layers if sub.weights)
    return names


def test_layer_presets_select_exactly_the_classic_layers(training_model):
    all_layers = _all_weight_layers(training_model)
    training_model.set_trainable(LAYER_PRESETS["heads"], verbose=0)
    heads = _trainable_weight_layers(training_model)
    assert heads == {n for n in all_layers if re.match(r"(mrcnn_|rpn_|fpn_)", n)}
    assert "rpn_conv_shared" in heads and "fpn_p2" in heads and "mrcnn_mask" in heads
    assert not any(n.startswith(("res", "bn", "conv1")) for n in heads)

    training_model.set_trainable(LAYER_PRESETS["4+"], verbose=0)
    four_plus = _trainable_weight_layers(training_model)
    stage45 = {n for n in all_layers if re.match(r"(res|bn)[45]", n)}
    assert stage45 and four_plus == heads | stage45
    training_model.set_trainable(".*", verbose=0)
    assert _trainable_weight_layers(training_model) == all_layers


def test_train_on_batch_and_test_on_batch_take_the_input_dict(training_model, shapes):
    # train_on_batch passes (x, y, sample_weight) to train_step, fit passes x itself.
    train, _ = shapes
    config = training_model.config
    anchors_px, anchors = pyramid_anchors_for_config(config)
    batch = next(iter(make_training_dataset(train, config, anchors, anchors_px, shuffle=False,
                                            seed=0)))
    km = training_model.keras_model
    km.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), jit_compile=False)
    trained = km.train_on_batch(batch, return_dict=True)
    tested = km.test_on_batch(batch, return_dict=True)
    assert set(trained) == set(tested) >= {"loss", "mrcnn_mask_loss"}
    assert all(np.isfinite(v) for v in trained.values())
    # Learning rate 0: the weights did not move, so a second step sees the same RPN loss.
    again = km.train_on_batch(batch, return_dict=True)
    assert np.isclose(trained["rpn_class_loss"], again["rpn_class_loss"], rtol=1e-4)


def test_weight_decay_is_added_to_each_gradient_once_that_gradient_exists(training_model):
    km = training_model.keras_model
    km.compile(optimizer=classic_sgd(0.01, 0.9), jit_compile=False)
    variables = km.trainable_variables
    decay = km.weight_decay
    assert decay == training_model.config.WEIGHT_DECAY > 0
    grads = [tf.fill(tf.shape(v), 2.0) for v in variables]
    grads[0] = None                       # a weight the loss does not reach still decays
    out = km._add_weight_decay(grads, variables)
    for v, g, o in zip(variables, grads, out):
        base = 0.0 if g is None else 2.0
        expected = base + (0.0 if v.name in ("gamma", "beta") else decay * np.asarray(v))
        np.testing.assert_allclose(np.asarray(o), expected + np.zeros(v.shape), rtol=1e-6)

    # Traced: each weight is read for its decay only after its gradient (a control input), so
    # no weight-sized decay term waits for the backward pass at the step's memory peak.
    specs = [tf.TensorSpec(v.shape, tf.float32) for v in variables]
    graph = tf.function(lambda *g: km._add_weight_decay(list(g), variables),
                        autograph=False).get_concrete_function(*specs).graph
    reads = [op for op in graph.get_operations() if op.type == "ReadVariableOp"]
    decayed = [v for v in variables if v.name not in ("gamma", "beta")]
    assert len(reads) == len(decayed)
    assert all(op.control_inputs for op in reads)


def test_overfitting_a_fixed_batch_drives_the_loss_down(training_model, shapes):
    train, _ = shapes
    config = training_model.config
    anchors_px, anchors = pyramid_anchors_for_config(config)
    np.testing.assert_allclose(anchors, training_model.get_anchors(config.IMAGE_SHAPE))
    batch = next(iter(make_training_dataset(train, config, anchors, anchors_px, shuffle=False,
                                            seed=0)))
    fixed = tf.data.Dataset.from_tensors(batch).repeat()
    km = training_model.keras_model
    training_model.set_trainable(".*", verbose=0)
    km.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9, clipnorm=5.0),
               jit_compile=False)
    losses = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: losses.append(logs["loss"]))
    # Per-step losses: the tracker averages within an epoch, so run one step per epoch.
    km.fit(fixed, steps_per_epoch=1, epochs=100, verbose=0, callbacks=[record])
    first, last = np.mean(losses[:3]), np.mean(losses[-10:])
    assert np.isfinite(losses).all()
    assert last < first / 5, (first, last)


class _Crash(Exception):
    pass


class CrashDuringEpoch(keras.callbacks.Callback):
    """Simulates a killed run: raises in the middle of the given (0-based) epoch."""

    def __init__(self, epoch):
        super().__init__()
        self.crash_epoch = epoch
        self.current = None

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.crash_epoch:
            raise _Crash(f"killed during epoch {self.current + 1}")


def test_train_checkpoints_then_crash_then_resume(tmp_path, shapes):
    train, val = shapes
    config = TinyTrainConfig()
    model = MaskRCNN(mode="training", config=config, model_dir=str(tmp_path))
    with pytest.raises(_Crash):
        model.train(train, val, learning_rate=config.LEARNING_RATE, epochs=3, layers="heads",
                    custom_callbacks=[CrashDuringEpoch(1)], verbose=0, seed=1)
    files = sorted(os.listdir(model.log_dir))
    checkpoints = [f for f in files if f.endswith(".h5")]
    assert checkpoints == ["mask_rcnn_tinytrain_0001.h5"]
    assert not [f for f in files if f.endswith(".tmp")]
    assert any(f.startswith("events") for f in os.listdir(os.path.join(model.log_dir, "train")))

    resumed = MaskRCNN(mode="training", config=config, model_dir=str(tmp_path))
    last = resumed.find_last()
    assert last.endswith("mask_rcnn_tinytrain_0001.h5")
    resumed.load_weights(last, by_name=True)
    assert resumed.epoch == 1 and resumed.log_dir == model.log_dir
    history = resumed.train(train, val, learning_rate=config.LEARNING_RATE, epochs=3,
                            layers="all", verbose=0, seed=2)
    assert history.epoch == [1, 2]
    assert set(history.history) >= {"loss", "rpn_class_loss", "rpn_bbox_loss",
                                    "mrcnn_class_loss", "mrcnn_bbox_loss", "mrcnn_mask_loss",
                                    "val_loss", "val_mrcnn_mask_loss"}
    assert all(np.isfinite(v).all() for v in history.history.values())
    checkpoints = sorted(f for f in os.listdir(model.log_dir) if f.endswith(".h5"))
    assert checkpoints == [f"mask_rcnn_tinytrain_{e:04d}.h5" for e in (1, 2, 3)]
    assert resumed.epoch == 3

    # Every checkpoint on disk loads into an inference model and changes its weights.
    inference = MaskRCNN(mode="inference", config=config, model_dir=str(tmp_path))
    previous = None
    for name in checkpoints:
        inference.load_weights(os.path.join(model.log_dir, name), by_name=True)
        kernel = inference.keras_model.get_layer("mrcnn_mask").get_weights()[0].copy()
        if previous is not None:
            assert not np.array_equal(kernel, previous)
        previous = kernel
    image = train.load_image(train.image_ids[0])
    result = inference.detect([image, image])[0]
    assert result["masks"].shape[:2] == image.shape[:2]


class _StopFlagModel:
    stop_training = False


def test_time_limit_counts_from_the_first_batch_or_a_shared_start():
    import time

    limit = TimeLimit(10.0)
    limit.set_model(_StopFlagModel())
    assert limit.start is None and not limit.expired()   # nothing to count before training
    limit.on_train_batch_begin(0)
    first = limit.start
    limit.on_train_batch_end(0)
    limit.on_train_batch_begin(1)
    assert limit.start == first and not limit.model.stop_training and not limit.expired()
    assert 0.0 <= limit.elapsed_minutes < 10.0

    # A start two minutes ago: a one-minute budget is spent, a three-minute one is not.
    start = time.monotonic() - 120.0
    late, early = TimeLimit(1.0, start=start), TimeLimit(3.0, start=start)
    for cb in (late, early):
        cb.set_model(_StopFlagModel())
        cb.on_train_batch_begin(0)
        cb.on_train_batch_end(0)
        assert cb.start == start and cb.elapsed_minutes >= 2.0
    assert late.expired() and late.model.stop_training
    assert not early.expired() and not early.model.stop_training

    unlimited = TimeLimit(None, start=start)
    unlimited.set_model(_StopFlagModel())
    unlimited.on_train_batch_end(0)
    assert not unlimited.expired() and not unlimited.model.stop_training
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="minutes"):
            TimeLimit(bad)
