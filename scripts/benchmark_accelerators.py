#!/usr/bin/env python3
"""What an accelerator would be fed, and what mixed precision and XLA cost or gain on this CPU.

Two measurements (the last stdout line is one JSON object):

* ``pipeline``: images per second that ONE input worker (``make_training_dataset`` with
  ``num_parallel_calls=1`` and a private tf.data thread pool of one thread) produces
  for a COCO-like config: 1024 x 1024 ``square`` molding, ``MAX_GT_INSTANCES`` 100, 56 x 56 mini
  masks, 256 RPN anchors per image, with augmentation (horizontal flip + multiplicative
  brightness), on generated 640 x 480 shapes images with up to 12 instances. Cores needed to keep
  one GPU busy at detectron2's 7.75 images/s per V100 = 7.75 / (images/s per core).
* ``steps``: seconds per training step of one tiny model (128 x 128, batch 2), plain float32, with
  ``MIXED_PRECISION = "mixed_bfloat16"`` and with ``XLA = True``, measured alternately (A, B, C,
  A, B, C ...) in one process so that load from other work hits all three alike; ratios of the
  medians to the plain step.

    .venv/bin/python scripts/benchmark_accelerators.py --pipeline-images 40 --steps 10
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pipeline-images", type=int, default=40, help="timed images (0: skip)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per variant (0: skip)")
    ap.add_argument("--threads", type=int, default=2, help="TF threads for the step timing")
    ap.add_argument("--json-out", default="")
    return ap.parse_args(argv)


def coco_like_config():
    from mrcnn.config import Config

    class CocoLike(Config):
        NAME = "cocolike"
        IMAGES_PER_GPU = 1
        NUM_CLASSES = 4
        IMAGE_MIN_DIM = 800
        IMAGE_MAX_DIM = 1024
        MAX_GT_INSTANCES = 100
    return CocoLike()


def augmentation():
    import albumentations as A
    return A.Compose([A.HorizontalFlip(p=0.5),
                      A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.0,
                                                 brightness_by_max=False, p=1.0)])


def measure_pipeline(images):
    import tensorflow as tf
    from mrcnn.data.pipeline import (make_training_dataset, measure_pipeline_throughput,
                                     pyramid_anchors_for_config)
    from samples.shapes.shapes import make_dataset
    config = coco_like_config()
    data = make_dataset(64, split="train", seed=0, height=480, width=640)
    anchors_px, anchors = pyramid_anchors_for_config(config)
    ds = make_training_dataset(data, config, anchors, anchors_px, augmentation=augmentation(),
                               seed=0, num_parallel_calls=1)
    options = tf.data.Options()
    options.threading.private_threadpool_size = 1
    options.threading.max_intra_op_parallelism = 1
    per_s = measure_pipeline_throughput(ds.with_options(options), images)
    return {"images_per_s_per_core": per_s, "cores_for_7.75_images_per_s": 7.75 / per_s,
            "config": "1024x1024 square, MAX_GT 100, mini masks 56, flip + brightness",
            "images": images}


def tiny_config(**overrides):
    from tests.model.distributed_config import StrategyConfig

    attrs = dict(IMAGES_PER_GPU=2, IMAGE_MIN_DIM=128, IMAGE_MAX_DIM=128, **overrides)
    return type("Bench", (StrategyConfig,), attrs)()


def measure_steps(steps):
    import keras
    import numpy as np
    import tensorflow as tf
    from mrcnn.data.pipeline import make_training_dataset, pyramid_anchors_for_config
    from mrcnn.model import precision
    from mrcnn.model.maskrcnn import MaskRCNN
    from samples.shapes.shapes import make_dataset

    variants = {"plain": tiny_config(), "mixed_bfloat16": tiny_config(
        MIXED_PRECISION="mixed_bfloat16"), "xla": tiny_config(XLA=True)}
    data = make_dataset(4, split="train", seed=0, height=128, width=128)
    config = variants["plain"]
    anchors_px, anchors = pyramid_anchors_for_config(config)
    batch = next(iter(make_training_dataset(data, config, anchors, anchors_px, seed=0)))
    functions, compile_s, errors = {}, {}, {}
    for name, cfg in variants.items():
        model = MaskRCNN("training", cfg, "/tmp/mrcnn_bench_logs")
        km = model.keras_model
        model.set_trainable(".*", verbose=0)
        km.compile(optimizer=precision.wrap_optimizer(keras.optimizers.SGD(0.001, momentum=0.9),
                                                      km), jit_compile=bool(cfg.XLA))
        fixed = tf.data.Dataset.from_tensors(batch).repeat()
        start = time.perf_counter()
        try:
            km.fit(fixed, steps_per_epoch=1, epochs=1, verbose=0)  # traces (and compiles)
        except tf.errors.OpError as exc:  # e.g. no bfloat16 convolution for this oneDNN ISA
            errors[name] = str(exc).strip().splitlines()[-2][:300]
            continue
        compile_s[name] = time.perf_counter() - start
        functions[name] = (km, iter(fixed))
    times = {name: [] for name in functions}
    for _ in range(steps):
        for name, (km, it) in functions.items():
            start = time.perf_counter()
            km.train_on_batch(next(it))
            times[name].append(time.perf_counter() - start)
    med = {name: statistics.median(t) for name, t in times.items()}
    return {"median_s_per_step": med, "first_step_s": compile_s, "errors": errors,
            "ratio_to_plain": {n: med[n] / med["plain"] for n in med},
            "steps": steps, "work": "128x128, batch 2, tiny heads (tests' StrategyConfig)"}


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from scripts.cpu_info import cpu_summary
    result = {"host": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
              "cpu": cpu_summary(), "date": time.strftime("%Y-%m-%d"),
              "note": "ratios are measured alternately (A, B, C, A, B, C ...)"}
    if args.pipeline_images:
        result["pipeline"] = measure_pipeline(args.pipeline_images)
        print("pipeline:", result["pipeline"], flush=True)
    if args.steps:
        result["steps"] = measure_steps(args.steps)
        print("steps:", result["steps"], flush=True)
    line = json.dumps(result)
    if args.json_out:
        with open(args.json_out, "w") as f:
            f.write(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
