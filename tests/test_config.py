"""Tests for mrcnn.config.Config: classic defaults, derived values, validation, display, to_dict."""
import json

import numpy as np
import pytest

from mrcnn.config import Config


class ShapesConfig(Config):
    """The classic shapes sample's configuration."""
    NAME = "shapes"
    GPU_COUNT = 1
    IMAGES_PER_GPU = 8
    NUM_CLASSES = 1 + 3
    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 128
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    TRAIN_ROIS_PER_IMAGE = 32
    STEPS_PER_EPOCH = 100
    VALIDATION_STEPS = 5


def make(**overrides):
    """Instantiate a throwaway Config subclass with the given class attributes."""
    return type("TmpConfig", (Config,), dict(overrides))()


CLASSIC_DEFAULTS = {
    "NAME": None, "GPU_COUNT": 1, "IMAGES_PER_GPU": 2, "STEPS_PER_EPOCH": 1000,
    "VALIDATION_STEPS": 50, "BACKBONE": "resnet101", "COMPUTE_BACKBONE_SHAPE": None,
    "BACKBONE_STRIDES": [4, 8, 16, 32, 64], "FPN_CLASSIF_FC_LAYERS_SIZE": 1024,
    "TOP_DOWN_PYRAMID_SIZE": 256, "NUM_CLASSES": 1,
    "RPN_ANCHOR_SCALES": (32, 64, 128, 256, 512), "RPN_ANCHOR_RATIOS": [0.5, 1, 2],
    "RPN_ANCHOR_STRIDE": 1, "RPN_NMS_THRESHOLD": 0.7, "RPN_TRAIN_ANCHORS_PER_IMAGE": 256,
    "PRE_NMS_LIMIT": 6000, "POST_NMS_ROIS_TRAINING": 2000, "POST_NMS_ROIS_INFERENCE": 1000,
    "USE_MINI_MASK": True, "MINI_MASK_SHAPE": (56, 56), "IMAGE_RESIZE_MODE": "square",
    "IMAGE_MIN_DIM": 800, "IMAGE_MAX_DIM": 1024, "IMAGE_MIN_SCALE": 0,
    "IMAGE_CHANNEL_COUNT": 3, "TRAIN_ROIS_PER_IMAGE": 200, "ROI_POSITIVE_RATIO": 0.33,
    "POOL_SIZE": 7, "MASK_POOL_SIZE": 14, "MASK_SHAPE": [28, 28], "MAX_GT_INSTANCES": 100,
    "DETECTION_MAX_INSTANCES": 100, "DETECTION_MIN_CONFIDENCE": 0.7,
    "DETECTION_NMS_THRESHOLD": 0.3, "LEARNING_RATE": 0.001, "LEARNING_MOMENTUM": 0.9,
    "WEIGHT_DECAY": 0.0001, "USE_RPN_ROIS": True, "TRAIN_BN": False,
    "GRADIENT_CLIP_NORM": 5.0,
    "LOSS_WEIGHTS": {"rpn_class_loss": 1., "rpn_bbox_loss": 1., "mrcnn_class_loss": 1.,
                     "mrcnn_bbox_loss": 1., "mrcnn_mask_loss": 1.},
}
ARRAY_DEFAULTS = {"MEAN_PIXEL": [123.7, 116.8, 103.9], "RPN_BBOX_STD_DEV": [0.1, 0.1, 0.2, 0.2],
                  "BBOX_STD_DEV": [0.1, 0.1, 0.2, 0.2]}
DERIVED = ("BATCH_SIZE", "IMAGE_SHAPE", "IMAGE_META_SIZE")


def test_defaults_match_classic_table():
    c = Config()
    for name, value in CLASSIC_DEFAULTS.items():
        actual = getattr(c, name)
        assert actual == value and type(actual) is type(value), (name, actual)
    for name, value in ARRAY_DEFAULTS.items():
        assert isinstance(getattr(c, name), np.ndarray), name
        np.testing.assert_allclose(getattr(c, name), value)


