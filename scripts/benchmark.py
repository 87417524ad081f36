#!/usr/bin/env python3
"""Inference benchmark: MaskRCNN.detect() on one 1024x1024 image, with a per-stage profile.

The same work as ``../shared/bench/torchvision_peer.py --configs infer_1024``: resnet50 + FPN,
random weights, 1000 proposals, DETECTION_MIN_CONFIDENCE 0 and 100 detections (so the mask head
runs on, and we paste, 100 masks), 2 threads. Prints a table and, as the last line, one JSON
object.

    .venv/bin/python scripts/benchmark.py --threads 2 --runs 5
    .venv/bin/python scripts/benchmark.py --threads 1 --pin 0 --runs 5
    ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python scripts/benchmark.py ...   # the AVX2 path

Every result records the CPU and the ISA oneDNN dispatched to (scripts/cpu_info.py).
"""
import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_info import configure_threads, cpu_summary, onednn_isa, pin_to  # noqa: E402


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="TensorFlow intra-op threads")
    ap.add_argument("--pin", default="", help="run on these CPUs only, e.g. 0 or 0,1")
    ap.add_argument("--runs", type=int, default=5, help="timed runs")
    ap.add_argument("--warmup", type=int, default=2, help="untimed runs first")
    ap.add_argument("--size", type=int, default=1024, help="image side (IMAGE_MAX_DIM)")
    ap.add_argument("--backbone", default="resnet50", choices=["resnet50", "resnet101"])
    ap.add_argument("--num-classes", type=int, default=91,
                    help="classes incl. background (91 = the torchvision peer's COCO head)")
    ap.add_argument("--proposals", type=int, default=1000, help="POST_NMS_ROIS_INFERENCE")
    ap.add_argument("--detections", type=int, default=100, help="DETECTION_MAX_INSTANCES")
    ap.add_argument("--rpn-channels", type=int, default=512,
                    help="RPN_CONV_CHANNELS (512 classic; 256 is torchvision's RPN)")
    ap.add_argument("--min-confidence", type=float, default=0.0,
                    help="DETECTION_MIN_CONFIDENCE (0: every slot a detection, the peer's "
                         "work; higher: fewer detections than DETECTION_MAX_INSTANCES slots)")
    ap.add_argument("--no-profile", action="store_true", help="skip the per-stage profile")
    ap.add_argument("--no-row-bands", action="store_true",
                    help="convolve single images as they are, not in row bands "
                         "(mrcnn.model.row_bands.ROW_BANDS = False; for comparisons)")
    ap.add_argument("--no-winograd", action="store_true",
                    help="direct 3x3 convolutions only (mrcnn.model.winograd.WINOGRAD = False)")
    ap.add_argument("--fold-bn", action="store_true",
                    help="BatchNorm folded into the convolution before it where it uses its "
                         "moving statistics (mrcnn.model.folded_norm.FOLD_BATCH_NORM = True)")
    ap.add_argument("--winograd-tile", type=int, default=0, choices=[0, 2, 4, 6],
                    help="Winograd output tile: 4 = F(4x4,3x3), 2 = F(2x2,3x3), 6 = "
                         "F(6x6,3x3), 0 = the default (mrcnn.model.winograd."
                         "INFERENCE_OUTPUT_TILE)")
    ap.add_argument("--no-native", action="store_true",
                    help="Winograd's transforms XLA-compiled, not mrcnn's native kernels "
                         "(mrcnn.native.ENABLED = False; for comparisons)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json-out", default="", help="also write the JSON result here")
    return ap.parse_args(argv)


