"""Tests for mrcnn.model.weights_io: classic Keras-2 .h5 layout read/write for Keras 3 models.

Reference files are written directly with h5py in the classic layout (not with the saver under
test), with known random values.
"""
import os

import h5py
import numpy as np
import pytest

import keras
from keras import layers  # noqa: E402

from mrcnn.model.weights_io import (  # noqa: E402
    WeightLoadReport,
    load_classic_weights,
    read_classic_weight_index,
    save_classic_weights,
)


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def make_model(num_classes=4):
    """Tiny functional model with the classic layer names, a nested rpn_model and weightless
    layers. Weight shapes: conv1 (3,3,4,3)+(3,), bn_conv1 4x(3,), rpn_conv_shared (3,3,3,5)+(5,),
    rpn_class_raw (1,1,5,2)+(2,), mrcnn_mask_deconv (2,2,2,2)+(2,), mrcnn_class_logits
    (2,num_classes)+(num_classes,)."""
    inp = keras.Input((8, 8, 4), name="input_image")
    x = layers.Conv2D(3, 3, padding="same", name="conv1")(inp)
    x = layers.BatchNormalization(name="bn_conv1")(x)
    rpn_in = keras.Input((None, None, 3), name="input_rpn_feature_map")
    r = layers.Conv2D(5, 3, padding="same", name="rpn_conv_shared")(rpn_in)
    r = layers.Conv2D(2, 1, name="rpn_class_raw")(r)
    rpn = keras.Model(rpn_in, r, name="rpn_model")
    y = rpn(x)
    mask = layers.Conv2DTranspose(2, 2, strides=2, name="mrcnn_mask_deconv")(y)
    pooled = layers.GlobalAveragePooling2D(name="pool")(y)
    logits = layers.Dense(num_classes, name="mrcnn_class_logits")(pooled)
    return keras.Model(inp, [mask, logits], name="mask_rcnn")