def test_derived_values_default():
    c = Config()
    assert c.BATCH_SIZE == 2
    assert isinstance(c.IMAGE_SHAPE, np.ndarray)
    assert c.IMAGE_SHAPE.tolist() == [1024, 1024, 3]
    assert c.IMAGE_META_SIZE == 13


def test_derived_values_subclass_override():
    c = ShapesConfig()
    assert c.BATCH_SIZE == 8
    assert c.IMAGE_SHAPE.tolist() == [128, 128, 3]
    assert c.IMAGE_META_SIZE == 12 + 4
    # Overrides live on the subclass only.
    assert Config.NUM_CLASSES == 1 and Config().IMAGE_META_SIZE == 13
    c2 = make(GPU_COUNT=2, IMAGES_PER_GPU=3, NUM_CLASSES=81)
    assert c2.BATCH_SIZE == 6 and c2.IMAGE_META_SIZE == 93


def test_derived_image_shape_crop_mode():
    c = make(IMAGE_RESIZE_MODE="crop", IMAGE_MIN_DIM=256, IMAGE_MAX_DIM=512,
             IMAGE_CHANNEL_COUNT=1, MEAN_PIXEL=np.array([100.0]))
    assert c.IMAGE_SHAPE.tolist() == [256, 256, 1]


def test_none_mode_does_not_check_dims():
    c = make(IMAGE_RESIZE_MODE="none", IMAGE_MIN_DIM=100, IMAGE_MAX_DIM=100)
    assert c.IMAGE_SHAPE.tolist() == [100, 100, 3]


def test_name_none_is_accepted():
    assert Config().NAME is None


