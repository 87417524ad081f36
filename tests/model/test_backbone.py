"""Tests for mrcnn.model.backbone, mrcnn.model.fpn and the BatchNorm of mrcnn.model.layers.

The central check builds backbone + FPN + RPN + heads of the classic COCO configuration
(ResNet-101, 81 classes) on a small image and compares every weight (layer, name, shape, order)
with ../shared/spec/weights-coco-r101.txt, the layout of the classic ``mask_rcnn_coco.h5``.
"""
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

import keras

from mrcnn.model.backbone import ARCHITECTURES, build_backbone, resnet_graph  # noqa: E402
from mrcnn.model.fpn import fpn_graph  # noqa: E402
from mrcnn.model.heads import build_fpn_mask_graph, fpn_classifier_graph  # noqa: E402
from mrcnn.model.layers import BatchNorm  # noqa: E402
from mrcnn.model.rpn import build_rpn_model, rpn_graph  # noqa: E402

SPEC = Path(__file__).resolve().parents[3] / "shared" / "spec" / "weights-coco-r101.txt"


# ----------------------------------------------------------------------------------------------
# BatchNorm: classic TRAIN_BN semantics
# ----------------------------------------------------------------------------------------------
def _bn_input():
    rng = np.random.default_rng(0)
    return (rng.normal(size=(6, 2, 2, 3)) * [1.0, 2.0, 3.0] + [5.0, -1.0, 0.5]).astype("float32")


def _built_bn(train_bn):
    bn = BatchNorm(train_bn=train_bn)
    bn.build((None, 2, 2, 3))
    return bn


def test_batchnorm_defaults_match_keras2():
    bn = BatchNorm()
    assert bn.train_bn is None
    assert bn.momentum == pytest.approx(0.99)
    assert bn.epsilon == pytest.approx(1e-3)


def test_batchnorm_frozen_ignores_training_flag():
    x = _bn_input()
    bn = _built_bn(False)
    bn.moving_mean.assign(np.array([1.0, 2.0, 3.0], "float32"))
    bn.moving_variance.assign(np.array([4.0, 0.25, 1.0], "float32"))
    out_train = np.asarray(bn(x, training=True))
    out_infer = np.asarray(bn(x, training=False))
    np.testing.assert_allclose(bn.moving_mean.numpy(), [1.0, 2.0, 3.0])
    np.testing.assert_allclose(bn.moving_variance.numpy(), [4.0, 0.25, 1.0])
    expected = (x - [1.0, 2.0, 3.0]) / np.sqrt(np.array([4.0, 0.25, 1.0]) + 1e-3)
    np.testing.assert_allclose(out_train, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out_train, out_infer)
    # gamma/beta stay trainable weights (classic TRAIN_BN=False froze only the statistics)
    assert [w.name for w in bn.trainable_weights] == ["gamma", "beta"]


@pytest.mark.parametrize("train_bn", [None, True])
def test_batchnorm_trainable_uses_batch_statistics(train_bn):
    x = _bn_input()
    bn = _built_bn(train_bn)
    out = np.asarray(bn(x, training=True))
    mean = x.mean(axis=(0, 1, 2))
    var = x.var(axis=(0, 1, 2))
    np.testing.assert_allclose(out, (x - mean) / np.sqrt(var + 1e-3), rtol=1e-4, atol=1e-4)
    # moving = 0.99 * moving + 0.01 * batch (initial moving mean 0, variance 1)
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.01 * mean, rtol=1e-4, atol=1e-6)
    # Keras 3 updates the moving variance with the (biased) batch variance.
    np.testing.assert_allclose(bn.moving_variance.numpy(), 0.99 + 0.01 * var, rtol=1e-4)
    # inference uses the moving statistics
    out_infer = np.asarray(bn(x, training=False))
    expected = (x - bn.moving_mean.numpy()) / np.sqrt(bn.moving_variance.numpy() + 1e-3)
    np.testing.assert_allclose(out_infer, expected, rtol=1e-4, atol=1e-4)


