"""Shared tiny models of the reliability catalogue (built once per session)."""
import pytest


@pytest.fixture(scope="session")
def tiny_inference(tmp_path_factory):
    """A tiny inference MaskRCNN (random weights) shared by the detect() and weights cases.

    Seeded: the detect() cases need its random weights to give detections; unseeded, whether
    they did depended on what earlier tests in the same worker had drawn (some orders gave
    none, as do seeds 5 and 6)."""
    import keras

    from mrcnn.model.maskrcnn import MaskRCNN
    from tests.reliability.tiny import TinyInferenceConfig
    keras.utils.set_random_seed(0)
    return MaskRCNN(mode="inference", config=TinyInferenceConfig(),
                    model_dir=str(tmp_path_factory.mktemp("tiny_inference_logs")))


@pytest.fixture(scope="session")
def tiny_training(tmp_path_factory):
    """A tiny training MaskRCNN shared by the training-fault cases."""
    from mrcnn.model.maskrcnn import MaskRCNN
    from tests.reliability.tiny import TinyConfig
    return MaskRCNN(mode="training", config=TinyConfig(),
                    model_dir=str(tmp_path_factory.mktemp("tiny_training_logs")))