def test_callable_backbone_with_shape_function():
    def my_backbone(input_image, stage5=False, train_bn=True):
        return "built", input_image

    def my_shapes(image_shape):
        return np.array([[image_shape[0] // s] * 2 for s in (4, 8, 16, 32, 64)])

    c = make(BACKBONE=my_backbone, COMPUTE_BACKBONE_SHAPE=my_shapes)
    # Plain functions in a class body must not turn into bound methods.
    assert c.BACKBONE("x") == ("built", "x")
    assert c.COMPUTE_BACKBONE_SHAPE([128, 128, 3])[:, 0].tolist() == [32, 16, 8, 4, 2]
    d = c.to_dict()
    assert d["BACKBONE"].endswith("my_backbone")
    json.dumps(d)


@pytest.mark.parametrize("overrides, field", [
    ({"IMAGE_MAX_DIM": 1000}, "IMAGE_MAX_DIM"),
    ({"IMAGE_RESIZE_MODE": "pad64", "IMAGE_MAX_DIM": 100, "IMAGE_MIN_DIM": 64}, "IMAGE_MAX_DIM"),
    ({"IMAGE_RESIZE_MODE": "pad64", "IMAGE_MIN_DIM": 800}, "IMAGE_MIN_DIM"),
    ({"IMAGE_RESIZE_MODE": "crop", "IMAGE_MIN_DIM": 500}, "IMAGE_MIN_DIM"),
    ({"IMAGE_RESIZE_MODE": "stretch"}, "IMAGE_RESIZE_MODE"),
    ({"BACKBONE": "resnet18"}, "BACKBONE"),
    ({"BACKBONE": lambda x: x}, "COMPUTE_BACKBONE_SHAPE"),
    ({"RPN_ANCHOR_SCALES": (32, 64, 128)}, "RPN_ANCHOR_SCALES"),
    ({"MEAN_PIXEL": np.array([1.0, 2.0])}, "MEAN_PIXEL"),
    ({"IMAGE_CHANNEL_COUNT": 4}, "MEAN_PIXEL"),
    ({"GPU_COUNT": 0}, "GPU_COUNT"),
    ({"IMAGES_PER_GPU": -1}, "IMAGES_PER_GPU"),
    ({"RPN_CONV_CHANNELS": 0}, "RPN_CONV_CHANNELS"),
    ({"RPN_CONV_CHANNELS": 256.5}, "RPN_CONV_CHANNELS"),
    ({"NUM_CLASSES": 0}, "NUM_CLASSES"),
    ({"NUM_CLASSES": 2.0}, "NUM_CLASSES"),
    ({"STEPS_PER_EPOCH": 0}, "STEPS_PER_EPOCH"),
    ({"VALIDATION_STEPS": 0}, "VALIDATION_STEPS"),
    ({"TRAIN_ROIS_PER_IMAGE": 0}, "TRAIN_ROIS_PER_IMAGE"),
    ({"RPN_TRAIN_ANCHORS_PER_IMAGE": 0}, "RPN_TRAIN_ANCHORS_PER_IMAGE"),
    ({"POST_NMS_ROIS_TRAINING": 0}, "POST_NMS_ROIS_TRAINING"),
    ({"POST_NMS_ROIS_INFERENCE": -5}, "POST_NMS_ROIS_INFERENCE"),
    ({"PRE_NMS_LIMIT": 0}, "PRE_NMS_LIMIT"),
    ({"DETECTION_MAX_INSTANCES": 0}, "DETECTION_MAX_INSTANCES"),
    ({"MAX_GT_INSTANCES": 0}, "MAX_GT_INSTANCES"),
    ({"ROI_POSITIVE_RATIO": 0.0}, "ROI_POSITIVE_RATIO"),
    ({"ROI_POSITIVE_RATIO": 1.5}, "ROI_POSITIVE_RATIO"),
    ({"DETECTION_MIN_CONFIDENCE": -0.1}, "DETECTION_MIN_CONFIDENCE"),
    ({"DETECTION_MIN_CONFIDENCE": 1.01}, "DETECTION_MIN_CONFIDENCE"),
    ({"TRAIN_BN": 0}, "TRAIN_BN"),
    ({"TRAIN_BN": "yes"}, "TRAIN_BN"),
    ({"LOSS_WEIGHTS": {"rpn_class_loss": 1.}}, "LOSS_WEIGHTS"),
    ({"LOSS_WEIGHTS": {"rpn_class_loss": 1., "rpn_bbox_loss": 1., "mrcnn_class_loss": 1.,
                       "mrcnn_bbox_loss": 1., "mask_loss": 1.}}, "LOSS_WEIGHTS"),
    ({"RPN_BBOX_STD_DEV": np.array([0.1, 0.1, 0.2])}, "RPN_BBOX_STD_DEV"),
    ({"BBOX_STD_DEV": [0.1, 0.1, 0.2, 0.2, 0.3]}, "BBOX_STD_DEV"),
    ({"MINI_MASK_SHAPE": (56,)}, "MINI_MASK_SHAPE"),
    ({"MASK_SHAPE": [28, 28, 1]}, "MASK_SHAPE"),
])
def test_validation_errors_name_the_field(overrides, field):
    with pytest.raises(ValueError, match=rf"Config\.{field}\b"):
        make(**overrides)


def test_validation_message_has_value_and_allowed():
    with pytest.raises(ValueError) as info:
        make(IMAGE_RESIZE_MODE="stretch")
    message = str(info.value)
    assert "'stretch'" in message and "pad64" in message and "crop" in message
    with pytest.raises(ValueError, match=r"multiple of 64.*got 1000"):
        make(IMAGE_MAX_DIM=1000)


def test_valid_edge_values_pass():
    c = make(ROI_POSITIVE_RATIO=1.0, DETECTION_MIN_CONFIDENCE=0.0, TRAIN_BN=None,
             BACKBONE="resnet50", IMAGE_RESIZE_MODE="pad64", IMAGE_MIN_DIM=512,
             IMAGE_MAX_DIM=512)
    assert c.TRAIN_BN is None and c.IMAGE_SHAPE.tolist() == [512, 512, 3]
    assert make(TRAIN_BN=True).TRAIN_BN is True


def test_validate_after_instance_change():
    c = ShapesConfig()
    c.validate()
    c.DETECTION_MIN_CONFIDENCE = 2
    with pytest.raises(ValueError, match="DETECTION_MIN_CONFIDENCE"):
        c.validate()


def test_display_lists_attributes(capsys):
    ShapesConfig().display()
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "Configurations:" in lines
    assert f"{'NAME':30} shapes" in lines
    assert f"{'NUM_CLASSES':30} 4" in lines
    assert f"{'BATCH_SIZE':30} 8" in lines
    assert f"{'IMAGE_SHAPE':30} [128 128   3]" in lines
    assert f"{'RPN_ANCHOR_SCALES':30} (8, 16, 32, 64, 128)" in lines
    names = [ln.split()[0] for ln in lines if ln and ln != "Configurations:"]
    assert names == sorted(names)
    assert "validate" not in names and "display" not in names
    # Every classic attribute and our documented extension, nothing else, exactly once.
    extensions = {"TRAIN_ROIS_INCLUDE_GT", "BATCH_NORM_MOMENTUM", "CLASS_WEIGHTS",
                  "MIXED_PRECISION", "XLA", "SYNC_BATCH_NORM", "RPN_CONV_CHANNELS",
                  "TRAIN_BN_AFFINE"}
    assert names == sorted({*CLASSIC_DEFAULTS, *ARRAY_DEFAULTS, *DERIVED, *extensions})
    assert f"{'TRAIN_ROIS_INCLUDE_GT':30} False" in lines
    assert f"{'BATCH_NORM_MOMENTUM':30} 0.99" in lines


def test_rpn_conv_channels_defaults_to_the_classic_layout():
    assert Config().RPN_CONV_CHANNELS == 512
    assert make(RPN_CONV_CHANNELS=256).RPN_CONV_CHANNELS == 256


def test_train_rois_include_gt_must_be_a_bool():
    assert make(TRAIN_ROIS_INCLUDE_GT=True).TRAIN_ROIS_INCLUDE_GT is True
    with pytest.raises(ValueError, match="TRAIN_ROIS_INCLUDE_GT must be True or False, got 1"):
        make(TRAIN_ROIS_INCLUDE_GT=1)


@pytest.mark.parametrize("value", [0, 1, 1.5, "0.9", None])
def test_batch_norm_momentum_must_be_in_open_unit_interval(value):
    with pytest.raises(ValueError, match="BATCH_NORM_MOMENTUM must be a number in \\(0, 1\\)"):
        make(BATCH_NORM_MOMENTUM=value)


def test_display_skips_callables(capsys):
    make(BACKBONE=lambda x: x, COMPUTE_BACKBONE_SHAPE=lambda s: s).display()
    out = capsys.readouterr().out
    assert "BACKBONE " not in out and "COMPUTE_BACKBONE_SHAPE" not in out
    assert "BACKBONE_STRIDES" in out


def test_to_dict_is_json_serialisable():
    c = ShapesConfig()
    d = c.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["MEAN_PIXEL"] == pytest.approx([123.7, 116.8, 103.9])
    assert d["IMAGE_SHAPE"] == [128, 128, 3] and type(d["IMAGE_SHAPE"][0]) is int
    assert d["RPN_ANCHOR_SCALES"] == [8, 16, 32, 64, 128]
    assert d["NAME"] == "shapes" and d["COMPUTE_BACKBONE_SHAPE"] is None
    assert d["LOSS_WEIGHTS"]["mrcnn_mask_loss"] == 1.0
    assert "validate" not in d and all(k.isupper() for k in d)
    # to_dict must not alias the config's mutable values.
    d["LOSS_WEIGHTS"]["mrcnn_mask_loss"] = 5.0
    assert c.LOSS_WEIGHTS["mrcnn_mask_loss"] == 1.0


@pytest.mark.parametrize("name, value", [("MIXED_PRECISION", "float16"), ("XLA", 1),
                                         ("SYNC_BATCH_NORM", "yes")])
def test_accelerator_attributes_are_validated(name, value):
    class Bad(Config):
        pass
    setattr(Bad, name, value)
    with pytest.raises(ValueError, match=f"Config.{name} must be"):
        Bad()

