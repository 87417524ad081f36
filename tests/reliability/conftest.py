"""Shared tiny models of the reliability catalogue (built once per session)."""
import pytest


@pytest.fixture(scope="session")
def tiny_inference(tmp_path_factory):
    """A tiny inference MaskRCNN (random weights) shared by the detect() and weights cases."""
    from mrcnn.model.maskrcnn import MaskRCNN
    from tests.reliability.tiny import TinyInferenceConfig
    return MaskRCNN(mode="inference", config=TinyInferenceConfig(),
                    model_dir=str(tmp_path_factory.mktemp("tiny_inference_logs")))


@pytest.fixture(scope="session")
def tiny_training(tmp_path_factory):
    """A tiny training MaskRCNN shared by the training-fault cases."""
    from mrcnn.model.maskrcnn import MaskRCNN
    from tests.reliability.tiny import TinyConfig
    return MaskRCNN(mode="training", config=TinyConfig(),
                    model_dir=str(tmp_path_factory.mktemp("tiny_training_logs")))
