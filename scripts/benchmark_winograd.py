#!/usr/bin/env python3
"""One 3 x 3 convolution of Mask R-CNN, direct against Winograd F(2 x 2, 3 x 3)
(mrcnn/model/winograd.py): the forward pass alone (inference) and forward + gradients of the
input, kernel and bias (training), on the shapes of the step's convolutions over 256 or more
channels, with the largest relative difference of each result.

"Direct" is ``FeatureConv2D`` with Winograd off: the convolution (in row bands over a single
image), its own input gradient, and the filter gradient as matrix products where those apply
(mrcnn/model/feature_conv.py), i.e. what training ran before Winograd.

    .venv/bin/python scripts/benchmark_winograd.py --threads 2
    ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python scripts/benchmark_winograd.py --threads 2
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

#: (what, input shape NHWC, filters)
SHAPES = (
    ("RPN on P2, 512 x 512 batch 2", (2, 128, 128, 256), 512),
    ("FPN P2, 512 x 512 batch 2", (2, 128, 128, 256), 256),
    ("RPN on P3, 512 x 512 batch 2", (2, 64, 64, 256), 512),
    ("FPN P3, 512 x 512 batch 2", (2, 64, 64, 256), 256),
    ("res4 3x3, 512 x 512 batch 2", (2, 32, 32, 256), 256),
    ("RPN on P2, 128 x 128 batch 8", (8, 32, 32, 256), 512),
    ("mask head, 60 ROIs", (60, 14, 14, 256), 256),
    ("mask head, 100 ROIs (inference)", (100, 14, 14, 256), 256),
    ("RPN on P2, 1024 x 1024 (inference)", (1, 256, 256, 256), 512),
)


def _timed(fn, args, runs):
    fn(*args)
    start = time.perf_counter()
    for _ in range(runs):
        [t.numpy() for t in fn(*args)]
    return (time.perf_counter() - start) / runs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    from cpu_info import cpu_summary, onednn_isa
    from mrcnn.model import winograd
    from mrcnn.model.feature_conv import FeatureConv2D

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    print(f"oneDNN ISA {onednn_isa()}; {cpu_summary()}; {args.threads} threads")
    print(f"{'shape':36s} {'GFLOP':>6s} {'fwd direct':>10s} {'Winograd':>8s} "
          f"{'train direct':>12s} {'Winograd':>8s} {'rel diff':>8s}")
    for what, shape, filters in SHAPES:
        layer = FeatureConv2D(filters, 3, padding="same")
        layer.build(shape)
        x = tf.random.normal(shape, seed=0)
        weights = tf.random.normal(shape[:3] + (filters,), seed=1)

        def step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x, training=True)
                loss = tf.reduce_sum(y * weights)
            return [y] + tape.gradient(loss, [x, layer.kernel, layer.bias])

        def forward(x):
            return [layer(x, training=False)]

        results = {}
        for use_winograd in (False, True):
            # Traced with the flag set: the choice is made when traced.
            winograd.WINOGRAD = use_winograd
            winograd.MIN_TRAINING_PIXELS = 0
            fns = (tf.function(forward), tf.function(step))
            for fn in fns:
                fn.get_concrete_function(x)
            results[use_winograd] = [_timed(fn, (x,), args.runs) for fn in fns], fns[1](x)
        diff = max(float(tf.reduce_max(tf.abs(a - b)) / tf.reduce_max(tf.abs(a)))
                   for a, b in zip(results[False][1], results[True][1]))
        n, h, w, c = shape
        gflop = 2.0 * n * h * w * 9 * c * filters / 1e9
        (fwd_d, train_d), (fwd_w, train_w) = results[False][0], results[True][0]
        print(f"{what:36s} {gflop:6.1f} {fwd_d:10.3f} {fwd_w:8.3f} {train_d:12.3f} "
              f"{train_w:8.3f} {diff:8.1e}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
