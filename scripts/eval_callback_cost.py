"""Cost of COCO evaluation during training (``train(evaluation=K)``) on the shapes CPU config.

Builds the ShapesCPUConfig training model, then times, alternately in this one process:
``CocoEvalCallback.evaluate()`` on ``--images`` validation images (weight copy + detect + COCOeval;
the first call also builds the inference model and the ground truth, reported apart) and
``--steps`` training steps, so the cost can be stated as "an evaluation costs X training steps".

    .venv/bin/python scripts/eval_callback_cost.py --images 50 --steps 10 --rounds 2
"""
import argparse
import logging
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)

    from mrcnn.eval.callback import CocoEvalCallback
    from mrcnn.model.maskrcnn import MaskRCNN
    from samples.shapes.shapes import ShapesCPUConfig, ShapesCPUInferenceConfig, make_dataset

    config = ShapesCPUConfig()
    config.STEPS_PER_EPOCH = args.steps
    train = make_dataset(100, split="train", seed=0)
    val = make_dataset(args.images, split="val", seed=0)
    with tempfile.TemporaryDirectory() as logs:
        model = MaskRCNN("training", config, logs)
        evaluator = CocoEvalCallback(model, val, every=1, limit=args.images,
                                     inference_config=ShapesCPUInferenceConfig(),
                                     best_checkpoint=False, verbose=0)
        start = time.monotonic()
        evaluator._ensure_ready()
        print(f"one-off: build inference model + ground truth + load {args.images} images: "
              f"{time.monotonic() - start:.1f} s")
        model.train(train, None, learning_rate=config.LEARNING_RATE, epochs=1, layers="all",
                    verbose=0, seed=0)  # traces the training step
        for r in range(args.rounds):
            start = time.monotonic()
            model.train(train, None, learning_rate=config.LEARNING_RATE, epochs=model.epoch + 1,
                        layers="all", verbose=0, seed=r)
            train_s = time.monotonic() - start
            start = time.monotonic()
            figures = evaluator.evaluate()
            eval_s = time.monotonic() - start
            print(f"round {r + 1}: {args.steps} training steps {train_s:.1f} s "
                  f"({train_s / args.steps:.2f} s/step); evaluation of {args.images} images "
                  f"{eval_s:.1f} s = {eval_s / (train_s / args.steps):.1f} steps; "
                  f"mask AP {figures['val_mask_AP']:.3f}")


if __name__ == "__main__":
    main()
