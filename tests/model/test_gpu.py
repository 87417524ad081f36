"""What only a GPU can show: float16 loss scaling in a real step, and where the weights live.

Marked ``gpu``: skipped where TensorFlow sees no GPU (every machine of this project); run them
on a GPU machine with ``pytest -m gpu tests/model/test_gpu.py``.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn.data.pipeline import make_training_dataset, pyramid_anchors_for_config
from mrcnn.model import precision
from mrcnn.model.maskrcnn import MaskRCNN
from samples.shapes.shapes import make_dataset
from tests.model.distributed_config import StrategyConfig

pytestmark = pytest.mark.gpu


class Float16(StrategyConfig):
    IMAGES_PER_GPU = 2
    MIXED_PRECISION = "mixed_float16"


def _batch(config):
    data = make_dataset(2, split="train", seed=11, height=128, width=128)
    anchors_px, anchors = pyramid_anchors_for_config(config)
    return next(iter(make_training_dataset(data, config, anchors, anchors_px, seed=0)))


def test_float16_step_is_loss_scaled_and_finite(tmp_path):
    model = MaskRCNN("training", Float16(), str(tmp_path))
    km = model.keras_model
    assert precision.compute_dtypes(km)["conv1"] == "float16"
    model.set_trainable(".*", verbose=0)
    km.compile(optimizer=precision.wrap_optimizer(keras.optimizers.SGD(0.01, momentum=0.9), km))
    assert isinstance(km.optimizer, keras.optimizers.LossScaleOptimizer)
    history = km.fit(tf.data.Dataset.from_tensors(_batch(Float16())).repeat(), steps_per_epoch=3,
                     epochs=1, verbose=0)
    assert all(np.isfinite(v[-1]) for v in history.history.values()), history.history
    assert float(km.optimizer.dynamic_scale) > 1.0


def test_weights_are_placed_on_the_gpus(tmp_path):
    gpus = tf.config.list_logical_devices("GPU")

    class OnGpus(StrategyConfig):
        GPU_COUNT = min(2, len(gpus))
    model = MaskRCNN("training", OnGpus(), str(tmp_path))
    kernel = model.keras_model.get_layer("conv1").kernel.value
    if OnGpus.GPU_COUNT == 1:
        assert model.strategy is None and "GPU" in kernel.device.upper()
    else:
        assert model.strategy.num_replicas_in_sync == 2
        devices = {v.device.upper() for v in model.strategy.experimental_local_results(kernel)}
        assert devices == {gpu.name.upper() for gpu in gpus[:2]}
