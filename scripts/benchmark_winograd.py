#!/usr/bin/env python3
"""One 3 x 3 convolution of Mask R-CNN, direct against Winograd's algorithm
(mrcnn/model/winograd.py): the forward pass alone (inference; F(2 x 2, 3 x 3) and
F(4 x 4, 3 x 3)) and forward + gradients of the input, kernel and bias (training;
F(2 x 2, 3 x 3)), on the shapes of the convolutions over 256 or more channels, with the largest
relative difference to the direct results of F(2 x 2, 3 x 3)'s training results and of
F(4 x 4, 3 x 3)'s output.

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
    from cpu_info import configure_threads, cpu_summary, onednn_isa
    tf = configure_threads(args.threads)
    from mrcnn.model import winograd
    from mrcnn.model.feature_conv import FeatureConv2D

    print(f"oneDNN ISA {onednn_isa()}; {cpu_summary()}; {args.threads} threads")
    print(f"{'shape':36s} {'GFLOP':>6s} {'fwd direct':>10s} {'F(2,3)':>7s} {'F(4,3)':>7s} "
          f"{'train direct':>12s} {'F(2,3)':>7s} {'diff F2':>8s} {'diff F4':>8s}")
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

        def relative_difference(a, b):
            return max(float(tf.reduce_max(tf.abs(p - q)) / tf.reduce_max(tf.abs(p)))
                       for p, q in zip(a, b))

        times, results = {}, {}
        winograd.MIN_TRAINING_MAP = 0
        for variant, use_winograd, tile in (("direct", False, 2), ("F2", True, 2),
                                            ("F4", True, 4)):
            # Traced with the flags set: the choice is made when traced.
            winograd.WINOGRAD, winograd.INFERENCE_OUTPUT_TILE = use_winograd, tile
            fns = (tf.function(forward), tf.function(step))
            if variant == "F4":
                fns = fns[:1]  # training is F(2 x 2, 3 x 3) whatever the inference tile
            times[variant] = [_timed(fn, (x,), args.runs) for fn in fns]
            results[variant] = [fn(x) for fn in fns]
        n, h, w, c = shape
        gflop = 2.0 * n * h * w * 9 * c * filters / 1e9
        print(f"{what:36s} {gflop:6.1f} {times['direct'][0]:10.3f} {times['F2'][0]:7.3f} "
              f"{times['F4'][0]:7.3f} {times['direct'][1]:12.3f} {times['F2'][1]:7.3f} "
              f"{relative_difference(results['direct'][1], results['F2'][1]):8.1e} "
              f"{relative_difference(results['direct'][0], results['F4'][0]):8.1e}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
