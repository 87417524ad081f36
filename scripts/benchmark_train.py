#!/usr/bin/env python3
"""Training-step benchmark on the peer's work, plus input-pipeline throughput.

Same work as ``../shared/bench/torchvision_peer.py --configs train_128_b8,train_512_b2``:
resnet50 + FPN from random weights, all layers trained, trainable BatchNorm, 3 instances per
image, 4 classes (with background), RPN_TRAIN_ANCHORS_PER_IMAGE 256, TRAIN_ROIS_PER_IMAGE 128,
ROI_POSITIVE_RATIO 0.25, SGD momentum 0.9, weight decay 1e-4, gradient clipping at 5.

Each configuration runs in its own child process so that its peak RSS is its own. The last
stdout line is one JSON object.

    .venv/bin/python scripts/benchmark_train.py --threads 2 --runs 5
    .venv/bin/python scripts/benchmark_train.py --threads 1 --pin 0 --configs train_128_b8
    ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python scripts/benchmark_train.py ...   # the AVX2 path

Every result records the CPU and the ISA oneDNN dispatched to (scripts/cpu_info.py).
"""
import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_info import cpu_summary, onednn_isa, pin_to  # noqa: E402

CONFIGS = {"train_128_b8": (128, 8), "train_512_b2": (512, 2)}


def parse_config_name(name):
    """``train_<size>_b<batch>`` -> (size, batch); the two peer configs and any other."""
    parts = name.split("_")
    if (len(parts) != 3 or parts[0] != "train" or not parts[1].isdigit()
            or not parts[2].startswith("b") or not parts[2][1:].isdigit()):
        raise SystemExit(f"unknown config {name!r}: use train_<size>_b<batch>, "
                         f"e.g. {', '.join(CONFIGS)}")
    size, batch = int(parts[1]), int(parts[2][1:])
    if size % 64 or batch < 1:
        raise SystemExit(f"config {name!r}: size must be a multiple of 64 and batch >= 1")
    return size, batch


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default=",".join(CONFIGS),
                    help="comma-separated train_<size>_b<batch>; the peer's: " + ", ".join(CONFIGS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pin", default="", help="run on these CPUs only, e.g. 0 or 0,1")
    ap.add_argument("--runs", type=int, default=5, help="timed steps")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--pipeline-batches", type=int, default=20,
                    help="batches drawn from the input pipeline alone (0: skip)")
    ap.add_argument("--no-include-gt", action="store_true",
                    help="TRAIN_ROIS_INCLUDE_GT off (the classic default; the peer always adds "
                         "the GT boxes to its proposals)")
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    ap.add_argument("--rpn-channels", type=int, default=512,
                    help="RPN_CONV_CHANNELS (512 classic; 256 is torchvision's RPN)")
    ap.add_argument("--no-gemm-filter-grad", action="store_true",
                    help="convolutions' own filter gradients (mrcnn.model.feature_conv off)")
    ap.add_argument("--no-winograd", action="store_true",
                    help="direct 3x3 convolutions only (mrcnn.model.winograd.WINOGRAD = False)")
    ap.add_argument("--dense-rpn-gradient", action="store_true",
                    help="the RPN head differentiated as usual (mrcnn.model.rpn_gradient."
                         "SPARSE_RPN_GRADIENT = False)")
    ap.add_argument("--no-matrix-winograd", action="store_true",
                    help="no XLA-free Winograd convolutions in training (mrcnn.model.winograd."
                         "MATRIX_TRAINING = False)")
    ap.add_argument("--no-native", action="store_true",
                    help="Winograd's transforms without mrcnn's native kernels (mrcnn.native."
                         "ENABLED = False; for comparisons)")
    ap.add_argument("--compiled-training-winograd", action="store_true",
                    help="the XLA-compiled Winograd form with its gradient in training (mrcnn."
                         "model.winograd.COMPILED_TRAINING = True; off by default: XLA's memory)")
    ap.add_argument("--keep-norm-inputs", action="store_true",
                    help="every BatchNorm keeps its input for its gradient (mrcnn.model."
                         "recomputed_norm.RECOMPUTE_NORM_INPUT = False)")
    ap.add_argument("--seed", type=int, default=0,
                    help="seed of the model's initial weights (the positives per batch, i.e. "
                         "the mask head's work, follow the weights)")
    ap.add_argument("--fold-bn", action="store_true",
                    help="BatchNorm folded into the convolution before it where it uses its "
                         "moving statistics (mrcnn.model.folded_norm.FOLD_BATCH_NORM = True)")
    ap.add_argument("--frozen-bn", action="store_true",
                    help="the peer's train_*_frozenbn: TRAIN_BN = False, TRAIN_BN_AFFINE = False "
                         "(FrozenBatchNorm2d) and layers '3+' (conv1 and stage 2 frozen, "
                         "trainable_backbone_layers=3)")
    ap.add_argument("--json-out", default="")
    return ap.parse_args(argv)


