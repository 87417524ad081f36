"""COCO AP during training: CocoEvalCallback and train(evaluation=K), on a tiny real model."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from mrcnn.config import Config
from mrcnn.eval.callback import EVAL_LOG_KEYS, CocoEvalCallback, evaluation_callback
from mrcnn.eval.coco_eval import evaluate_coco
from mrcnn.model.maskrcnn import MaskRCNN
from samples.shapes.shapes import make_dataset


class TinyEvalConfig(Config):
    NAME = "tinyeval"
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
    # Low, so that the barely trained model may detect something (the comparison below does
    # not depend on it: it compares the raw outputs of every proposal).
    DETECTION_MIN_CONFIDENCE = 0.05
    STEPS_PER_EPOCH = 1
    VALIDATION_STEPS = 1


@pytest.fixture(scope="module")
def data():
    return (make_dataset(6, split="train", seed=5, height=128, width=128),
            make_dataset(3, split="val", seed=5, height=128, width=128))


class _Recorder(CocoEvalCallback.__mro__[1]):  # a plain keras Callback
    """Runs after the evaluator: what it saw at each epoch end."""

    def __init__(self, evaluator):
        super().__init__()
        self.evaluator = evaluator
        self.models, self.logs = [], []

    def on_epoch_end(self, epoch, logs=None):
        self.models.append(id(self.evaluator.inference_model))
        self.logs.append(dict(logs))


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    train, val = data
    model = MaskRCNN("training", TinyEvalConfig(), str(tmp_path_factory.mktemp("evallogs")))
    evaluator = CocoEvalCallback(model, val, every=1, limit=3)
    recorder = _Recorder(evaluator)
    history = model.train(train, None, learning_rate=0.01, epochs=2, layers="heads",
                          custom_callbacks=[recorder, evaluator], verbose=0, seed=1)
    return model, evaluator, recorder, history


def test_figures_reach_history_progress_logs_and_tensorboard(trained):
    model, evaluator, recorder, history = trained
    for key in EVAL_LOG_KEYS:
        assert len(history.history[key]) == 2, key
        assert all(-1.0 <= v <= 1.0 for v in history.history[key])
    # The recorder (a later callback, as the progress bar and History are) saw them in the logs.
    assert all(set(EVAL_LOG_KEYS) <= set(logs) for logs in recorder.logs)
    assert [epoch for epoch, _ in evaluator.results] == [1, 2]
    events = tf.io.gfile.glob(os.path.join(model.log_dir, "validation", "events.out.*"))
    assert events, "TensorBoard wrote no validation events"
    tags = set()
    for path in events:
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(value.tag for value in event.summary.value)
    assert {"epoch_mask_AP", "epoch_box_AP50"} <= tags


def test_inference_model_built_once_and_weights_are_the_training_weights(trained, data):
    model, evaluator, recorder, _ = trained
    assert len(set(recorder.models)) == 1 and recorder.models[0] == id(evaluator.inference_model)
    for src, dst in evaluator._copy.pairs:
        np.testing.assert_array_equal(np.asarray(src), np.asarray(dst))
    # Independent check of the pairing: the last checkpoint loaded through the .h5 reader (by
    # layer name, another code path) gives the same raw network outputs (class probabilities and
    # boxes of every proposal: never empty, unlike the detections of a barely trained model)
    # and the same AP.
    fresh = evaluator.inference_model
    val = data[1]
    images = [val.load_image(i) for i in evaluator.image_ids]
    molded, metas, _ = fresh.mold_inputs(images)
    anchors = fresh._batched_anchors(molded.shape[1:3], len(images))
    before = [np.asarray(t) for t in fresh.keras_model([molded, metas, anchors], training=False)]
    for _, dst in evaluator._copy.pairs:
        dst.assign(tf.zeros_like(dst))
    fresh.load_weights(model.find_last(), by_name=True)
    after = [np.asarray(t) for t in fresh.keras_model([molded, metas, anchors], training=False)]
    for a, b in zip(before, after):
        np.testing.assert_allclose(a, b, atol=1e-5)
    metrics = evaluate_coco(val, fresh.detect(images), image_ids=evaluator.image_ids)
    last = evaluator.results[-1][1]
    assert last["val_mask_AP"] == pytest.approx(metrics["segm"]["AP"], abs=1e-6)
    assert last["val_box_AP50"] == pytest.approx(metrics["bbox"]["AP50"], abs=1e-6)


def test_best_checkpoint_beside_epoch_checkpoints(trained):
    model, evaluator, _, history = trained
    files = sorted(os.listdir(model.log_dir))
    assert "mask_rcnn_tinyeval_0001.h5" in files and "mask_rcnn_tinyeval_0002.h5" in files
    assert "best_mask_rcnn_tinyeval.h5" in files
    assert model.find_last().endswith("mask_rcnn_tinyeval_0002.h5")
    with open(os.path.join(model.log_dir, "best_mask_rcnn_tinyeval.json")) as f:
        record = json.load(f)
    values = history.history["val_mask_AP"]
    assert record["epoch"] == evaluator.best_epoch == 1 + int(np.argmax(values))
    assert record["value"] == pytest.approx(max(values))


def test_every_k_epochs_and_train_argument(trained, data):
    model, first, _, _ = trained
    val = data[1]
    evaluator = CocoEvalCallback(model, val, every=2, limit=2, best_checkpoint=False,
                                 inference_model=first.inference_model)
    logs = {"loss": 1.0}
    evaluator.on_epoch_end(0, logs)          # epoch 1: not a multiple of 2
    assert set(logs) == {"loss"} and evaluator.results == []
    evaluator.on_epoch_end(1, logs)          # epoch 2
    assert set(EVAL_LOG_KEYS) <= set(logs)
    assert evaluation_callback(model, val, None) == []
    [made] = evaluation_callback(model, val, 3)
    assert made.every == 3 and made.best_checkpoint and len(made.image_ids) == 3


def test_bad_arguments_are_named(trained, data):
    model, _, _, _ = trained
    val = data[1]
    with pytest.raises(ValueError, match="every must be an integer >= 1"):
        CocoEvalCallback(model, val, every=0)
    with pytest.raises(ValueError, match="monitor"):
        CocoEvalCallback(model, val, monitor="val_loss")
    with pytest.raises(ValueError, match="needs a val_dataset"):
        evaluation_callback(model, None, 1)
    with pytest.raises(ValueError, match="expected None, an int K"):
        evaluation_callback(model, val, "often")

    class CropConfig(TinyEvalConfig):
        IMAGE_RESIZE_MODE = "crop"
    with pytest.raises(ValueError, match="IMAGE_RESIZE_MODE='crop'"):
        CocoEvalCallback(model, val, inference_config=CropConfig())
    with pytest.raises(ValueError, match="mode='inference'"):
        CocoEvalCallback(model, val, inference_model=model)
