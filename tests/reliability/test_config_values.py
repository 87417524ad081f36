"""Reliability catalogue, group "Config values": each bad value is refused by Config() with a
ValueError naming the field, its value and what is allowed (no model is built)."""
import numpy as np
import pytest

from mrcnn.config import Config


def _config(**overrides):
    attrs = {"NAME": "cat", "NUM_CLASSES": 3}
    attrs.update(overrides)
    return type("CatalogueConfig", (Config,), attrs)()


# (overrides, text the message must contain besides the field name)
BAD = [
    ({"LEARNING_RATE": "0.001"}, "'0.001'"),                       # string: failed in Keras
    ({"LEARNING_RATE": -0.01}, "(0.0, 1.0]"),
    ({"LEARNING_RATE": 0}, "(0.0, 1.0]"),
    ({"LEARNING_RATE": float("nan")}, "nan"),
    ({"LEARNING_RATE": 5.0}, "5.0"),
    ({"LEARNING_RATE": None}, "None"),
    ({"LEARNING_MOMENTUM": -0.9}, "[0.0, 1.0)"),                   # accepted nonsense
    ({"LEARNING_MOMENTUM": 1.0}, "[0.0, 1.0)"),
    ({"LEARNING_MOMENTUM": "0.9"}, "'0.9'"),
    ({"WEIGHT_DECAY": -1e-4}, "[0.0, 1.0)"),                       # accepted nonsense
    ({"WEIGHT_DECAY": float("inf")}, "inf"),
    ({"RPN_NMS_THRESHOLD": 5}, "(0.0, 1.0]"),
    ({"RPN_NMS_THRESHOLD": 0}, "(0.0, 1.0]"),
    ({"DETECTION_NMS_THRESHOLD": 5}, "(0.0, 1.0]"),                # "an NMS threshold of 5"
    ({"DETECTION_NMS_THRESHOLD": -0.3}, "(0.0, 1.0]"),
    ({"DETECTION_MIN_CONFIDENCE": 1.5}, "[0, 1]"),
    ({"ROI_POSITIVE_RATIO": 0}, "(0, 1]"),
    ({"RPN_ANCHOR_RATIOS": [-0.5, 1, 2]}, "> 0"),                  # accepted nonsense
    ({"RPN_ANCHOR_RATIOS": []}, "non-empty"),
    ({"RPN_ANCHOR_RATIOS": [0.5, "1", 2]}, "> 0"),
    ({"RPN_ANCHOR_SCALES": (32, 64, 0, 256, 512)}, "> 0"),
    ({"RPN_ANCHOR_SCALES": (32, 64)}, "one scale per pyramid level"),
    ({"RPN_ANCHOR_STRIDE": 0}, "positive integer"),
    ({"BBOX_STD_DEV": np.array([0.1, 0.1, 0.0, 0.2])}, "> 0"),
    ({"RPN_BBOX_STD_DEV": [0.1, 0.1]}, "4 values"),
    ({"MASK_SHAPE": [56, 56]}, "2 * MASK_POOL_SIZE"),              # shape error at 1st step
    ({"MASK_POOL_SIZE": 7}, "MASK_POOL_SIZE = 7"),
    ({"MASK_SHAPE": [28.0, 28.0]}, "positive integers"),
    ({"MINI_MASK_SHAPE": (0, 56)}, "positive integers"),
    ({"POOL_SIZE": 0}, "positive integer"),
    ({"NAME": "my/run"}, "folder-name-safe"),                      # failed at 1st checkpoint
    ({"NAME": "two words"}, "folder-name-safe"),
    ({"NAME": ""}, "folder-name-safe"),
    ({"NAME": "a.b"}, "folder-name-safe"),
    ({"NAME": 7}, "folder-name-safe"),
    ({"USE_RPN_ROIS": False}, "input_roi"),                        # train() could not feed it
    ({"GRADIENT_CLIP_NORM": 0}, "> 0"),
    ({"GRADIENT_CLIP_NORM": "5"}, "'5'"),
    ({"LOSS_WEIGHTS": {"rpn_class_loss": 1., "rpn_bbox_loss": -1., "mrcnn_class_loss": 1.,
                       "mrcnn_bbox_loss": 1., "mrcnn_mask_loss": 1.}}, ">= 0"),
    ({"LOSS_WEIGHTS": {"rpn_class_loss": 1.}}, "exactly the keys"),
    ({"IMAGE_MIN_SCALE": -1}, ">= 0"),
    ({"USE_MINI_MASK": "yes"}, "True or False"),
    ({"IMAGES_PER_GPU": 0}, "positive integer"),
    ({"NUM_CLASSES": 2.0}, "positive integer"),
    ({"IMAGE_MAX_DIM": 100}, "multiple of 64"),
    ({"IMAGE_RESIZE_MODE": "fit"}, "one of"),
    ({"BACKBONE": "resnet18"}, "one of"),
    ({"TRAIN_BN": 1}, "None, True or False"),
    ({"MEAN_PIXEL": np.array([123.7, 116.8])}, "IMAGE_CHANNEL_COUNT"),
]


@pytest.mark.parametrize("overrides,text", BAD, ids=[next(iter(o)) + "=" + repr(o[next(iter(o))])[:24]
                                                    for o, _ in BAD])
def test_bad_config_value_is_refused_naming_field_value_and_range(overrides, text):
    field = next(iter(overrides))
    with pytest.raises(ValueError) as err:
        _config(**overrides)
    message = str(err.value)
    assert f"Config.{field}" in message or f"{field} = " in message
    assert text in message


GOOD = [
    {"LEARNING_RATE": 1},            # int is a number
    {"LEARNING_MOMENTUM": 0.0},
    {"WEIGHT_DECAY": 0},
    {"GRADIENT_CLIP_NORM": None},    # no clipping
    {"NAME": "shapes-cpu_2"},
    {"MASK_POOL_SIZE": 7, "MASK_SHAPE": [14, 14]},
]


@pytest.mark.parametrize("overrides", GOOD, ids=[",".join(o) for o in GOOD])
def test_sane_config_values_are_accepted(overrides):
    config = _config(**overrides)
    for field, value in overrides.items():
        assert getattr(config, field) == value or np.array_equal(getattr(config, field), value)
