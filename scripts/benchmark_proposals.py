#!/usr/bin/env python3
"""ProposalLayer alone: the per-image C++ NMS kernel against the batched padded op (XLA's).

Both variants of :class:`mrcnn.model.proposal.ProposalLayer` (``xla_compatible`` False / True)
run on the real anchor pyramid of an image size with random RPN outputs (uniform scores, small
deltas: random weights propose about the anchors), inside one ``tf.function`` each, alternately,
so that both see the same machine state. Prints the median seconds per call of each and, as the
last line, one JSON object.

    .venv/bin/python scripts/benchmark_proposals.py --size 512 --batch 2 --proposals 2000
    ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python scripts/benchmark_proposals.py ...
"""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_info import cpu_summary, onednn_isa, pin_to  # noqa: E402


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512, help="image side (anchor pyramid)")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--proposals", type=int, default=2000, help="proposal_count after NMS")
    ap.add_argument("--pre-nms", type=int, default=6000, help="PRE_NMS_LIMIT")
    ap.add_argument("--nms-threshold", type=float, default=0.7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pin", default="")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    pin_to(args.pin)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from mrcnn.config import Config
    from mrcnn.data.pipeline import pyramid_anchors_for_config
    from mrcnn.model.proposal import ProposalLayer

    class AnchorConfig(Config):
        NAME = "anchors"
        IMAGE_MIN_DIM = args.size
        IMAGE_MAX_DIM = args.size

    _, anchors = pyramid_anchors_for_config(AnchorConfig())
    rng = np.random.default_rng(args.seed)
    count = anchors.shape[0]
    fg = rng.uniform(size=(args.batch, count)).astype(np.float32)
    probs = tf.constant(np.stack([1 - fg, fg], axis=-1))
    deltas = tf.constant(rng.normal(0.0, 0.5, (args.batch, count, 4)).astype(np.float32))
    anchors = tf.constant(anchors[np.newaxis].astype(np.float32))
    calls, counts = {}, {}
    for xla in (False, True):
        layer = ProposalLayer(args.proposals, args.nms_threshold, args.pre_nms,
                              (0.1, 0.1, 0.2, 0.2), xla_compatible=xla)
        fn = tf.function(lambda p, d, a, layer=layer: layer([p, d, a]))
        out = fn(probs, deltas, anchors).numpy()  # trace and warm up
        counts[xla] = int(np.sum(np.any(out != 0, axis=-1)))
        calls[xla] = fn
    walls = {False: [], True: []}
    for _ in range(args.runs):
        for xla in (False, True):
            t0 = time.perf_counter()
            calls[xla](probs, deltas, anchors).numpy()
            walls[xla].append(time.perf_counter() - t0)
    result = {
        "size": args.size, "batch": args.batch, "anchors": count, "pre_nms": args.pre_nms,
        "proposals": args.proposals, "threads": args.threads, "isa": onednn_isa(),
        "cpu": cpu_summary(), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cpp_kernel_s": statistics.median(walls[False]),
        "padded_op_s": statistics.median(walls[True]),
        "proposals_kept": {"cpp_kernel": counts[False], "padded_op": counts[True]},
    }
    print(f"{args.size}px batch {args.batch}, {count} anchors, top {args.pre_nms} -> "
          f"{args.proposals}: C++ kernel {result['cpp_kernel_s']:.3f} s, padded op "
          f"{result['padded_op_s']:.3f} s per call (kept {counts[False]} / {counts[True]}); "
          f"oneDNN ISA {result['isa']}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
