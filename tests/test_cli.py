"""Tests for the small command-line helpers of mrcnn.cli."""
import pytest

from mrcnn.cli import parse_config_overrides


def test_parse_config_overrides_reads_json_values():
    assert parse_config_overrides(["LEARNING_RATE=0.0025", "TRAIN_ROIS_INCLUDE_GT=true",
                                   "RPN_ANCHOR_SCALES=[8, 16]", 'NAME="x"']) == {
        "LEARNING_RATE": 0.0025, "TRAIN_ROIS_INCLUDE_GT": True, "RPN_ANCHOR_SCALES": [8, 16],
        "NAME": "x"}
    assert parse_config_overrides([]) == {}


@pytest.mark.parametrize("item, message", [
    ("LEARNING_RATE", "expected NAME=JSON"),
    ("learning_rate=0.1", "upper-case config name"),
    ("NAME=shapes", "the value is not JSON"),
])
def test_parse_config_overrides_names_the_bad_item(item, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_config_overrides([item])
    assert repr(item) in str(info.value)


def test_config_with_subclasses_derives_and_refuses_lower_case():
    from mrcnn.cli import config_with
    from mrcnn.config import Config

    config = config_with(Config, NUM_CLASSES=5, IMAGES_PER_GPU=3, GPU_COUNT=None)
    assert config.NUM_CLASSES == 5 and config.BATCH_SIZE == 3 and config.GPU_COUNT == 1
    assert config.IMAGE_META_SIZE == Config().IMAGE_META_SIZE + 4
    assert type(config).__name__ == "Config" and Config.NUM_CLASSES == 1
    with pytest.raises(ValueError, match="UPPERCASE"):
        config_with(Config, num_classes=5)