def test_batchnorm_training_flag_reaches_it_inside_a_model():
    x = _bn_input()
    inp = keras.Input((2, 2, 3))
    frozen = BatchNorm(train_bn=False, name="frozen")
    free = BatchNorm(train_bn=None, name="free")
    model = keras.Model(inp, [frozen(inp), free(inp)])
    model(x, training=True)
    np.testing.assert_allclose(frozen.moving_mean.numpy(), 0.0)
    np.testing.assert_allclose(free.moving_mean.numpy(), 0.01 * x.mean(axis=(0, 1, 2)), rtol=1e-4)


def test_batchnorm_rejects_bad_train_bn():
    with pytest.raises(ValueError, match="train_bn"):
        BatchNorm(train_bn="yes")


@pytest.mark.parametrize("train_bn", [None, True, False])
def test_batchnorm_config_round_trip(train_bn):
    bn = BatchNorm(train_bn=train_bn, momentum=0.9, epsilon=1e-5, name="bn_x")
    clone = BatchNorm.from_config(bn.get_config())
    assert (clone.train_bn, clone.momentum, clone.epsilon, clone.name) == (
        train_bn, 0.9, 1e-5, "bn_x")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(bn))
    assert type(restored) is BatchNorm and restored.train_bn is train_bn


# ----------------------------------------------------------------------------------------------
# ResNet-50 backbone
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def resnet50():
    image = keras.Input((64, 64, 3), name="input_image")
    outputs = resnet_graph(image, "resnet50", stage5=True, train_bn=False)
    return keras.Model(image, outputs), outputs


def test_resnet50_output_shapes(resnet50):
    _, (c1, c2, c3, c4, c5) = resnet50
    assert tuple(c1.shape) == (None, 16, 16, 64)
    assert tuple(c2.shape) == (None, 16, 16, 256)   # stride 4
    assert tuple(c3.shape) == (None, 8, 8, 512)     # stride 8
    assert tuple(c4.shape) == (None, 4, 4, 1024)    # stride 16
    assert tuple(c5.shape) == (None, 2, 2, 2048)    # stride 32


def test_resnet50_layer_names(resnet50):
    model, outputs = resnet50
    names = {layer.name for layer in model.layers}
    for name in ("conv1", "bn_conv1", "res2a_branch2a", "res2a_branch1", "bn2a_branch1",
                 "res2c_out", "res3d_out", "res4a_branch1", "res4f_out", "res5c_branch2c",
                 "bn5c_branch2c", "res5c_out"):
        assert name in names, name
    assert "res4g_branch2a" not in names  # ResNet-50 stage 4 ends at f
    assert outputs[2] is model.get_layer("res3d_out").output
    assert outputs[4] is model.get_layer("res5c_out").output
    # every convolution has a bias, as the classic ResNet
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 1 + 3 * 16 + 4
    assert all(layer.use_bias for layer in convs)
    bns = [layer for layer in model.layers if isinstance(layer, BatchNorm)]
    assert len(bns) == len(convs) and all(layer.train_bn is False for layer in bns)


def test_resnet50_forward_is_finite(resnet50):
    model, _ = resnet50
    x = np.random.default_rng(1).normal(size=(1, 64, 64, 3)).astype("float32")
    outs = model(x, training=False)
    assert [tuple(o.shape) for o in outs[1:]] == [
        (1, 16, 16, 256), (1, 8, 8, 512), (1, 4, 4, 1024), (1, 2, 2, 2048)]
    assert all(np.isfinite(np.asarray(o)).all() for o in outs)


def test_resnet_stage5_false_gives_no_c5():
    image = keras.Input((64, 64, 3))
    c1, c2, c3, c4, c5 = resnet_graph(image, "resnet50", stage5=False)
    assert c5 is None and tuple(c4.shape) == (None, 4, 4, 1024)


