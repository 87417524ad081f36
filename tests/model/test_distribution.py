"""Data-parallel training under tf.distribute (two logical CPU devices), GPU_COUNT handling.

The MirroredStrategy checks need two logical CPU devices, which TensorFlow only accepts before it
initialises its devices: they run in one fresh process (``strategy_checks.py``) whose JSON results
are asserted here, one test per property.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mrcnn.config import Config
from mrcnn.model import distribution

HERE = Path(__file__).resolve().parent


def _run_checks(tmp_path_factory, group):
    out = tmp_path_factory.mktemp("strategy") / "results.json"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, str(HERE / "strategy_checks.py"), str(out), group],
                          capture_output=True, text=True, timeout=1200, env=env,
                          cwd=str(HERE.parents[1]))
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def strategy_results(tmp_path_factory):
    return _run_checks(tmp_path_factory, "plain")


@pytest.fixture(scope="module")
def sync_bn_results(tmp_path_factory):
    return _run_checks(tmp_path_factory, "sync_bn")


def _check(results, key):
    """The numbers of one check; a check that raised fails its own test with the traceback."""
    assert key in results, "\n".join(results.get("errors", [])) or f"no result for {key!r}"
    return results[key]


def test_mirrored_training_runs_with_finite_losses(strategy_results):
    train = _check(strategy_results, "train")
    assert train["replicas"] == 2
    for name in ("loss", "rpn_class_loss", "mrcnn_mask_loss", "val_loss"):
        assert np.isfinite(train["losses"][name]).all(), (name, train["losses"])
    assert train["losses"]["loss"][0] > 0


def test_mirrored_checkpoint_loads_into_an_inference_model_that_detects(strategy_results):
    train = _check(strategy_results, "train")
    assert train["checkpoints"] == ["mask_rcnn_strategy_0001.h5"]
    # Every weight of the inference graph (the tiny backbone's model has 96).
    assert train["common_weights"] == train["inference_weights"] > 50
    assert train["max_weight_diff"] == 0.0
    assert train["detect_keys"] == ["class_ids", "masks", "rois", "scores"]
    assert train["detect_dtypes"] == {"rois": "int32", "class_ids": "int32",
                                      "scores": "float32", "masks": "bool"}
    assert train["detect_count"] > 0
    assert train["mask_shape"][:2] == [128, 128] and train["mask_shape"][2] == train["detect_count"]


def test_two_replicas_of_one_image_step_like_one_replica_of_two(strategy_results):
    eq = _check(strategy_results, "equivalence")
    assert eq["unchanged_trainable"] == [] and eq["trainable_weights"] > 50
    assert eq["moving_statistics_changed"] == 0  # frozen BatchNorm
    # Same update within float32 noise; a per-replica L2 decay, loss sum or clipping would
    # differ by a sizeable fraction of the update.
    assert eq["max_delta_diff"] <= 1e-3 * eq["max_delta"] + 1e-7, eq
    for name, value in eq["losses_single"].items():
        assert np.isclose(eq["losses_mirrored"][name], value, rtol=1e-4, atol=1e-6), (name, eq)


def test_gpu_count_builds_a_strategy_and_a_contradiction_is_an_error(strategy_results):
    gpu = _check(strategy_results, "gpu_count")
    assert gpu["replicas_from_gpu_count"] == 2
    assert "GPU_COUNT = 3" in gpu["contradiction_error"]
    assert "2 replica(s)" in gpu["contradiction_error"]


class TwoGpus(Config):
    NAME = "twogpus"
    GPU_COUNT = 2
    BACKBONE = "resnet50"
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64


def test_gpu_count_larger_than_the_gpus_present_is_a_clear_error(tmp_path):
    import tensorflow as tf
    from mrcnn.model.maskrcnn import MaskRCNN
    if tf.config.list_logical_devices("GPU"):
        pytest.skip("this machine has GPUs")
    with pytest.raises(ValueError, match=r"Config.GPU_COUNT = 2 .* sees 0: none"):
        MaskRCNN("training", TwoGpus(), str(tmp_path))
    with pytest.raises(ValueError, match=r"GPU_COUNT = 4 .* sees 3: \['/gpu:0', 'a', 'b'\]"):
        distribution.strategy_for_gpu_count(4, devices=["/gpu:0", "a", "b"])
    assert distribution.strategy_for_gpu_count(1) is None


def test_parallel_model_is_importable_and_says_what_to_use():
    from mrcnn.parallel_model import ParallelModel
    with pytest.raises(NotImplementedError, match="GPU_COUNT.*MirroredStrategy"):
        ParallelModel(None, 2)


def test_input_shards_partition_each_epoch():
    from mrcnn.data.pipeline import _shard_positions
    shards = [_shard_positions(7, (3, i)) for i in range(3)]
    assert sorted(np.concatenate(shards).tolist()) == list(range(7))
    with pytest.raises(ValueError, match="3 input shards"):
        _shard_positions(2, (3, 0))


def test_synchronised_batch_norm_makes_two_replicas_step_like_one(sync_bn_results):
    eq = _check(sync_bn_results, "sync_bn")
    # Trainable BatchNorm: every trainable weight and every moving statistic moves, and the
    # statistics of 2 replicas x 1 image are those of the 2-image batch (unsynchronised, each
    # replica would normalise with its own image's moments and the update would differ).
    assert eq["unchanged_trainable"] == [] and eq["trainable_weights"] > 50
    assert eq["moving_statistics_changed"] > 10
    assert eq["max_delta_diff"] <= 1e-3 * eq["max_delta"] + 1e-6, eq


def _free_ports(n):
    import socket
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_train_to_identical_weights_and_only_the_chief_writes(tmp_path):
    model_dir, scratch = tmp_path / "logs", tmp_path / "tmp"
    scratch.mkdir()
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = dict(os.environ, TF_CONFIG=json.dumps(tf_config), TMPDIR=str(scratch),
                   TF_CPP_MIN_LOG_LEVEL="2")
        procs.append(subprocess.Popen(
            [sys.executable, str(HERE / "multiworker_worker.py"), str(model_dir),
             str(tmp_path / f"worker{index}.json")], env=env, cwd=str(HERE.parents[1]),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=1200)
            assert proc.returncode == 0, err[-4000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    out = [json.loads((tmp_path / f"worker{i}.json").read_text()) for i in range(2)]
    assert [o["chief"] for o in out] == [True, False]
    assert out[0]["replicas"] == out[1]["replicas"] == 2 and out[0]["epoch"] == 1
    assert out[0]["digest"] == out[1]["digest"]
    # Distinct shards of the epoch's image order (24 images: 12 each, fewer than that loaded).
    assert out[0]["loaded"] and out[1]["loaded"]
    assert not set(out[0]["loaded"]) & set(out[1]["loaded"])
    checkpoints = sorted(p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*.h5"))
    assert len(checkpoints) == 1 and checkpoints[0].endswith("mask_rcnn_multiworker_0001.h5")
    assert not [p for p in scratch.iterdir() if p.name.startswith("mrcnn_worker_")]


def test_gradients_are_clipped_like_clip_by_norm_without_squared_temporaries():
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(3)
    grads = [tf.constant(rng.normal(0, s, shape), tf.float32)
             for s, shape in ((3.0, (40, 30)), (0.01, (7,)), (1.0, (2, 3, 4, 5)))]
    grads.append(tf.zeros([6]))                     # a zero gradient stays zero
    grads.insert(1, None)                           # a weight without gradient stays None
    out = distribution.aggregate_gradients(grads, 5.0)
    assert out[1] is None
    for got, g in zip(out[:1] + out[2:], grads[:1] + grads[2:]):
        np.testing.assert_allclose(got, tf.clip_by_norm(g, 5.0), rtol=1e-6, atol=1e-9)
    assert np.linalg.norm(out[0]) == pytest.approx(5.0, rel=1e-6)   # clipped
    np.testing.assert_array_equal(out[2], grads[2])                  # left alone
    # Under loss scaling the limit is scaled with the gradients.
    scaled = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(), initial_scale=8.0)
    np.testing.assert_allclose(
        distribution.aggregate_gradients([grads[0] * 8.0], 5.0, scaled)[0],
        tf.clip_by_norm(grads[0], 5.0) * 8.0, rtol=1e-6)
    # One fused norm and one multiply per gradient: no squared copy of it.
    specs = [tf.TensorSpec(g.shape, tf.float32) for g in grads if g is not None]
    graph = tf.function(lambda *g: distribution.aggregate_gradients(list(g), 5.0),
                        autograph=False).get_concrete_function(*specs).graph
    ops = graph.get_operations()
    types = [op.type for op in ops]
    assert types.count("L2Loss") == len(specs) and "Square" not in types
    value_sized = [op for op in ops if op.type == "Mul" and op.outputs[0].shape.rank]
    assert len(value_sized) == len(specs)