def classic_spec(rng, num_classes=4, rpn_class_channels=2):
    """Classic (group, [(weight_name, value)]) list for make_model, file order = layer order,
    weightless layers included with no weights."""
    def r(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    return [
        ("input_image", []),
        ("conv1", [("conv1/kernel:0", r(3, 3, 4, 3)), ("conv1/bias:0", r(3))]),
        ("bn_conv1", [("bn_conv1/gamma:0", r(3)), ("bn_conv1/beta:0", r(3)),
                      ("bn_conv1/moving_mean:0", r(3)),
                      ("bn_conv1/moving_variance:0", np.abs(r(3)) + 0.5)]),
        ("rpn_model", [("rpn_conv_shared/kernel:0", r(3, 3, 3, 5)),
                       ("rpn_conv_shared/bias:0", r(5)),
                       ("rpn_class_raw/kernel:0", r(1, 1, 5, rpn_class_channels)),
                       ("rpn_class_raw/bias:0", r(rpn_class_channels))]),
        ("mrcnn_mask_deconv", [("mrcnn_mask_deconv/kernel:0", r(2, 2, 2, 2)),
                               ("mrcnn_mask_deconv/bias:0", r(2))]),
        ("pool", []),
        ("mrcnn_class_logits", [("mrcnn_class_logits/kernel:0", r(2, num_classes)),
                                ("mrcnn_class_logits/bias:0", r(num_classes))]),
    ]


def write_classic(path, spec, under_model_weights=False):
    """Write ``spec`` in the Keras-2 save_weights layout with plain h5py."""
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if under_model_weights else f
        if under_model_weights:
            f.attrs["model_config"] = b"{}"
        root.attrs["layer_names"] = np.array([name.encode() for name, _ in spec])
        root.attrs["backend"] = b"tensorflow"
        root.attrs["keras_version"] = b"2.2.4"
        for name, weights in spec:
            g = root.create_group(name)
            # Keras 2 wrote np.asarray([]) (float64) for weightless layers
            g.attrs["weight_names"] = (np.array([w.encode() for w, _ in weights])
                                       if weights else np.asarray([]))
            for weight_name, value in weights:
                g.create_dataset(weight_name, data=value)


def model_values(model):
    """{top-level layer: {"<inner>/<var>": value}} for the model's weight-owning layers."""
    out = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            out[layer.name] = {f"{inner.name}/{v.name}": np.array(v.numpy())
                               for inner in layer.layers for v in inner.weights}
        elif layer.weights:
            out[layer.name] = {f"{layer.name}/{v.name}": np.array(v.numpy())
                               for v in layer.weights}
    return out


def assert_layer_equals_spec(model, spec, layer_name):
    values = model_values(model)[layer_name]
    expected = dict(spec)[layer_name]
    assert len(values) == len(expected)
    for weight_name, value in expected:
        np.testing.assert_array_equal(values[weight_name.split(":")[0]], value)


# ----------------------------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------------------------
def test_load_by_name_assigns_every_variable(tmp_path):
    spec = classic_spec(np.random.default_rng(0))
    # a group the model lacks, and BN weights stored in a scrambled order: matching is by name
    spec.insert(3, ("res2a_branch2a", [("res2a_branch2a/kernel:0", np.ones((1, 1, 3, 3), "f4"))]))
    bn = dict(spec)["bn_conv1"]
    spec[[n for n, _ in spec].index("bn_conv1")] = ("bn_conv1", [bn[3], bn[1], bn[0], bn[2]])
    path = tmp_path / "classic.h5"
    write_classic(path, spec)

    model = make_model()
    report = load_classic_weights(model, path, by_name=True)

    assert isinstance(report, WeightLoadReport)
    for layer_name in ["conv1", "bn_conv1", "rpn_model", "mrcnn_mask_deconv", "mrcnn_class_logits"]:
        assert_layer_equals_spec(model, spec, layer_name)
    assert sorted(report.loaded) == sorted(
        ["conv1", "bn_conv1", "rpn_model", "mrcnn_mask_deconv", "mrcnn_class_logits"])
    assert report.unused == ["res2a_branch2a"]
    assert report.missing == [] and report.skipped == []
    # BN moving statistics are what inference uses: check them through the variables by name
    bn_layer = model.get_layer("bn_conv1")
    np.testing.assert_array_equal(bn_layer.moving_variance.numpy(), bn[3][1])


def test_layers_absent_from_file_are_untouched(tmp_path):
    spec = [entry for entry in classic_spec(np.random.default_rng(1)) if entry[0] != "rpn_model"]
    path = tmp_path / "partial.h5"
    write_classic(path, spec)
    model = make_model()
    before = model_values(model)["rpn_model"]

    report = load_classic_weights(model, path, by_name=True)

    assert report.missing == ["rpn_model"]
    for key, value in model_values(model)["rpn_model"].items():
        np.testing.assert_array_equal(value, before[key])
    assert_layer_equals_spec(model, spec, "conv1")


def test_exclude_leaves_layer_untouched_and_loads_the_rest(tmp_path):
    spec = classic_spec(np.random.default_rng(2), num_classes=7)  # file: 7 classes, model: 4
    path = tmp_path / "coco_like.h5"
    write_classic(path, spec)
    model = make_model(num_classes=4)
    before = model_values(model)["mrcnn_class_logits"]

    # exclude forces by_name even though by_name=False is passed
    report = load_classic_weights(model, path, by_name=False, exclude=["mrcnn_class_logits"])

    for key, value in model_values(model)["mrcnn_class_logits"].items():
        np.testing.assert_array_equal(value, before[key])
    for layer_name in ["conv1", "bn_conv1", "rpn_model", "mrcnn_mask_deconv"]:
        assert_layer_equals_spec(model, spec, layer_name)
    assert report.skipped == ["mrcnn_class_logits"]
    assert "mrcnn_class_logits" not in report.loaded


def test_shape_mismatch_lists_all_layers_and_assigns_nothing(tmp_path):
    spec = classic_spec(np.random.default_rng(3), num_classes=7, rpn_class_channels=6)
    path = tmp_path / "mismatch.h5"
    write_classic(path, spec)
    model = make_model(num_classes=4)
    before = model_values(model)

    with pytest.raises(ValueError) as info:
        load_classic_weights(model, path, by_name=True)

    msg = str(info.value)
    assert "mrcnn_class_logits" in msg and "(2, 7)" in msg and "(2, 4)" in msg
    assert "rpn_class_raw/kernel:0" in msg and "(1, 1, 5, 6)" in msg and "(1, 1, 5, 2)" in msg
    assert "exclude=['rpn_model', 'mrcnn_class_logits']" in msg
    assert str(path) in msg
    # all-or-nothing: the matching layers were not assigned either
    after = model_values(model)
    for layer_name, values in before.items():
        for key, value in values.items():
            np.testing.assert_array_equal(after[layer_name][key], value)


def test_skip_mismatch_warns_and_loads_the_rest(tmp_path):
    spec = classic_spec(np.random.default_rng(4), num_classes=7)
    path = tmp_path / "mismatch.h5"
    write_classic(path, spec)
    model = make_model(num_classes=4)
    before = model_values(model)["mrcnn_class_logits"]

    with pytest.warns(UserWarning, match="mrcnn_class_logits"):
        report = load_classic_weights(model, path, by_name=True, skip_mismatch=True)

    assert report.skipped == ["mrcnn_class_logits"]
    np.testing.assert_array_equal(
        model_values(model)["mrcnn_class_logits"]["mrcnn_class_logits/kernel"],
        before["mrcnn_class_logits/kernel"])
    assert_layer_equals_spec(model, spec, "rpn_model")


def test_weight_count_mismatch_is_reported(tmp_path):
    spec = classic_spec(np.random.default_rng(5))
    spec = [(n, w[:2]) if n == "bn_conv1" else (n, w) for n, w in spec]
    path = tmp_path / "bn2.h5"
    write_classic(path, spec)
    with pytest.raises(ValueError, match=r"bn_conv1.*has 2 weights.*has 4"):
        load_classic_weights(make_model(), path, by_name=True)


def test_by_name_falls_back_to_order_for_keras1_names(tmp_path):
    # Keras-1 era names (the ImageNet ResNet50 notop file): no "/" and different variable names
    rng = np.random.default_rng(6)
    kernel = rng.standard_normal((3, 3, 4, 3)).astype(np.float32)
    bias = rng.standard_normal(3).astype(np.float32)
    path = tmp_path / "keras1.h5"
    write_classic(path, [("conv1", [("conv1_W:0", kernel), ("conv1_b:0", bias)])])
    model = make_model()
    report = load_classic_weights(model, path, by_name=True)
    assert report.loaded == ["conv1"]
    np.testing.assert_array_equal(model.get_layer("conv1").kernel.numpy(), kernel)
    np.testing.assert_array_equal(model.get_layer("conv1").bias.numpy(), bias)


def test_topological_load_ignores_names(tmp_path):
    spec = classic_spec(np.random.default_rng(7))
    renamed = [(f"old_{name}", [(f"old_{w}", v) for w, v in weights]) for name, weights in spec]
    path = tmp_path / "topo.h5"
    write_classic(path, renamed)
    model = make_model()

    report = load_classic_weights(model, path)

    for layer_name in ["conv1", "bn_conv1", "rpn_model", "mrcnn_mask_deconv", "mrcnn_class_logits"]:
        assert_layer_equals_spec(model, spec, layer_name)
    assert len(report.loaded) == 5


def test_topological_layer_count_mismatch(tmp_path):
    spec = [e for e in classic_spec(np.random.default_rng(8)) if e[0] != "mrcnn_mask_deconv"]
    path = tmp_path / "topo_short.h5"
    write_classic(path, spec)
    with pytest.raises(ValueError, match=r"model has 5 layers with weights but the file has 4"
                                         r".*by_name=True"):
        load_classic_weights(make_model(), path)


def test_model_weights_group_variant(tmp_path):
    spec = classic_spec(np.random.default_rng(9))
    path = tmp_path / "full_model.h5"
    write_classic(path, spec, under_model_weights=True)
    model = make_model()
    load_classic_weights(model, path, by_name=True)
    for layer_name in ["conv1", "bn_conv1", "rpn_model", "mrcnn_class_logits"]:
        assert_layer_equals_spec(model, spec, layer_name)
    assert read_classic_weight_index(path)[0] == ("conv1", "conv1/kernel:0", (3, 3, 4, 3))


def test_chunked_layer_names_attribute(tmp_path):
    # Keras 2 split attributes over 64 KB into layer_names0, layer_names1, ...
    spec = classic_spec(np.random.default_rng(10))
    path = tmp_path / "chunked.h5"
    write_classic(path, spec)
    with h5py.File(path, "a") as f:
        names = f.attrs["layer_names"]
        del f.attrs["layer_names"]
        f.attrs["layer_names0"] = names[:3]
        f.attrs["layer_names1"] = names[3:]
    model = make_model()
    load_classic_weights(model, path)
    assert_layer_equals_spec(model, spec, "mrcnn_class_logits")


def test_read_index_lists_file_order(tmp_path):
    spec = classic_spec(np.random.default_rng(11))
    path = tmp_path / "index.h5"
    write_classic(path, spec)
    index = read_classic_weight_index(path)
    expected = [(name, w, v.shape) for name, weights in spec for w, v in weights]
    assert index == expected
    assert index[6] == ("rpn_model", "rpn_conv_shared/kernel:0", (3, 3, 3, 5))


# ----------------------------------------------------------------------------------------------
# saving
# ----------------------------------------------------------------------------------------------
def test_save_writes_classic_layout(tmp_path):
    model = make_model()
    path = tmp_path / "saved.h5"
    assert save_classic_weights(model, path) == str(path)

    with h5py.File(path, "r") as f:
        assert [n.decode() for n in f.attrs["layer_names"]] == [l.name for l in model.layers]
        assert f.attrs["backend"] == "tensorflow"
        assert "keras_version" in f.attrs
        assert list(f["conv1"].attrs["weight_names"]) == [b"conv1/kernel:0", b"conv1/bias:0"]
        assert list(f["bn_conv1"].attrs["weight_names"]) == [
            b"bn_conv1/gamma:0", b"bn_conv1/beta:0", b"bn_conv1/moving_mean:0",
            b"bn_conv1/moving_variance:0"]
        assert list(f["rpn_model"].attrs["weight_names"]) == [
            b"rpn_conv_shared/kernel:0", b"rpn_conv_shared/bias:0",
            b"rpn_class_raw/kernel:0", b"rpn_class_raw/bias:0"]
        assert len(f["input_image"].attrs["weight_names"]) == 0
        assert len(f["pool"].attrs["weight_names"]) == 0
        np.testing.assert_array_equal(f["rpn_model"]["rpn_class_raw/kernel:0"][()],
                                      model.get_layer("rpn_model")
                                      .get_layer("rpn_class_raw").kernel.numpy())
        assert f["mrcnn_mask_deconv/mrcnn_mask_deconv/kernel:0"].shape == (2, 2, 2, 2)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_save_then_load_round_trip(tmp_path):
    source = make_model()
    path = tmp_path / "round_trip.h5"
    save_classic_weights(source, path)
    for by_name in (True, False):
        target = make_model()
        load_classic_weights(target, path, by_name=by_name)
        src, dst = model_values(source), model_values(target)
        assert src.keys() == dst.keys()
        for layer_name in src:
            for key in src[layer_name]:
                np.testing.assert_array_equal(dst[layer_name][key], src[layer_name][key])
    # the saved file is what the reference reader expects
    assert [(g, w) for g, w, _ in read_classic_weight_index(path)][:2] == [
        ("conv1", "conv1/kernel:0"), ("conv1", "conv1/bias:0")]


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.h5"
    path.write_bytes(b"previous checkpoint")
    calls = {"n": 0}
    original = h5py.Group.create_dataset

    def failing_create_dataset(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # fail mid-way, after some datasets were written
            raise OSError("disk full (simulated)")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing_create_dataset)
    with pytest.raises(OSError, match="simulated"):
        save_classic_weights(make_model(), path)

    assert calls["n"] == 3
    assert path.read_bytes() == b"previous checkpoint"
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.h5"]


def test_save_into_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_classic_weights(make_model(), tmp_path / "nope" / "w.h5")


# ----------------------------------------------------------------------------------------------
# wrong files
# ----------------------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    path = tmp_path / "absent.h5"
    with pytest.raises(FileNotFoundError, match="absent.h5"):
        load_classic_weights(make_model(), path)
    with pytest.raises(FileNotFoundError, match="absent.h5"):
        read_classic_weight_index(path)


def test_non_hdf5_file(tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("not hdf5 at all")
    with pytest.raises(ValueError, match=r"notes\.h5.*not a classic Keras \.h5 weights file"):
        load_classic_weights(make_model(), path)


def test_hdf5_without_layer_names(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=np.zeros(3))
    with pytest.raises(ValueError, match=r"other\.h5.*no 'layer_names'.*not a classic"):
        load_classic_weights(make_model(), path)


def test_keras3_weights_file_points_to_load_weights(tmp_path):
    model = make_model()
    path = tmp_path / "model.weights.h5"
    model.save_weights(path)
    with pytest.raises(ValueError, match=r"Keras 3 \.weights\.h5.*load_weights"):
        load_classic_weights(make_model(), path)


def test_exclude_warns_about_inner_layer_names(tmp_path):
    path = tmp_path / "w.h5"
    write_classic(path, classic_spec(np.random.default_rng(12)))
    with pytest.warns(UserWarning, match="inside the nested model 'rpn_model'"):
        load_classic_weights(make_model(), path, exclude=["rpn_class_raw"])


# ----------------------------------------------------------------------------------------------
# cross-checks against Keras' own legacy-h5 reader and writer
# ----------------------------------------------------------------------------------------------
def test_loads_keras_legacy_full_model_save(tmp_path):
    # Keras 3 model.save("x.h5") writes the legacy layout under model_weights (str attributes,
    # weight names without ":0"): an independent writer
    source = make_model()
    path = tmp_path / "keras_full.h5"
    source.save(path)
    target = make_model()
    report = load_classic_weights(target, path, by_name=True)
    assert len(report.loaded) == 5
    src, dst = model_values(source), model_values(target)
    for layer_name in src:
        for key in src[layer_name]:
            np.testing.assert_array_equal(dst[layer_name][key], src[layer_name][key])


def test_keras_legacy_reader_accepts_saved_file(tmp_path):
    # keras_model.load_weights on a plain .h5 uses Keras' own Keras-2 reader: an independent reader
    source = make_model()
    path = tmp_path / "ours.h5"
    save_classic_weights(source, path)
    target = make_model()
    target.load_weights(path)
    src, dst = model_values(source), model_values(target)
    for layer_name in src:
        for key in src[layer_name]:
            np.testing.assert_array_equal(dst[layer_name][key], src[layer_name][key])
