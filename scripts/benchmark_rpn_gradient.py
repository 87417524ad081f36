#!/usr/bin/env python3
"""The RPN head's training pass alone: forward + backward over P2-P6, dense against sparse.

Builds ``rpn_model`` (classic 512-channel shared convolution unless ``--rpn-channels``) and
times one traced forward + backward over the pyramid of a ``--size`` x ``--size`` batch of
``--batch`` images, with a loss on ``--anchors`` random anchors per image (the RPN losses'
RPN_TRAIN_ANCHORS_PER_IMAGE), once with the gradient of mrcnn/model/rpn_gradient.py and once
differentiated as usual. The whole training step's time depends on how many positive ROIs
the random-weight model happens to produce (the mask head's work); this isolates the RPN.

    .venv/bin/python scripts/benchmark_rpn_gradient.py --threads 2 --runs 10
    ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python scripts/benchmark_rpn_gradient.py ...
"""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_info import configure_threads, cpu_summary, onednn_isa, pin_to  # noqa: E402


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--anchors", type=int, default=256, help="anchors with a loss per image")
    ap.add_argument("--rpn-channels", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pin", default="")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    pin_to(args.pin)
    tf = configure_threads(args.threads)
    import numpy as np
    from mrcnn.model import rpn_gradient
    from mrcnn.model.rpn import build_rpn_model

    tf.random.set_seed(0)
    model = build_rpn_model(1, 3, 256, conv_channels=args.rpn_channels)
    sides = [args.size // stride for stride in (4, 8, 16, 32, 64)]
    maps = [tf.random.normal([args.batch, s, s, 256]) for s in sides]
    total = sum(3 * s * s for s in sides)
    rng = np.random.default_rng(0)
    chosen = np.zeros([args.batch, total], np.float32)
    for image in range(args.batch):
        chosen[image, rng.choice(total, args.anchors, replace=False)] = 1.0
    chosen = tf.constant(chosen)

    def step_function():
        @tf.function
        def step(maps):
            with tf.GradientTape() as tape:
                tape.watch(maps)
                outs = [model(m, training=True) for m in maps]
                logits = tf.concat([o[0] for o in outs], axis=1)
                deltas = tf.concat([o[2] for o in outs], axis=1)
                loss = tf.reduce_sum(chosen * (tf.reduce_logsumexp(logits, -1) - logits[..., 1]))
                loss += tf.reduce_sum(chosen[..., None] * tf.abs(deltas))
            grads = tape.gradient(loss, model.trainable_variables + maps)
            return tf.add_n([tf.reduce_sum(g) for g in grads])
        return step

    results = {}
    for label, sparse in (("sparse", True), ("dense", False)):
        rpn_gradient.SPARSE_RPN_GRADIENT = sparse
        step = step_function()
        for _ in range(args.warmup):
            step(maps).numpy()
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            step(maps).numpy()
            times.append(time.perf_counter() - t0)
        results[label] = {"median_s": statistics.median(times), "min_s": min(times),
                          "times_s": times}
        print(f"{label}: median {statistics.median(times):.3f} s (min {min(times):.3f})",
              flush=True)
    summary = {"size": args.size, "batch": args.batch, "anchors": args.anchors,
               "rpn_channels": args.rpn_channels, "threads": args.threads,
               "isa": onednn_isa(), "cpu": cpu_summary(), "results": results,
               "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
