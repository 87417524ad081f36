#!/usr/bin/env python3
"""Fixed costs met in notebooks: building a training model, its first step, a second train().

The classic flow: ``MaskRCNN(mode="training")``, ``train(layers="heads")``, then
``train(layers="all")``. Measured, on the work of ``scripts/benchmark_train.py`` (default
``train_128_b8``):

- ``build_s``: ``MaskRCNN(mode="training", ...)``;
- ``first_train_to_first_step_s``: from calling ``train(layers="heads")`` to the end of its first
  step (pipeline start, ``compile``, tracing the train step, the step itself);
- ``steady_heads_s`` / ``steady_all_s``: median step of each stage after its first;
- ``second_train_to_first_step_s``: the same as the first for ``train(layers="all")``, whose
  trainable variables differ, so that one retrace of the step is what the change needs;
- ``first_step_ratio``: ``(build_s + first_train_to_first_step_s) / steady_all_s``.

    .venv/bin/python scripts/benchmark_startup.py --threads 2
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_info import cpu_summary, onednn_isa, pin_to  # noqa: E402


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="train_128_b8", help="train_<size>_b<batch>")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pin", default="")
    ap.add_argument("--steps", type=int, default=6, help="steps per train() call")
    ap.add_argument("--json-out", default="")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    pin_to(args.pin)
    isa = onednn_isa()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    import keras
    from benchmark_train import make_config, make_dataset, parse_config_name
    from mrcnn.model.maskrcnn import MaskRCNN

    size, batch = parse_config_name(args.config)
    config = make_config(size, batch)
    config.STEPS_PER_EPOCH = args.steps
    config.VALIDATION_STEPS = 0
    dataset = make_dataset(size)

    marks = []

    class StepClock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            marks.append(time.perf_counter())

    t0 = time.perf_counter()
    model = MaskRCNN(mode="training", config=config, model_dir=tempfile.mkdtemp())
    build_s = time.perf_counter() - t0

    def stage(layers, epochs):
        marks.clear()
        start = time.perf_counter()
        model.train(dataset, None, learning_rate=config.LEARNING_RATE, epochs=epochs,
                    layers=layers, custom_callbacks=[StepClock()], verbose=0)
        steps = [b - a for a, b in zip(marks, marks[1:])]
        return marks[0] - start, statistics.median(steps)

    first_heads, steady_heads = stage("heads", 1)
    first_all, steady_all = stage("all", 2)
    result = {
        "config": args.config, "threads": args.threads, "isa": isa, "cpu": cpu_summary(),
        "build_s": build_s, "first_train_to_first_step_s": first_heads,
        "steady_heads_s": steady_heads, "second_train_to_first_step_s": first_all,
        "steady_all_s": steady_all,
        "first_step_ratio": (build_s + first_heads) / steady_all,
        "second_call_first_step_ratio": first_all / steady_all,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    print(f"{args.config}: build {build_s:.1f}s, train(heads) to end of step 1 "
          f"{first_heads:.1f}s, heads step {steady_heads:.2f}s; train(all) to end of step 1 "
          f"{first_all:.1f}s, all step {steady_all:.2f}s; (build+first)/steady "
          f"{result['first_step_ratio']:.1f}; oneDNN ISA {isa}")
    line = json.dumps(result)
    if args.json_out:
        with open(args.json_out, "w") as fh:
            fh.write(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
