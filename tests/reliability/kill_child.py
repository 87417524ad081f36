"""Child process of the kill -9 fault test: resume from find_last() and train the tiny model.

Usage: python -m tests.reliability.kill_child MODEL_DIR SLOW_WRITES(0|1)

Prints "TRAINING" when the first batch starts. With SLOW_WRITES=1 each checkpoint write is
slowed down (a short sleep per weight, in this test process only) and announces itself by
MODEL_DIR/writing-<pid>, present while the write runs, so that the parent can kill -9 the process in the middle of
the write. The model, the training loop and the checkpoint code are the real ones.
"""
import os
import sys
import time

import keras

import mrcnn.model.weights_io as weights_io
from mrcnn.model.maskrcnn import MaskRCNN
from tests.reliability.tiny import SquaresDataset, TinyConfig


class KillConfig(TinyConfig):
    NAME = "killed"
    STEPS_PER_EPOCH = 1


class Announce(keras.callbacks.Callback):
    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:
            print("TRAINING", flush=True)


def main(model_dir, slow_writes):
    if slow_writes:
        import mrcnn.model.training as training
        original_digest, original_save = weights_io._digest_update, training.save_classic_weights
        marker = os.path.join(model_dir, f"writing-{os.getpid()}")

        def slow_digest_update(*args):
            time.sleep(0.03)
            return original_digest(*args)

        def announced_save(*args, **kwargs):
            open(marker, "w").close()
            try:
                return original_save(*args, **kwargs)
            finally:
                os.remove(marker)

        weights_io._digest_update = slow_digest_update
        training.save_classic_weights = announced_save
    model = MaskRCNN(mode="training", config=KillConfig(), model_dir=model_dir)
    try:
        last = model.find_last()
    except FileNotFoundError:
        last = None
    if last:
        model.load_weights(last, by_name=True)
        print(f"RESUMED {last} epoch {model.epoch}", flush=True)
    dataset = SquaresDataset(count=2)
    model.train(dataset, None, learning_rate=0.01, epochs=model.epoch + 1000, layers="all",
                custom_callbacks=[Announce()], verbose=0)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] == "1")