def make_config(size, batch, include_gt=True, rpn_channels=512, frozen_bn=False):
    from mrcnn.config import Config

    class TrainBenchmarkConfig(Config):
        NAME = "trainbench"
        GPU_COUNT = 1
        IMAGES_PER_GPU = batch
        BACKBONE = "resnet50"
        NUM_CLASSES = 4
        IMAGE_MIN_DIM = size
        IMAGE_MAX_DIM = size
        TRAIN_BN = None
        RPN_TRAIN_ANCHORS_PER_IMAGE = 256
        TRAIN_ROIS_PER_IMAGE = 128
        ROI_POSITIVE_RATIO = 0.25
        MAX_GT_INSTANCES = 10
        LEARNING_RATE = 0.01
        WEIGHT_DECAY = 1e-4
        GRADIENT_CLIP_NORM = 5.0
        RPN_CONV_CHANNELS = rpn_channels

    # The peer (torchvision) adds the GT boxes to the proposals the heads sample from; so does
    # TRAIN_ROIS_INCLUDE_GT. Without it, random weights propose almost nothing near the GT and the
    # heads get few positives, i.e. far less mask-head work than the peer's (--no-include-gt).
    TrainBenchmarkConfig.TRAIN_ROIS_INCLUDE_GT = bool(include_gt)
    if frozen_bn:
        TrainBenchmarkConfig.TRAIN_BN = False
        TrainBenchmarkConfig.TRAIN_BN_AFFINE = False
    # Small objects at 128 px: the shapes anchors; the default anchors at 512 px.
    if size <= 256:
        TrainBenchmarkConfig.RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    return TrainBenchmarkConfig()


