"""Reliability catalogue, group "training faults": bad train() arguments, a loss that goes NaN,
runs started together, leftover temp files, a full disk and a read-only folder during a
checkpoint write. One shared tiny training model; only the NaN case runs fit()."""
import contextlib
import os
import resource
import signal
import subprocess
import time

import numpy as np
import pytest

from mrcnn.model.checkpoints import remove_stale_temp_files
from mrcnn.model.guards import NonFiniteLossError
from mrcnn.model.maskrcnn import MaskRCNN
from mrcnn.model.training import ClassicCheckpoint
from mrcnn.model.weights_io import inspect_weights_file
from tests.reliability.tiny import SquaresDataset, TinyConfig

DATASET = SquaresDataset(count=2)

BAD_ARGUMENTS = [
    # (case, train() keyword overrides, error, text)
    ("layers-regex-matches-nothing", {"layers": "backbone_.*"}, ValueError,
     "matches no layer"),                                    # failed inside tf.add_n before
    ("layers-typo-in-preset", {"layers": "head"}, ValueError, "layers='head'"),
    ("layers-invalid-regex", {"layers": "(mrcnn_"}, ValueError, "not a valid regex"),
    ("layers-none", {"layers": None}, TypeError, "preset"),
    ("layers-int", {"layers": 4}, TypeError, "preset"),
    ("learning-rate-string", {"learning_rate": "0.001"}, ValueError, "learning_rate"),
    ("learning-rate-negative", {"learning_rate": -0.1}, ValueError, "learning_rate"),
    ("learning-rate-zero", {"learning_rate": 0}, ValueError, "learning_rate"),
    ("learning-rate-nan", {"learning_rate": float("nan")}, ValueError, "learning_rate"),
    ("epochs-float", {"epochs": 1.5}, ValueError, "epochs"),
    ("epochs-negative", {"epochs": -1}, ValueError, "epochs"),
]


@pytest.mark.parametrize("case,overrides,error,text", BAD_ARGUMENTS,
                         ids=[b[0] for b in BAD_ARGUMENTS])
def test_bad_train_argument_is_refused_before_the_graph(tiny_training, case, overrides, error,
                                                        text):
    kwargs = {"learning_rate": 0.01, "epochs": 1, "layers": "heads"}
    kwargs.update(overrides)
    with pytest.raises(error) as err:
        tiny_training.train(DATASET, None, verbose=0, **kwargs)
    assert text in str(err.value)


def test_train_on_an_inference_model_says_which_mode(tiny_inference):
    with pytest.raises(RuntimeError, match="mode='training'"):
        tiny_inference.train(DATASET, None, 0.01, 1, "heads")


def test_non_finite_loss_stops_at_once_naming_epoch_step_and_loss(tiny_training):
    # Diverged weights (what a too-high learning rate produces): NaN in the RPN classifier, so
    # the loss of the very first step is NaN.
    kept = tiny_training.keras_model.get_weights()
    layer = tiny_training.keras_model.get_layer("rpn_model").get_layer("rpn_class_raw")
    layer.weights[0].assign(np.full(layer.weights[0].shape, np.nan, np.float32))
    try:
        with pytest.raises(NonFiniteLossError) as err:
            tiny_training.train(DATASET, None, learning_rate=0.01, epochs=1, layers="all",
                                verbose=0)
    finally:
        tiny_training.keras_model.set_weights(kept)  # the model is shared with other cases
    message = str(err.value)
    assert "epoch 1" in message and "step 1:" in message and "rpn_class_loss=nan" in message
    written = [f for f in os.listdir(tiny_training.log_dir) if f.endswith(".h5")]
    assert written == []  # the checkpoint of the broken epoch is not written


def _fresh(model_dir, name="tiny"):
    """A MaskRCNN with only what the log-folder code needs (no Keras graph)."""
    model = MaskRCNN.__new__(MaskRCNN)
    config = TinyConfig()
    config.NAME = name
    model.config, model.model_dir = config, str(model_dir)
    model.set_log_dir()
    return model