def synthetic_image(size, seed):
    """A smooth, natural-looking RGB image (blurred noise plus a few blobs)."""
    import cv2
    import numpy as np
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, size=(size // 32, size // 32, 3), dtype=np.uint8)
    image = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
    for _ in range(12):
        centre = tuple(int(v) for v in rng.integers(0, size, 2))
        colour = tuple(int(v) for v in rng.integers(0, 255, 3))
        cv2.circle(image, centre, int(rng.integers(size // 40, size // 8)), colour, -1)
    return image


def make_config(args):
    from mrcnn.config import Config

    class BenchmarkConfig(Config):
        NAME = "benchmark"
        GPU_COUNT = 1
        IMAGES_PER_GPU = 1
        BACKBONE = args.backbone
        NUM_CLASSES = args.num_classes
        IMAGE_MIN_DIM = args.size
        IMAGE_MAX_DIM = args.size
        POST_NMS_ROIS_INFERENCE = args.proposals
        DETECTION_MAX_INSTANCES = args.detections
        DETECTION_MIN_CONFIDENCE = args.min_confidence
        RPN_CONV_CHANNELS = args.rpn_channels

    return BenchmarkConfig()


def time_call(fn, runs, warmup):
    for _ in range(warmup):
        fn()
    walls = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
    return walls


def stage_profile(model, image, runs):
    """Best time of growing prefixes of the graph; stage time = difference of prefixes."""
    import keras
    import numpy as np
    import tensorflow as tf

    km = model.keras_model
    molded, metas, windows = model.mold_inputs([image])
    anchors = model._batched_anchors(molded.shape[1:3], 1)
    inputs = [tf.constant(molded), tf.constant(metas), tf.constant(np.ascontiguousarray(anchors))]
    prefixes = [
        ("backbone+fpn", [km.get_layer(n).output for n in ("fpn_p2", "fpn_p3", "fpn_p4",
                                                            "fpn_p5", "fpn_p6")]),
        ("rpn+proposals", [km.get_layer("ROI").output]),
        ("roialign(classifier)", [km.get_layer("roi_align_classifier").output]),
        ("classifier head", [km.get_layer("mrcnn_class").output,
                             km.get_layer("mrcnn_bbox").output]),
        ("detection", [km.get_layer("mrcnn_detection").output]),
        ("mask roialign+head", [km.get_layer("mrcnn_mask").output]),
    ]
    cumulative = []
    for name, outputs in prefixes:
        sub = keras.Model(km.inputs, outputs)
        fn = tf.function(lambda x, sub=sub: sub(x, training=False))
        walls = time_call(lambda: [t.numpy() for t in tf.nest.flatten(fn(inputs))], runs, 1)
        cumulative.append((name, min(walls)))
    stages, previous = {}, 0.0
    for name, value in cumulative:
        stages[name] = max(0.0, value - previous)
        previous = value
    # Mask pasting: unmold the network's own output.
    detections, masks = model._predict(molded, metas, anchors)
    walls = time_call(lambda: model.unmold_detections(detections[0], masks[0], image.shape,
                                                      molded[0].shape, windows[0]), runs, 1)
    stages["unmold+paste masks"] = statistics.median(walls)
    return stages


def main(argv=None):
    args = parse_args(argv)
    pin_to(args.pin)
    isa = onednn_isa()
    tf = configure_threads(args.threads)
    import numpy as np
    from mrcnn import native
    from mrcnn.model import folded_norm, row_bands, winograd
    from mrcnn.model.maskrcnn import MaskRCNN

    row_bands.ROW_BANDS = not args.no_row_bands
    winograd.WINOGRAD = not args.no_winograd
    folded_norm.FOLD_BATCH_NORM = args.fold_bn
    native.ENABLED = not args.no_native
    if args.winograd_tile:
        winograd.INFERENCE_OUTPUT_TILE = args.winograd_tile
    config = make_config(args)
    t0 = time.perf_counter()
    model = MaskRCNN(mode="inference", config=config, model_dir="/tmp/mrcnn_benchmark_logs")
    build_s = time.perf_counter() - t0
    image = synthetic_image(args.size, args.seed)
    print(f"model built in {build_s:.1f}s; {model.keras_model.count_params():,} parameters",
          file=sys.stderr)
    last = {}

    def detect_once():
        last.clear()  # keep one result alive, as an application would: each holds 100 masks
        last.update(model.detect([image])[0])

    walls = time_call(detect_once, args.runs, args.warmup)
    n_det = int(last["class_ids"].shape[0])
    rss_detect_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    stages = {} if args.no_profile else stage_profile(model, image, max(5, args.runs))
    result = {
        "name": "mrcnn_infer_%d" % args.size, "backbone": args.backbone,
        "num_classes": args.num_classes, "proposals": args.proposals,
        "detections_max": args.detections, "detections_produced": n_det,
        "min_confidence": args.min_confidence, "rpn_conv_channels": args.rpn_channels,
        "row_bands": row_bands.ROW_BANDS, "winograd": winograd.WINOGRAD,
        "fold_bn": folded_norm.FOLD_BATCH_NORM,
        "winograd_output_tile": winograd.INFERENCE_OUTPUT_TILE,
        "native_transforms": native.winograd_ops() is not None,
        "threads": args.threads, "runs": args.runs, "warmup": args.warmup,
        "isa": isa, "cpu": cpu_summary(),
        "median_s": statistics.median(walls), "min_s": min(walls), "max_s": max(walls),
        "walls_s": walls, "peak_rss_mib_detect": rss_detect_mib,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "build_s": build_s, "stages_s": stages,
        "tensorflow": tf.__version__, "python": platform.python_version(),
        "machine": platform.machine(), "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    print(f"detect {args.size}x{args.size} {args.backbone}, RPN {args.rpn_channels} "
          f"channels: median {result['median_s']:.3f}s "
          f"min {result['min_s']:.3f}s ({n_det} detections), peak RSS after detect "
          f"{rss_detect_mib:.0f} MiB; oneDNN ISA {isa}; {cpu_summary()}")
    for name, value in stages.items():
        print(f"  {name:24s} {value:.3f}s")
    line = json.dumps(result)
    if args.json_out:
        with open(args.json_out, "w") as fh:
            fh.write(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
