"""One worker of the two-process MultiWorkerMirroredStrategy test (``TF_CONFIG`` from the env).

``python multiworker_worker.py MODEL_DIR OUT.json``: trains one epoch of 2 steps, then writes the
weights' digest, the image ids its input pipeline loaded and whether it is the chief.
"""
import hashlib
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from mrcnn.model import distribution  # noqa: E402
from mrcnn.model.maskrcnn import MaskRCNN  # noqa: E402
from samples.shapes.shapes import make_dataset  # noqa: E402
from tests.model.distributed_config import TinyStrategyConfig as StrategyConfig  # noqa: E402


class WorkerConfig(StrategyConfig):
    NAME = "multiworker"
    VALIDATION_STEPS = 1


def main(model_dir, out_path):
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    train = make_dataset(24, split="train", seed=7, height=128, width=128)
    loaded = []
    original = train.load_image

    def recording_load_image(image_id):
        loaded.append(int(image_id))
        return original(image_id)

    train.load_image = recording_load_image
    with strategy.scope():
        model = MaskRCNN("training", WorkerConfig(), model_dir)
    model.train(train, None, learning_rate=0.01, epochs=1, layers="all", verbose=0, seed=3)
    digest = hashlib.sha256()
    for w in model.keras_model.weights:
        digest.update(np.ascontiguousarray(np.asarray(w)).tobytes())
    with open(out_path, "w") as f:
        json.dump({"chief": distribution.is_chief(strategy), "digest": digest.hexdigest(),
                   "loaded": loaded, "replicas": distribution.replica_count(strategy),
                   "epoch": model.epoch}, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