def test_two_runs_started_in_the_same_second_get_their_own_folders(tmp_path):
    first, second = _fresh(tmp_path), _fresh(tmp_path)
    assert first.log_dir == second.log_dir  # same config, same second
    a, b = first.prepare_log_dir(), second.prepare_log_dir()
    assert a != b and os.path.isdir(a) and os.path.isdir(b)
    assert b == a + "_2"
    assert first.checkpoint_path.startswith(a) and second.checkpoint_path.startswith(b)
    assert first.prepare_log_dir() == a  # a second train() call keeps its folder


def test_run_folder_names_resume_with_their_epoch(tmp_path):
    model = _fresh(tmp_path)
    model.set_log_dir(str(tmp_path / "tiny20261201T101010_3" / "mask_rcnn_tiny_0007.h5"))
    assert model.epoch == 7 and model.log_dir == str(tmp_path / "tiny20261201T101010_3")
    assert model.prepare_log_dir() == str(tmp_path / "tiny20261201T101010_3")


def test_leftover_temp_files_of_an_interrupted_write_are_removed(tmp_path):
    run = tmp_path / "tiny20261201T101010"
    run.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    leftover = run / f".mask_rcnn_tiny_0002.h5.{dead.pid}-{'a' * 32}.tmp"
    live = run / f".mask_rcnn_tiny_0002.h5.{os.getppid()}-{'b' * 32}.tmp"
    old_style = run / f".mask_rcnn_tiny_0001.h5.{'c' * 32}.tmp"
    for path in (leftover, live, old_style):
        path.write_bytes(b"partial")
    os.utime(old_style, (time.time() - 7200, time.time() - 7200))
    removed = remove_stale_temp_files(str(tmp_path), "tiny")
    assert sorted(removed) == sorted([str(leftover), str(old_style)])
    assert live.exists()  # a writer that is still running keeps its file


@contextlib.contextmanager
def _small_filesystem(path, size_bytes):
    """A real filesystem that fills up: a tmpfs of ``size_bytes`` when we may mount (root),
    else a file-size limit (RLIMIT_FSIZE) on this process; yields the errno to expect."""
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs",
                              str(path)], capture_output=True).returncode == 0
    if mounted:
        try:
            yield "tmpfs"
        finally:
            subprocess.run(["umount", "-l", str(path)], check=False)
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size_bytes, hard))
    try:
        yield "rlimit"
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def test_full_disk_during_a_checkpoint_write_keeps_the_previous_one(tiny_training, tmp_path):
    probe = tmp_path / "probe.h5"
    tiny_training.save_weights(str(probe))
    size = probe.stat().st_size
    folder = tmp_path / "full"
    checkpoint = ClassicCheckpoint(str(folder / "mask_rcnn_tiny_{epoch:04d}.h5"))
    checkpoint.set_model(tiny_training.keras_model)
    with _small_filesystem(folder, int(size * 1.5)) as how:
        checkpoint.on_epoch_end(0)                      # epoch 1 fits
        with pytest.raises(OSError) as err:
            checkpoint.on_epoch_end(1)                  # epoch 2 does not
        assert str(folder) in str(err.value)            # the message names the folder
        names = sorted(os.listdir(folder))
        assert names == ["mask_rcnn_tiny_0001.h5"], (how, names)  # no temp file left
        assert inspect_weights_file(folder / "mask_rcnn_tiny_0001.h5") == (True, "ok")


def test_read_only_folder_during_a_checkpoint_write_names_it(tiny_training, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                      capture_output=True).returncode != 0:
        os.chmod(folder, 0o500)  # not root: permissions are enough
    try:
        with pytest.raises(OSError) as err:
            tiny_training.save_weights(str(folder / "mask_rcnn_tiny_0001.h5"))
        assert str(folder) in str(err.value)
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)
        os.chmod(folder, 0o700)
