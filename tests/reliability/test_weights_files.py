"""Reliability catalogue, group "weights files": bad, corrupted, truncated, diverged or
mismatching checkpoints are refused (or warned about) with their path; find_last never picks
one. Uses the session's tiny inference model (no training)."""
import os
import shutil
import warnings
import zipfile

import h5py
import numpy as np
import pytest

from mrcnn.model.checkpoints import SkippedCheckpointWarning
from mrcnn.model.maskrcnn import MaskRCNN
from mrcnn.model.weights_io import (CHECKSUM_ATTR, NonFiniteWeightsError, NonFiniteWeightsWarning,
                                    inspect_weights_file, save_classic_weights)
from tests.reliability.tiny import TinyInferenceConfig


@pytest.fixture(scope="module")
def good_file(tiny_inference, tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "mask_rcnn_tiny_0001.h5"
    tiny_inference.save_weights(str(path))
    return path


def _copy(good_file, tmp_path, name="w.h5"):
    target = tmp_path / name
    shutil.copy(good_file, target)
    return target


def _flip_weight_byte(path):
    """Change one stored weight value in place (bit rot / a partial overwrite)."""
    with h5py.File(path, "r+") as f:
        group = f["mrcnn_mask"]
        name = [n for n in group.attrs["weight_names"]][0].decode()
        data = group[name][()]
        data.flat[0] += 1.0
        group[name][...] = data


def _poison(path, value):
    with h5py.File(path, "r+") as f:
        group = f["mrcnn_mask"]
        name = group.attrs["weight_names"][0].decode()
        data = group[name][()]
        data.flat[0] = value
        group[name][...] = data
        if CHECKSUM_ATTR in f.attrs:
            del f.attrs[CHECKSUM_ATTR]  # a classic file: no checksum, NaN inside
        for key in list(f.attrs):
            if key.startswith("mrcnn_nonfinite"):
                del f.attrs[key]


def _make(kind, good_file, tmp_path):
    path = tmp_path / "w.h5"
    if kind == "zero-byte":
        path.write_bytes(b"")
    elif kind == "random-bytes":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "text":
        path.write_text("weights\n")
    elif kind == "truncated-half":
        path.write_bytes(good_file.read_bytes()[: good_file.stat().st_size // 2])
    elif kind == "truncated-header":
        path.write_bytes(good_file.read_bytes()[:600])
    elif kind == "zip":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("config.json", "{}")
    elif kind == "hdf5-without-layer-names":
        with h5py.File(path, "w") as f:
            f.create_dataset("x", data=np.zeros(3))
    elif kind == "keras3-layout":
        with h5py.File(path, "w") as f:
            f.create_group("layers")
            f.create_group("vars")
    elif kind == "corrupted-weight":
        path = _copy(good_file, tmp_path)
        _flip_weight_byte(path)
    elif kind == "directory":
        path.mkdir()
    return path


BAD = [
    ("zero-byte", ValueError, "not an HDF5 file"),
    ("random-bytes", ValueError, "not an HDF5 file"),
    ("text", ValueError, "not an HDF5 file"),
    ("truncated-half", ValueError, "truncated or corrupt"),      # HDF5 error without the path
    ("truncated-header", ValueError, "truncated or corrupt"),
    ("zip", ValueError, "zip archive"),
    ("hdf5-without-layer-names", ValueError, "layer_names"),
    ("keras3-layout", ValueError, "Keras 3"),
    ("corrupted-weight", ValueError, "corrupted"),                # loaded silently before
    ("directory", IsADirectoryError, "directory"),
]


@pytest.mark.parametrize("kind,error,text", BAD, ids=[b[0] for b in BAD])
def test_bad_weights_file_is_refused_with_its_path(tiny_inference, good_file, tmp_path, kind,
                                                   error, text):
    path = _make(kind, good_file, tmp_path)
    before = [w.numpy().copy() for w in tiny_inference.keras_model.weights[:3]]
    with pytest.raises(error) as err:
        tiny_inference.load_weights(str(path), by_name=True)
    assert str(path) in str(err.value) and text in str(err.value)
    for a, w in zip(before, tiny_inference.keras_model.weights[:3]):
        np.testing.assert_array_equal(a, w.numpy())  # nothing was assigned


def test_missing_weights_file_names_it(tiny_inference, tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.h5"):
        tiny_inference.load_weights(str(tmp_path / "nothere.h5"))


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_weights_with_non_finite_values_load_with_a_warning(tiny_inference, good_file, tmp_path,
                                                             value):
    path = _copy(good_file, tmp_path)
    _poison(path, value)
    with pytest.warns(NonFiniteWeightsWarning, match="mrcnn_mask"):
        tiny_inference.load_weights(str(path), by_name=True)
    tiny_inference.load_weights(str(good_file), by_name=True)  # restore for the other cases


def test_classic_file_without_checksum_loads_as_before(tiny_inference, good_file, tmp_path):
    path = _copy(good_file, tmp_path)
    with h5py.File(path, "r+") as f:
        del f.attrs[CHECKSUM_ATTR]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny_inference.load_weights(str(path), by_name=True)


def test_weights_of_another_class_count_name_the_layers_and_the_exclude(tiny_inference,
                                                                         tmp_path):
    class FiveClasses(TinyInferenceConfig):
        NUM_CLASSES = 5
    other = MaskRCNN(mode="inference", config=FiveClasses(), model_dir=str(tmp_path))
    path = tmp_path / "five.h5"
    other.save_weights(str(path))
    with pytest.raises(ValueError) as err:
        tiny_inference.load_weights(str(path), by_name=True)
    assert str(path) in str(err.value) and "mrcnn_class_logits" in str(err.value)
    assert "exclude=" in str(err.value)


def test_saving_non_finite_weights_as_a_training_checkpoint_is_refused(tiny_inference, tmp_path):
    variable = tiny_inference.keras_model.get_layer("mrcnn_mask").weights[0]
    kept = variable.numpy().copy()
    poisoned = kept.copy()
    poisoned.flat[0] = np.nan
    variable.assign(poisoned)
    try:
        with pytest.raises(NonFiniteWeightsError, match="NaN"):
            save_classic_weights(tiny_inference.keras_model, tmp_path / "c.h5", require_finite=True)
        assert os.listdir(tmp_path) == []  # no file, no temp file
    finally:
        variable.assign(kept)


def _run(model_dir, folder, epochs, good_file):
    run = model_dir / folder
    run.mkdir(parents=True, exist_ok=True)
    for epoch in epochs:
        shutil.copy(good_file, run / f"mask_rcnn_tiny_{epoch:04d}.h5")
    return run


FIND_LAST = [
    # (case, what breaks the newest checkpoint, expected newest usable epoch)
    ("nan-newest", lambda p: _poison(p, np.nan), 2),
    ("truncated-newest", lambda p: p.write_bytes(p.read_bytes()[:1000]), 2),
    ("corrupted-newest", _flip_weight_byte, 2),
    ("zero-byte-newest", lambda p: p.write_bytes(b""), 2),
]


@pytest.mark.parametrize("case,damage,expected", FIND_LAST, ids=[f[0] for f in FIND_LAST])
def test_find_last_passes_over_an_unusable_checkpoint(tiny_inference, good_file, tmp_path, case,
                                                      damage, expected):
    run = _run(tmp_path, "tiny20261201T101010", (1, 2, 3), good_file)
    damage(run / "mask_rcnn_tiny_0003.h5")
    finder = MaskRCNN.__new__(MaskRCNN)
    finder.config, finder.model_dir = TinyInferenceConfig(), str(tmp_path)
    with pytest.warns(SkippedCheckpointWarning, match="mask_rcnn_tiny_0003.h5"):
        last = finder.find_last()
    assert last == str(run / f"mask_rcnn_tiny_{expected:04d}.h5")
    assert inspect_weights_file(last) == (True, "ok")


def test_find_last_orders_runs_by_time_and_suffix_and_ignores_other_names(good_file, tmp_path):
    _run(tmp_path, "tiny20261201T1010", (5,), good_file)           # classic minutes
    _run(tmp_path, "tiny20261201T101010_2", (1,), good_file)
    newest = _run(tmp_path, "tiny20261201T101010_10", (1,), good_file)  # _10 after _2
    _run(tmp_path, "tiny_other20271201T101010", (9,), good_file)   # another config's run
    finder = MaskRCNN.__new__(MaskRCNN)
    finder.config, finder.model_dir = TinyInferenceConfig(), str(tmp_path)
    assert finder.find_last() == str(newest / "mask_rcnn_tiny_0001.h5")


def test_find_last_with_only_broken_checkpoints_says_so(good_file, tmp_path):
    run = _run(tmp_path, "tiny20261201T101010", (1,), good_file)
    (run / "mask_rcnn_tiny_0001.h5").write_bytes(b"")
    finder = MaskRCNN.__new__(MaskRCNN)
    finder.config, finder.model_dir = TinyInferenceConfig(), str(tmp_path)
    with pytest.warns(SkippedCheckpointWarning), pytest.raises(FileNotFoundError,
                                                               match="1 unusable"):
        finder.find_last()


def test_find_last_without_model_dir_names_it(tmp_path):
    finder = MaskRCNN.__new__(MaskRCNN)
    finder.config, finder.model_dir = TinyInferenceConfig(), str(tmp_path / "nologs")
    with pytest.raises(FileNotFoundError, match="nologs"):
        finder.find_last()