@pytest.mark.parametrize("bad", ["resnet152", "ResNet50", None, 50])
def test_resnet_rejects_unknown_architecture(bad):
    with pytest.raises(ValueError, match="architecture"):
        resnet_graph(keras.Input((64, 64, 3)), bad)
    with pytest.raises(ValueError, match="backbone"):
        build_backbone(keras.Input((64, 64, 3)), bad)


def test_build_backbone_with_callable():
    calls = []

    def tiny_backbone(input_image, stage5=False, train_bn=None):
        calls.append((stage5, train_bn))
        feats = [keras.layers.Conv2D(4, 3, strides=s, padding="same", name=f"tiny{s}")(input_image)
                 for s in (2, 4, 8, 16, 32)]
        return feats

    image = keras.Input((64, 64, 3))
    c2, c3, c4, c5 = build_backbone(image, tiny_backbone, train_bn=False)
    assert calls == [(True, False)]
    assert [t.shape[1] for t in (c2, c3, c4, c5)] == [16, 8, 4, 2]

    with pytest.raises(ValueError, match="C1, C2, C3, C4, C5"):
        build_backbone(image, lambda img, stage5, train_bn: [img, img])


# ----------------------------------------------------------------------------------------------
# FPN
# ----------------------------------------------------------------------------------------------
def test_fpn_shapes_and_top_down_sums():
    size, ch = 4, 3
    inputs = [keras.Input((s, s, ch)) for s in (16, 8, 4, 2)]
    p2, p3, p4, p5, p6 = fpn_graph(*inputs, pyramid_size=size)
    assert [tuple(p.shape) for p in (p2, p3, p4, p5, p6)] == [
        (None, 16, 16, size), (None, 8, 8, size), (None, 4, 4, size), (None, 2, 2, size),
        (None, 1, 1, size)]
    names = ["fpn_c5p5", "fpn_c4p4", "fpn_p4add", "fpn_p5", "fpn_p6"]
    probe = keras.Model(inputs, [p2, p3, p4, p5, p6])
    taps = keras.Model(inputs, [probe.get_layer(n).output for n in names])
    rng = np.random.default_rng(2)
    xs = [rng.normal(size=(2, s, s, ch)).astype("float32") for s in (16, 8, 4, 2)]
    c5p5, c4p4, p4add, p5_out, p6_out = [np.asarray(t) for t in taps(xs)]
    # nearest-neighbour 2x upsampling of the coarser level plus the lateral projection
    up = c5p5.repeat(2, axis=1).repeat(2, axis=2)
    np.testing.assert_allclose(p4add, up + c4p4, rtol=1e-5, atol=1e-5)
    # P6 subsamples P5 with stride 2 (1x1 max pool)
    np.testing.assert_allclose(p6_out, p5_out[:, ::2, ::2], rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# Classic COCO weight layout (ResNet-101, 81 classes)
# ----------------------------------------------------------------------------------------------
def _parse_spec(path):
    spec = OrderedDict()
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        layer, weight, shape = line.split()
        spec.setdefault(layer, []).append((weight, tuple(int(d) for d in shape.split("x"))))
    return spec


def _model_layout(model):
    """Our weights in the classic h5 naming: {layer: [(layer/weight:0, shape), ...]}."""
    layout = OrderedDict()
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            entries = [(f"{inner.name}/{w.name}:0", tuple(w.shape))
                       for inner in layer.layers for w in inner.weights]
        else:
            entries = [(f"{layer.name}/{w.name}:0", tuple(w.shape)) for w in layer.weights]
        if entries:
            layout[layer.name] = entries
    return layout


@pytest.fixture(scope="module")
def coco_r101():
    image = keras.Input((64, 64, 3), name="input_image")
    c2, c3, c4, c5 = build_backbone(image, "resnet101", train_bn=False)
    pyramid = fpn_graph(c2, c3, c4, c5, 256)
    rpn = build_rpn_model(1, 3, 256)
    rpn_outputs = rpn_graph(pyramid, rpn)
    pooled = keras.Input((None, 7, 7, 256), name="pooled_classifier")
    pooled_mask = keras.Input((None, 14, 14, 256), name="pooled_mask")
    heads = fpn_classifier_graph(pooled, 81, 1024, train_bn=False)
    mask = build_fpn_mask_graph(pooled_mask, 81, train_bn=False)
    return keras.Model([image, pooled, pooled_mask],
                       list(pyramid) + list(rpn_outputs) + list(heads) + [mask])


@pytest.mark.skipif(not SPEC.exists(), reason=f"spec file {SPEC} missing")
def test_coco_r101_weights_match_classic_layout(coco_r101):
    spec = _parse_spec(SPEC)
    ours = _model_layout(coco_r101)
    assert sorted(ours) == sorted(spec)
    mismatched = {name: (ours[name], spec[name]) for name in spec if ours[name] != spec[name]}
    assert not mismatched
    # 235 weight-owning layers: 232 top-level groups + the 3 convolutions inside rpn_model
    assert len(spec) == 233 and sum(len(v) for v in spec.values()) == 690
    inner = {w.split("/")[0] for w, _ in spec["rpn_model"]}
    assert inner == {"rpn_conv_shared", "rpn_class_raw", "rpn_bbox_pred"}


def test_coco_r101_parameter_counts(coco_r101):
    assert coco_r101.count_params() == 64_158_584
    non_trainable = sum(int(np.prod(w.shape)) for w in coco_r101.non_trainable_weights)
    assert non_trainable == 111_488
    assert all(w.name in ("moving_mean", "moving_variance")
               for w in coco_r101.non_trainable_weights)


def test_coco_r101_named_layers(coco_r101):
    names = {layer.name for layer in coco_r101.layers}
    expected = {"res4w_out", "res5c_out", "fpn_p2", "fpn_p6", "fpn_p5upsampled", "fpn_p2add",
                "rpn_model", "rpn_class_logits", "rpn_class", "rpn_bbox", "mrcnn_class_conv1",
                "mrcnn_class_bn2", "pool_squeeze", "mrcnn_class_logits", "mrcnn_class",
                "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask_conv4", "mrcnn_mask_bn4",
                "mrcnn_mask_deconv", "mrcnn_mask"}
    assert expected <= names
    assert "res4x_branch2a" not in names
    # the outputs users fetch by layer name keep the classic per-ROI shapes
    shape = lambda n: tuple(coco_r101.get_layer(n).output.shape)  # noqa: E731
    assert shape("mrcnn_class") == (None, None, 81)
    assert shape("mrcnn_bbox") == (None, None, 81, 4)
    assert shape("mrcnn_mask") == (None, None, 28, 28, 81)
    assert shape("rpn_class") == (None, (256 + 64 + 16 + 4 + 1) * 3, 2)
    assert shape("fpn_p6") == (None, 1, 1, 256)


def test_architectures_table():
    # stage 2..5 identity-block counts: resnet50 3-4-6-3, resnet101 3-4-23-3 blocks in total
    assert [n + 1 for n in ARCHITECTURES["resnet50"]] == [3, 4, 6, 3]
    assert [n + 1 for n in ARCHITECTURES["resnet101"]] == [3, 4, 23, 3]


def test_resnet_passes_batch_norm_momentum_to_every_batchnorm():
    image = keras.Input((64, 64, 3))
    model = keras.Model(image, resnet_graph(image, "resnet50", bn_momentum=0.9)[1:])
    norms = [layer for layer in model.layers if isinstance(layer, BatchNorm)]
    assert len(norms) == 53  # bn_conv1 + 3 per block (16 blocks) + 4 projection shortcuts
    assert all(layer.momentum == pytest.approx(0.9) for layer in norms)
