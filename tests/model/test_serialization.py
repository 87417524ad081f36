"""Every custom layer of both graphs survives get_config -> from_config, and no Lambda is used."""
import keras
import pytest

from mrcnn.config import Config
from mrcnn.model.graph import build_inference_model
from mrcnn.model.training import build_training_model


class SmallConfig(Config):
    NAME = "serial"
    IMAGES_PER_GPU = 1
    NUM_CLASSES = 3
    BACKBONE = "resnet50"
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64
    POST_NMS_ROIS_INFERENCE = 20
    POST_NMS_ROIS_TRAINING = 20
    TRAIN_ROIS_PER_IMAGE = 8
    DETECTION_MAX_INSTANCES = 5


def _custom_layers(model):
    found = {}
    for layer in model.layers:
        inner = layer.layers if isinstance(layer, keras.Model) else [layer]
        for sub in inner:
            if type(sub).__module__.startswith("mrcnn."):
                found.setdefault(type(sub).__name__, sub)
    return found


@pytest.fixture(scope="module")
def models():
    config = SmallConfig()
    return build_inference_model(config), build_training_model(config)


def test_every_custom_layer_round_trips_through_its_config(models):
    layers = {}
    for model in models:
        layers.update(_custom_layers(model))
    expected = {"BatchNorm", "ProposalLayer", "PyramidROIAlign", "DetectionLayer",
                "DetectionBoxes", "DetectionTargetLayer", "NormalizeBoxes", "RoiSlice",
                "ActiveClassIds", "RpnClassLoss", "RpnBboxLoss", "MrcnnClassLoss",
                "MrcnnBboxLoss", "MrcnnMaskLoss"}
    assert expected <= set(layers), expected - set(layers)
    for name, layer in layers.items():
        config = layer.get_config()
        clone = type(layer).from_config(config)
        assert clone.get_config() == config, name
        # Registered for safe-mode deserialization under the package name.
        serialized = keras.saving.serialize_keras_object(layer)
        restored = keras.saving.deserialize_keras_object(serialized, safe_mode=True)
        assert type(restored) is type(layer), name


def test_no_lambda_layers_in_either_graph(models):
    for model in models:
        for layer in model.layers:
            assert not isinstance(layer, keras.layers.Lambda), layer.name
