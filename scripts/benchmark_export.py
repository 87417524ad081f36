#!/usr/bin/env python3
"""SavedModel export time and serving latency against MaskRCNN.detect() on the same image.

resnet50 + FPN, random weights, DETECTION_MIN_CONFIDENCE 0 (so DETECTION_MAX_INSTANCES masks are
pasted on both sides), one image of --size x --size (IMAGE_MAX_DIM = --size, "square"). After
warm-up, detect() and the SavedModel's signatures run alternately in one process, so load from
other work hits both alike; the ratio is the number to compare.

    .venv/bin/python scripts/benchmark_export.py --size 512 --runs 5
    .venv/bin/python scripts/benchmark_export.py --size 1024 --runs 5 --threads 2 --pin 0,1

Prints a table and, as the last line, one JSON object.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cpu_info import cpu_summary, onednn_isa, pin_to  # noqa: E402


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512, help="image side and IMAGE_MAX_DIM")
    ap.add_argument("--runs", type=int, default=5, help="timed runs of each")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="TensorFlow intra-op threads")
    ap.add_argument("--pin", default="", help="run on these CPUs only, e.g. 0,1")
    ap.add_argument("--detections", type=int, default=100, help="DETECTION_MAX_INSTANCES")
    ap.add_argument("--num-classes", type=int, default=81)
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.pin:
        pin_to(args.pin)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from mrcnn.config import Config
    from mrcnn.model.maskrcnn import MaskRCNN

    class BenchConfig(Config):
        NAME = "bench_export"
        GPU_COUNT = 1
        IMAGES_PER_GPU = 1
        NUM_CLASSES = args.num_classes
        BACKBONE = "resnet50"
        IMAGE_MIN_DIM = args.size
        IMAGE_MAX_DIM = args.size
        DETECTION_MIN_CONFIDENCE = 0.0
        DETECTION_MAX_INSTANCES = args.detections

    model = MaskRCNN("inference", BenchConfig(), model_dir=tempfile.mkdtemp())
    image = np.random.default_rng(0).integers(0, 256, (args.size * 3 // 4, args.size, 3),
                                              dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        model.export(os.path.join(tmp, "sm"))
        export_s = time.perf_counter() - started
        started = time.perf_counter()
        served = tf.saved_model.load(os.path.join(tmp, "sm"))
        load_s = time.perf_counter() - started
        batch = tf.constant(image[None])
        runners = {
            "detect": lambda: model.detect([image]),
            "serving_default": lambda: served.signatures["serving_default"](images=batch),
            "mask_probabilities": lambda: served.signatures["mask_probabilities"](images=batch),
        }
        for run in runners.values():
            for _ in range(args.warmup):
                run()
        times = {name: [] for name in runners}
        for _ in range(args.runs):  # alternate, so background load hits every runner alike
            for name, run in runners.items():
                started = time.perf_counter()
                out = run()
                if isinstance(out, dict):
                    next(iter(out.values())).numpy()
                times[name].append(time.perf_counter() - started)
    med = {name: statistics.median(t) for name, t in times.items()}
    result = {"size": args.size, "image": list(image.shape), "detections": args.detections,
              "threads": args.threads, "export_s": round(export_s, 2),
              "load_s": round(load_s, 2),
              **{f"{k}_ms": round(v * 1000, 1) for k, v in med.items()},
              "serving_over_detect": round(med["serving_default"] / med["detect"], 3),
              "probabilities_over_detect": round(med["mask_probabilities"] / med["detect"], 3),
              "cpu": cpu_summary(), "onednn_isa": onednn_isa()}
    print(f"export {export_s:.1f} s, load {load_s:.1f} s")
    for name, value in med.items():
        print(f"{name:20s} {value * 1000:8.1f} ms (median of {args.runs})")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