def make_dataset(size, count=16, seed=0):
    """``count`` images with exactly 3 random rectangles/ellipses each, 3 classes."""
    import cv2
    import numpy as np
    from mrcnn.data.dataset import Dataset

    class ThreeShapes(Dataset):
        def load_image(self, image_id):
            return self.image_info[image_id]["image"]

        def load_mask(self, image_id):
            info = self.image_info[image_id]
            return info["masks"], info["class_ids"]

    rng = np.random.default_rng(seed)
    ds = ThreeShapes()
    for c in (1, 2, 3):
        ds.add_class("bench", c, f"class{c}")
    for i in range(count):
        image = np.full((size, size, 3), rng.integers(0, 255, 3), dtype=np.uint8)
        masks = np.zeros((size, size, 3), dtype=bool)
        class_ids = rng.integers(1, 4, 3).astype(np.int32)
        for k in range(3):
            layer = np.zeros((size, size), np.uint8)
            cy, cx = (int(v) for v in rng.integers(size // 6, size - size // 6, 2))
            ry, rx = (int(v) for v in rng.integers(size // 16, size // 6, 2))
            if class_ids[k] == 1:
                cv2.rectangle(layer, (cx - rx, cy - ry), (cx + rx, cy + ry), 1, -1)
            else:
                cv2.ellipse(layer, (cx, cy), (rx, ry), 0, 0, 360, 1, -1)
            masks[:, :, k] = layer > 0
            masks[:, :, :k] &= ~masks[:, :, k:k + 1]
            image[masks[:, :, k]] = rng.integers(0, 255, 3)
        keep = masks.any(axis=(0, 1))
        ds.add_image("bench", i, None, image=image, masks=masks[:, :, keep],
                     class_ids=class_ids[keep])
    ds.prepare()
    return ds


def _rss_mib():
    """(current, peak) resident set size of this process in MiB."""
    current = 0.0
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) / 1024.0
    return current, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_child(name, args):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    import keras
    import numpy as np
    from mrcnn.data.pipeline import (make_training_dataset, measure_pipeline_throughput,
                                     pyramid_anchors_for_config)
    from mrcnn import native
    from mrcnn.model import (feature_conv, folded_norm, recomputed_norm, rpn_gradient,
                             winograd)
    from mrcnn.model.freed_memory import ReturnFreedMemory
    from mrcnn.model.maskrcnn import MaskRCNN
    from mrcnn.model.optimizer import classic_sgd
    from mrcnn.model.training import LAYER_PRESETS

    feature_conv.GEMM_FILTER_GRADIENT = not args.no_gemm_filter_grad
    winograd.WINOGRAD = not args.no_winograd
    winograd.COMPILED_TRAINING = args.compiled_training_winograd
    winograd.MATRIX_TRAINING = not args.no_matrix_winograd
    native.ENABLED = not args.no_native
    folded_norm.FOLD_BATCH_NORM = args.fold_bn
    rpn_gradient.SPARSE_RPN_GRADIENT = not args.dense_rpn_gradient
    recomputed_norm.RECOMPUTE_NORM_INPUT = not args.keep_norm_inputs
    keras.utils.set_random_seed(args.seed)
    # Where the memory goes: (current, peak) RSS after each stage.
    memory = {"tensorflow imported": _rss_mib()}
    size, batch = parse_config_name(name)
    config = make_config(size, batch, include_gt=not args.no_include_gt,
                         rpn_channels=args.rpn_channels, frozen_bn=args.frozen_bn)
    dataset = make_dataset(size)
    anchors_px, anchors = pyramid_anchors_for_config(config)
    tf_data = make_training_dataset(dataset, config, anchors, anchors_px, seed=0)
    pipeline_bps = (measure_pipeline_throughput(tf_data, args.pipeline_batches)
                    if args.pipeline_batches else float("nan"))
    memory["dataset + pipeline measured"] = _rss_mib()

    model = MaskRCNN(mode="training", config=config, model_dir="/tmp/mrcnn_train_benchmark")
    memory["training model built"] = _rss_mib()
    model.set_trainable(LAYER_PRESETS["3+"] if args.frozen_bn else ".*", verbose=0)
    km = model.keras_model
    # As MaskRCNN.train compiles: the training step clips each gradient to
    # GRADIENT_CLIP_NORM, so the optimizer takes no clipnorm (it would clip a second time).
    km.compile(optimizer=classic_sgd(config.LEARNING_RATE, 0.9), jit_compile=False)
    walls, cpus, losses, peak_after_step = [], [], [], []

    class StepTimer(keras.callbacks.Callback):
        def on_train_batch_begin(self, step, logs=None):
            self.t0, self.cpu0 = time.perf_counter(), time.process_time()

        def on_train_batch_end(self, step, logs=None):
            walls.append(time.perf_counter() - self.t0)
            cpus.append(time.process_time() - self.cpu0)
            losses.append(float(logs["loss"]))
            peak_after_step.append(_rss_mib()[1])
            if step == 0:
                memory["first step done"] = _rss_mib()

    # ReturnFreedMemory: as MaskRCNN.train adds it (mrcnn/model/freed_memory.py).
    km.fit(tf_data, steps_per_epoch=args.warmup + args.runs, epochs=1, verbose=0,
           callbacks=[StepTimer(), ReturnFreedMemory()])
    timed = walls[args.warmup:]
    step_s = statistics.median(timed)
    # Process CPU seconds per wall second of the timed steps (about the thread count when
    # both cores are busy; lower means serial stretches or waiting).
    cpu_over_wall = sum(cpus[args.warmup:]) / sum(timed)
    memory["all steps done"] = _rss_mib()
    # The training's peak, read before the probe below builds and runs a model of its own.
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    # Positive ROIs per batch (the mask head's rows), comparable to the peer's "pos" column.
    probe = keras.Model(km.inputs, km.get_layer("proposal_targets").output[1])
    positives = [int(np.sum(probe(keras.utils.unpack_x_y_sample_weight(batch)[0],
                                  training=True).numpy() > 0))
                 for batch in tf_data.take(3)]
    return {
        "name": name, "image": size, "batch": batch, "median_s": step_s, "min_s": min(timed),
        "max_s": max(timed), "walls_s": timed, "cpu_over_wall": cpu_over_wall,
        "losses": losses,
        "positives_per_batch": positives, "rois_include_gt": bool(config.TRAIN_ROIS_INCLUDE_GT),
        "pipeline_batches_per_s": pipeline_bps,
        "pipeline_vs_model": pipeline_bps * step_s,
        "peak_rss_mib": peak_rss_mib, "peak_rss_after_each_step_mib": peak_after_step,
        "params": km.count_params(), "rss_stages_mib": memory,
        "rpn_conv_channels": config.RPN_CONV_CHANNELS, "frozen_bn": bool(args.frozen_bn),
        "gemm_filter_gradient": feature_conv.GEMM_FILTER_GRADIENT,
        "winograd": winograd.WINOGRAD, "fold_bn": folded_norm.FOLD_BATCH_NORM,
        "compiled_training_winograd": winograd.COMPILED_TRAINING,
        "matrix_training_winograd": winograd.MATRIX_TRAINING,
        "native_transforms": native.winograd_ops() is not None,
        "sparse_rpn_gradient": rpn_gradient.SPARSE_RPN_GRADIENT,
        "recompute_norm_input": recomputed_norm.RECOMPUTE_NORM_INPUT, "seed": args.seed,
        "env": {k: os.environ[k] for k in os.environ
                if k.startswith(("MALLOC_", "ONEDNN_", "TF_", "OMP_"))},
    }


def main(argv=None):
    args = parse_args(argv)
    pin_to(args.pin)  # children inherit the affinity
    if args.child:
        print("RESULT " + json.dumps(run_child(args.child, args)))
        return 0
    isa = onednn_isa()
    print(f"oneDNN ISA {isa}; {cpu_summary()}", flush=True)
    results = []
    for name in [c for c in args.configs.split(",") if c]:
        parse_config_name(name)
        cmd = [sys.executable, __file__, "--child", name, "--threads", str(args.threads),
               "--runs", str(args.runs), "--warmup", str(args.warmup),
               "--pipeline-batches", str(args.pipeline_batches),
               "--rpn-channels", str(args.rpn_channels)]
        cmd += ["--no-include-gt"] if args.no_include_gt else []
        cmd += ["--frozen-bn"] if args.frozen_bn else []
        cmd += ["--no-gemm-filter-grad"] if args.no_gemm_filter_grad else []
        cmd += ["--no-winograd"] if args.no_winograd else []
        cmd += ["--fold-bn"] if args.fold_bn else []
        cmd += ["--dense-rpn-gradient"] if args.dense_rpn_gradient else []
        cmd += ["--keep-norm-inputs"] if args.keep_norm_inputs else []
        cmd += ["--compiled-training-winograd"] if args.compiled_training_winograd else []
        cmd += ["--no-matrix-winograd"] if args.no_matrix_winograd else []
        cmd += ["--no-native"] if args.no_native else []
        cmd += ["--seed", str(args.seed)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
        if out.returncode or not lines:
            sys.stderr.write(out.stderr[-4000:])
            raise SystemExit(f"{name} failed (exit {out.returncode})")
        result = json.loads(lines[-1][len("RESULT "):])
        results.append(result)
        print(f"{name}: median {result['median_s']:.3f}s/step (min {result['min_s']:.3f}), "
              f"cpu/wall {result['cpu_over_wall']:.2f}, peak RSS {result['peak_rss_mib']:.0f} MiB, positives per batch "
              f"{result['positives_per_batch']}, pipeline "
              f"{result['pipeline_batches_per_s']:.1f} batches/s = "
              f"{result['pipeline_vs_model']:.1f}x the model's consumption", flush=True)
        for stage, (current, peak) in result["rss_stages_mib"].items():
            print(f"  RSS {stage:28s} {current:7.0f} MiB (peak so far {peak:.0f})")
    summary = {"results": results, "threads": args.threads, "tensorflow": None,
               "isa": isa, "cpu": cpu_summary(),
               "python": platform.python_version(), "machine": platform.machine(),
               "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    line = json.dumps(summary)
    if args.json_out:
        with open(args.json_out, "w") as fh:
            fh.write(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
