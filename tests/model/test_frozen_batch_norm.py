"""Config.TRAIN_BN_AFFINE = False: BatchNorm's gamma and beta stay fixed (FrozenBatchNorm2d)."""
import keras
import numpy as np
import pytest

from mrcnn.data.pipeline import make_training_dataset, pyramid_anchors_for_config
from mrcnn.model.maskrcnn import MaskRCNN
from mrcnn.model.optimizer import classic_sgd
from samples.shapes.shapes import make_dataset
from tests.model.distributed_config import StrategyConfig


class FrozenBatchNormConfig(StrategyConfig):
    NAME = "frozenbn"
    IMAGES_PER_GPU = 2
    GRADIENT_CLIP_NORM = 5.0
    TRAIN_BN_AFFINE = False


@pytest.fixture(scope="module")
def frozen_model(tmp_path_factory):
    return MaskRCNN(mode="training", config=FrozenBatchNormConfig(),
                    model_dir=str(tmp_path_factory.mktemp("logs")))


def _batch_norm_layers(model):
    return [layer for layer in model.keras_model.layers
            if isinstance(layer, keras.layers.BatchNormalization)]


def test_gamma_and_beta_are_not_trained_and_the_rest_is(frozen_model):
    bn_layers = _batch_norm_layers(frozen_model)
    # ResNet-50: conv1 + 16 blocks x 3 + 4 shortcuts; heads: class 2 + mask 4.
    assert len(bn_layers) == 53 + 6
    assert not any(layer.trainable for layer in bn_layers)      # as built
    frozen_model.set_trainable(".*", verbose=0)                 # layers="all" keeps them so
    assert not any(layer.trainable for layer in bn_layers)
    km = frozen_model.keras_model
    trainable = {id(v) for v in km.trainable_variables}
    assert not any(id(w) in trainable for layer in bn_layers for w in layer.weights)
    assert id(km.get_layer("res2a_branch2a").kernel) in trainable

    config = frozen_model.config
    anchors_px, anchors = pyramid_anchors_for_config(config)
    dataset = make_dataset(4, split="train", seed=5, height=128, width=128)
    batch = next(iter(make_training_dataset(dataset, config, anchors, anchors_px,
                                            shuffle=False, seed=0)))
    bn, conv = km.get_layer("bn2a_branch2a"), km.get_layer("res2a_branch2a")
    before = [w.numpy().copy() for w in (bn.gamma, bn.beta, bn.moving_mean, conv.kernel)]
    km.compile(optimizer=classic_sgd(0.01, 0.9), jit_compile=False)
    logs = km.train_on_batch(batch, return_dict=True)
    assert np.isfinite(logs["loss"])
    after = [w.numpy().copy() for w in (bn.gamma, bn.beta, bn.moving_mean, conv.kernel)]
    for old, new in zip(before[:3], after[:3]):
        np.testing.assert_array_equal(old, new)
    assert not np.allclose(before[3], after[3])


@pytest.mark.parametrize("train_bn", [None, True])
def test_frozen_affine_needs_frozen_statistics(train_bn):
    class Bad(FrozenBatchNormConfig):
        TRAIN_BN = train_bn
    with pytest.raises(ValueError, match="TRAIN_BN_AFFINE = False needs TRAIN_BN = False"):
        Bad()


def test_train_bn_affine_must_be_a_bool():
    class Bad(FrozenBatchNormConfig):
        TRAIN_BN_AFFINE = 0
    with pytest.raises(ValueError, match="TRAIN_BN_AFFINE must be True or False"):
        Bad()
