"""Config.CLASS_WEIGHTS: the classifier loss weighted per class raises a rare class's recall.

Level of the test: the classifier head's last layer (a dense softmax over fixed ROI features)
trained with the real ``mrcnn_class_loss`` / ``MrcnnClassLoss`` and SGD, on an imbalanced
synthetic set of ROI features (background, a common class and a rare class whose feature
clusters overlap). This is where the weights act: the rest of the network only changes the
features. It keeps the test at a second instead of the minutes a whole model would need.
"""
import numpy as np
import pytest
import tensorflow as tf

from mrcnn.config import Config
from mrcnn.model.losses import MrcnnClassLoss, mrcnn_class_loss

COUNTS = {0: 600, 1: 300, 2: 20}  # background, common, rare ROIs per training set
CENTRES = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, 1.2]], np.float32)


def _rois(seed, counts):
    rng = np.random.default_rng(seed)
    features, labels = [], []
    for class_id, count in counts.items():
        features.append(CENTRES[class_id] + rng.normal(0, 0.7, (count, 2)))
        labels.append(np.full(count, class_id))
    return (np.concatenate(features).astype(np.float32)[None],
            np.concatenate(labels).astype(np.int32)[None])


def _train_head(class_weights, steps=300):
    features, labels = _rois(0, COUNTS)
    tf.random.set_seed(0)
    kernel = tf.Variable(tf.zeros([2, 3]))
    bias = tf.Variable(tf.zeros([3]))
    optimizer = tf.keras.optimizers.SGD(learning_rate=0.5, momentum=0.9)
    active = tf.ones([1, 3])
    rois = tf.ones([1, features.shape[1], 4])  # every ROI is real (non-zero)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            logits = tf.einsum("btf,fc->btc", features, kernel) + bias
            loss = mrcnn_class_loss(labels, logits, active, rois, class_weights=class_weights)
        optimizer.apply(tape.gradient(loss, [kernel, bias]), [kernel, bias])

    for _ in range(steps):
        step()
    return kernel.numpy(), bias.numpy()


def _recall(head, class_id):
    features, labels = _rois(1, {0: 600, 1: 300, 2: 300})  # held-out, enough rare ROIs
    predicted = np.argmax(features[0] @ head[0] + head[1], axis=-1)
    return float(np.mean(predicted[labels[0] == class_id] == class_id))


def test_class_weights_raise_the_rare_class_recall():
    plain = _train_head(None)
    weighted = _train_head([1.0, 1.0, 15.0])
    rare_plain, rare_weighted = _recall(plain, 2), _recall(weighted, 2)
    print(f"rare-class recall: unweighted {rare_plain:.3f}, weighted {rare_weighted:.3f}; "
          f"common-class recall weighted {_recall(weighted, 1):.3f}")
    assert rare_plain < 0.3, f"the unweighted head already finds the rare class ({rare_plain})"
    assert rare_weighted > rare_plain + 0.3, (rare_plain, rare_weighted)
    # and the common class is still recognised
    assert _recall(weighted, 1) > 0.5


def test_weights_of_one_are_the_classic_loss_and_layer_round_trips():
    features, labels = _rois(2, {0: 30, 1: 10, 2: 5})
    logits = tf.constant(np.random.default_rng(3).normal(size=(1, 45, 3)), tf.float32)
    args = (labels, logits, tf.ones([1, 3]), tf.ones([1, 45, 4]))
    np.testing.assert_allclose(mrcnn_class_loss(*args, class_weights=[1.0, 1.0, 1.0]),
                               mrcnn_class_loss(*args), rtol=1e-6)
    # weighted mean: only class 2 counted when the others weigh 0
    only_rare = mrcnn_class_loss(*args, class_weights=[0.0, 0.0, 4.0])
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits).numpy()
    np.testing.assert_allclose(only_rare, ce[labels == 2].mean(), rtol=1e-5)
    layer = MrcnnClassLoss(class_weights=[1, 2, 3])
    assert MrcnnClassLoss.from_config(layer.get_config()).class_weights == [1.0, 2.0, 3.0]
    np.testing.assert_allclose(layer(list(args)),
                               mrcnn_class_loss(*args, class_weights=[1, 2, 3]), rtol=1e-6)


@pytest.mark.parametrize("value", [[1, 2], [1, -1, 1], "1,1,1", [0, 0, 0], {1: 2}])
def test_config_rejects_bad_class_weights(value):
    class Bad(Config):
        NAME = "bad"
        NUM_CLASSES = 3
        CLASS_WEIGHTS = value

    with pytest.raises(ValueError, match="CLASS_WEIGHTS must be None or a list of NUM_CLASSES=3"):
        Bad()


def test_class_weights_off_by_default():
    assert Config.CLASS_WEIGHTS is None
