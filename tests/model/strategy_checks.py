"""Strategy checks run in a fresh process (``python strategy_checks.py OUT.json [GROUP]``).

Two logical CPU devices must be configured before TensorFlow initialises its devices, which the
pytest process has long done; ``test_distribution.py`` runs this file in a subprocess and asserts
on the JSON it writes. Each check stores its numbers, not a verdict, so the asserts stay in the
test.
"""
import json
import os
import sys
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
tf.config.threading.set_inter_op_parallelism_threads(2)

import keras  # noqa: E402

from mrcnn.data.pipeline import make_training_dataset, pyramid_anchors_for_config  # noqa: E402
from mrcnn.model import distribution  # noqa: E402
from mrcnn.model.maskrcnn import MaskRCNN  # noqa: E402
from mrcnn.model.optimizer import MomentumSGD  # noqa: E402
from samples.shapes.shapes import make_dataset  # noqa: E402
from tests.model.distributed_config import TinyStrategyConfig as StrategyConfig  # noqa: E402

DEVICES = ["/cpu:0", "/cpu:1"]


class TwoImagesConfig(StrategyConfig):
    IMAGES_PER_GPU = 2


class InferenceConfig(StrategyConfig):
    DETECTION_MIN_CONFIDENCE = 0.0


def train_and_detect(model, results, tmp):
    """model.train() of a model built under a 2-replica MirroredStrategy; detect from its file."""
    train, val = (make_dataset(6, split=s, seed=5, height=128, width=128) for s in ("train", "val"))
    history = model.train(train, val, learning_rate=0.01, epochs=1, layers="all", verbose=0,
                          seed=1)
    checkpoint = model.find_last()
    inference = MaskRCNN("inference", InferenceConfig(), tmp)
    inference.load_weights(checkpoint, by_name=True)
    trained = {w.path: np.asarray(w) for w in model.keras_model.weights}
    loaded = {w.path: np.asarray(w) for w in inference.keras_model.weights}
    common = sorted(set(trained) & set(loaded))
    r = inference.detect([val.load_image(0)])[0]
    results["train"] = {
        "replicas": distribution.replica_count(model.strategy),
        "losses": {k: [float(x) for x in v] for k, v in history.history.items()},
        # The run folder also holds TensorBoard's train/ and validation/ folders.
        "checkpoints": sorted(f for f in os.listdir(os.path.dirname(checkpoint))
                              if f.endswith(".h5")),
        "common_weights": len(common),
        "inference_weights": len(loaded),
        "max_weight_diff": max(float(np.abs(trained[k] - loaded[k]).max()) for k in common),
        "detect_keys": sorted(r),
        "detect_dtypes": {k: str(v.dtype) for k, v in r.items()},
        "detect_count": int(r["rois"].shape[0]),
        "mask_shape": list(r["masks"].shape),
    }


def _one_step(model, batch, initial):
    km = model.keras_model
    km.set_weights(initial)
    model.set_trainable(".*", verbose=0)
    with distribution.scope_of(model.strategy):
        km.compile(optimizer=MomentumSGD(learning_rate=0.1, momentum=0.9),
                   jit_compile=False)
        history = km.fit(tf.data.Dataset.from_tensors(batch), steps_per_epoch=1, epochs=1,
                         verbose=0)
    return [np.asarray(w) for w in km.weights], {k: float(v[0]) for k, v in history.history.items()}


def _compare_layouts(tmp, one_replica_config, two_replica_config):
    """One step of 1 replica x 2 images and of 2 replicas x 1 image from the same weights."""
    data = make_dataset(2, split="train", seed=11, height=128, width=128)
    anchors_px, anchors = pyramid_anchors_for_config(one_replica_config)
    batch = next(iter(make_training_dataset(data, one_replica_config, anchors, anchors_px,
                                            shuffle=False, seed=0)))
    single = MaskRCNN("training", one_replica_config, tmp)
    initial = [np.asarray(w) for w in single.keras_model.weights]
    with tf.distribute.MirroredStrategy(DEVICES).scope():
        mirrored = MaskRCNN("training", two_replica_config, tmp)
    after_single, losses_single = _one_step(single, batch, initial)
    after_mirrored, losses_mirrored = _one_step(mirrored, batch, initial)
    delta_single = [a - b for a, b in zip(after_single, initial)]
    delta_mirrored = [a - b for a, b in zip(after_mirrored, initial)]
    return mirrored, {
        "max_delta": max(float(np.abs(d).max()) for d in delta_single),
        "max_delta_diff": max(float(np.abs(a - b).max())
                              for a, b in zip(delta_single, delta_mirrored)),
        "changed_weights": sum(bool(np.abs(d).max() > 0) for d in delta_single),
        "trainable_weights": len(single.keras_model.trainable_weights),
        "unchanged_trainable": [w.path for w, d in zip(single.keras_model.weights, delta_single)
                                if w.trainable and not np.abs(d).max() > 0],
        "moving_statistics_changed": sum(
            bool(np.abs(d).max() > 0) for w, d in zip(single.keras_model.weights, delta_single)
            if "moving_" in w.path),
        "losses_single": losses_single,
        "losses_mirrored": losses_mirrored,
    }


def check_two_replicas_equal_one_then_train_and_detect(results, tmp):
    mirrored, results["equivalence"] = _compare_layouts(tmp, TwoImagesConfig(), StrategyConfig())
    train_and_detect(mirrored, results, tmp)


class SyncBnConfig(StrategyConfig):
    TRAIN_BN = None
    SYNC_BATCH_NORM = True


class SyncBnTwoImages(SyncBnConfig):
    IMAGES_PER_GPU = 2


def check_sync_batch_norm(results, tmp):
    results["sync_bn"] = _compare_layouts(tmp, SyncBnTwoImages(), SyncBnConfig())[1]


def check_gpu_count(results, tmp):
    strategy = distribution.strategy_for_gpu_count(2, devices=DEVICES)
    out = {"replicas_from_gpu_count": distribution.replica_count(strategy)}

    class Three(StrategyConfig):
        GPU_COUNT = 3
    try:
        with tf.distribute.MirroredStrategy(DEVICES).scope():
            MaskRCNN("training", Three(), tmp)
        out["contradiction_error"] = None
    except ValueError as exc:
        out["contradiction_error"] = str(exc)
    results["gpu_count"] = out


#: Check groups, one process each: synchronised BatchNorm makes TF assign collective keys at
#: trace time (mrcnn.model.distribution), after which a second MirroredStrategy in the same
#: process would reuse the first one's keys.
CHECKS = {
    "plain": (check_gpu_count, check_two_replicas_equal_one_then_train_and_detect),
    "sync_bn": (check_sync_batch_norm,),
}


def main(out_path, group="plain"):
    import tempfile
    results = {}
    for check in CHECKS[group]:
        try:
            with tempfile.TemporaryDirectory() as tmp:
                check(results, tmp)
        except Exception:  # noqa: BLE001 - reported to the test, which fails with it
            results.setdefault("errors", []).append(traceback.format_exc())
    with open(out_path, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main(*sys.argv[1:])
