#!/usr/bin/env python3
"""A convolution's filter gradient: TensorFlow's ``Conv2DBackpropFilter`` (oneDNN) against
``mrcnn.model.feature_conv.gemm_filter_gradient`` (matrix products), on the shapes of the
training step's largest convolutions, with their relative difference.

    .venv/bin/python scripts/benchmark_filter_grad.py --threads 2
    ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python scripts/benchmark_filter_grad.py --threads 2
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

#: (what, input shape NHWC, filters, kernel side, stride)
SHAPES = (
    ("RPN 3x3 on P2, 512 x 512 batch 2", (2, 128, 128, 256), 512, 3, 1),
    ("FPN P2 3x3, 512 x 512 batch 2", (2, 128, 128, 256), 256, 3, 1),
    ("FPN P3 3x3, 512 x 512 batch 2", (2, 64, 64, 256), 256, 3, 1),
    ("FPN P4 3x3, 512 x 512 batch 2", (2, 32, 32, 256), 256, 3, 1),
    ("FPN P2 3x3, 128 x 128 batch 8", (8, 32, 32, 256), 256, 3, 1),
    ("mask head 3x3, 26 ROIs", (26, 14, 14, 256), 256, 3, 1),
    ("mask head 3x3, 40 ROIs", (40, 14, 14, 256), 256, 3, 1),
    ("res2 1x1, 512 x 512 batch 2", (2, 128, 128, 64), 256, 1, 1),
    ("res3a 1x1 stride 2, 512 x 512 batch 2", (2, 128, 128, 256), 128, 1, 2),
)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    from cpu_info import configure_threads, cpu_summary, onednn_isa
    tf = configure_threads(args.threads)
    from mrcnn.model.feature_conv import gemm_filter_gradient

    print(f"oneDNN ISA {onednn_isa()}; {cpu_summary()}; {args.threads} threads")
    print(f"{'shape':40s} {'GFLOP':>6s} {'oneDNN s':>9s} {'GEMM s':>7s} {'rel diff':>9s}")
    for what, shape, filters, k, stride in SHAPES:
        n, h, w, c = shape
        out_hw = (-(-h // stride), -(-w // stride))
        x = tf.random.normal(shape, seed=0)
        dy = tf.random.normal((n, *out_hw, filters), seed=1)
        reference = tf.function(lambda x, dy, k=k, c=c, f=filters, s=stride:
                                tf.raw_ops.Conv2DBackpropFilter(
                                    input=x, filter_sizes=[k, k, c, f], out_backprop=dy,
                                    strides=[1, s, s, 1], padding="SAME"))
        products = tf.function(lambda x, dy, k=k, s=stride:
                               gemm_filter_gradient(x, dy, (k, k), (s, s)))
        a, b = reference(x, dy), products(x, dy)
        diff = float(tf.reduce_max(tf.abs(a - b)) / tf.reduce_max(tf.abs(a)))
        times = []
        for fn in (reference, products):
            fn(x, dy).numpy()
            t0 = time.perf_counter()
            for _ in range(args.runs):
                fn(x, dy).numpy()
            times.append((time.perf_counter() - t0) / args.runs)
        gflop = 2.0 * n * out_hw[0] * out_hw[1] * k * k * c * filters / 1e9
        print(f"{what:40s} {gflop:6.1f} {times[0]:9.3f} {times[1]:7.3f} {diff:9.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
