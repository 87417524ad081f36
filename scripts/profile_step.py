#!/usr/bin/env python3
"""Where a training step or a detect() call spends its time: TensorFlow op profile, top ops.

Runs a few warm-up steps, then profiles the next ones with ``tf.profiler.experimental`` and reads
the trace it wrote (the XSpace protobuf, no TensorBoard plugin needed). Prints the top ops by
total self time, summed over every host thread, and the CPU ISA oneDNN used.

    .venv/bin/python scripts/profile_step.py train --size 128 --batch 2 --threads 1
    .venv/bin/python scripts/profile_step.py infer --size 1024 --threads 2
    ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python scripts/profile_step.py train ...
    .venv/bin/python scripts/profile_step.py train --size 128 --batch 8 --threads 2 --memory

The work is that of ``scripts/benchmark_train.py`` (train) and ``scripts/benchmark.py`` (infer).
The last stdout line is one JSON object (``--json-out`` also writes it).
"""
import argparse
import collections
import glob
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["train", "infer"])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=2, help="training batch (train only)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pin", default="", help="CPU list to pin this process to, e.g. 0 or 0,1")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=1, help="profiled steps (or detect calls)")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--json-out", default="")
    ap.add_argument("--summarize", default="", help="only summarize this *.xplane.pb trace")
    ap.add_argument("--no-winograd", action="store_true",
                    help="direct 3x3 convolutions only (mrcnn.model.winograd.WINOGRAD = False)")
    ap.add_argument("--fold-bn", action="store_true",
                    help="BatchNorm folded into the convolution before it where it uses its "
                         "moving statistics (mrcnn.model.folded_norm.FOLD_BATCH_NORM = True)")
    ap.add_argument("--memory", action="store_true",
                    help="also list the tensors live at the step's memory peak (runs on "
                         "TensorFlow's BFC allocator without oneDNN: see memory_at_peak)")
    return ap.parse_args(argv)


# Ops whose events contain the events of the ops they run (counted there instead).
_CONTAINERS = {"While", "StatelessWhile", "If", "StatelessIf", "PartitionedCall",
               "StatefulPartitionedCall", "MapDefun"}


def _is_op_event(name):
    """Whether a host event is one TF op execution, ``scope/op_name:OpType``."""
    if "::" in name or ":" not in name or " " in name:
        return False
    op_type = name.rsplit(":", 1)[1]
    return bool(op_type) and op_type not in _CONTAINERS and op_type.lstrip("_")[:1].isupper()


def summarize_xspace(path, top):
    """Sum the durations of TF op events on the host plane of one ``*.xplane.pb`` trace.

    Returns ``[(op name, op type, total seconds, count)]`` sorted by time, and the total. Events
    are TensorFlow op executions (TraceMe events named ``name:type``); framework bookkeeping
    events (no ``:``) are left out, so the sum is the time spent inside ops.
    """
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    with open(path, "rb") as fh:
        space.ParseFromString(fh.read())
    totals = collections.defaultdict(float)
    counts = collections.Counter()
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        for line in plane.lines:
            for event in line.events:
                meta = plane.event_metadata[event.metadata_id]
                name = meta.name
                if not _is_op_event(name):
                    continue
                totals[name] += event.duration_ps * 1e-12
                counts[name] += 1
    rows = sorted(((n.rsplit(":", 1)[0], n.rsplit(":", 1)[1], t, counts[n])
                   for n, t in totals.items()), key=lambda r: -r[2])
    by_type = collections.defaultdict(float)
    for _, op_type, t, _ in rows:
        by_type[op_type] += t
    return rows[:top], sorted(by_type.items(), key=lambda kv: -kv[1])[:top], sum(totals.values())


def memory_at_peak(path, top):
    """The tensors live when the allocator's in-use bytes peaked, from one trace.

    TensorFlow records ``MemoryAllocation`` / ``MemoryDeallocation`` events (address, bytes,
    the op that allocated) for its BFC allocator only: ``--memory`` sets
    ``TF_CPU_ALLOCATOR_USE_BFC=true`` and ``TF_ENABLE_ONEDNN_OPTS=0`` (oneDNN's own allocator
    records none), so the op times of such a run are Eigen's, not oneDNN's.

    Returns ``(peak MiB in use, op at the peak, [(op, MiB live at the peak)] largest first)``;
    the live list holds the allocations made during the trace (weights, optimizer slots and
    other tensors allocated before it are in the peak, not in the list).
    """
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    with open(path, "rb") as fh:
        space.ParseFromString(fh.read())
    events = []
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        stat_names = {k: v.name for k, v in plane.stat_metadata.items()}
        for line in plane.lines:
            for event in line.events:
                kind = plane.event_metadata[event.metadata_id].name
                if kind not in ("MemoryAllocation", "MemoryDeallocation"):
                    continue
                stats = {}
                for stat in event.stats:
                    value = stat.str_value or stat.int64_value or stat.uint64_value
                    if stat.ref_value:
                        value = plane.stat_metadata[stat.ref_value].name
                    stats[stat_names[stat.metadata_id]] = value
                events.append((line.timestamp_ns * 1000 + event.offset_ps, kind, stats))
    if not events:
        raise SystemExit(f"{path}: no memory events (was TF_CPU_ALLOCATOR_USE_BFC=true set "
                         "before TensorFlow was imported?)")
    events.sort(key=lambda e: e[0])
    peak = max(range(len(events)), key=lambda i: int(events[i][2].get("bytes_allocated", 0)))
    live = {}
    for _, kind, stats in events[:peak + 1]:
        if kind == "MemoryAllocation":
            live[stats.get("addr")] = stats
        else:
            live.pop(stats.get("addr"), None)
    by_op = collections.Counter()
    for stats in live.values():
        by_op[str(stats.get("tf_op", "?"))] += int(stats.get("requested_bytes", 0)) / 2**20
    return (int(events[peak][2]["bytes_allocated"]) / 2**20, events[peak][2].get("tf_op"),
            by_op.most_common(top))


def main(argv=None):
    args = parse_args(argv)
    if args.memory:
        os.environ["TF_CPU_ALLOCATOR_USE_BFC"] = "true"
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
    if args.summarize:
        top_ops, top_types, total = summarize_xspace(args.summarize, args.top)
        print(f"ops total {total:.3f} s")
        for name, op_type, t, n in top_ops:
            print(f"{name[:90]:90s} {op_type[:26]:26s} {t:8.3f} {n:5d}")
        for op_type, t in top_types:
            print(f"  {op_type:40s} {t:8.3f}")
        return 0
    from cpu_info import cpu_summary, onednn_isa, pin_to
    pin_to(args.pin)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    logdir = tempfile.mkdtemp(prefix="mrcnn_profile_")
    from mrcnn.model import folded_norm, winograd
    winograd.WINOGRAD = not args.no_winograd
    folded_norm.FOLD_BATCH_NORM = args.fold_bn

    if args.mode == "train":
        import keras
        from benchmark_train import make_config, make_dataset
        from mrcnn.data.pipeline import make_training_dataset, pyramid_anchors_for_config
        from mrcnn.model.maskrcnn import MaskRCNN
        from mrcnn.model.optimizer import classic_sgd
        config = make_config(args.size, args.batch)
        anchors_px, anchors = pyramid_anchors_for_config(config)
        data = make_training_dataset(make_dataset(args.size), config, anchors, anchors_px, seed=0)
        model = MaskRCNN(mode="training", config=config, model_dir=tempfile.mkdtemp())
        model.set_trainable(".*", verbose=0)
        km = model.keras_model
        # As MaskRCNN.train: the training step clips to GRADIENT_CLIP_NORM, no clipnorm.
        km.compile(optimizer=classic_sgd(config.LEARNING_RATE, 0.9))
        profiled = {}

        class ProfileWindow(keras.callbacks.Callback):
            """Profiles batches warmup .. warmup + steps - 1 of the one epoch fit() runs."""

            def on_train_batch_begin(self, batch, logs=None):
                if batch == args.warmup:
                    profiled["t0"] = time.perf_counter()
                    tf.profiler.experimental.start(logdir)

            def on_train_batch_end(self, batch, logs=None):
                if batch == args.warmup + args.steps - 1:
                    tf.profiler.experimental.stop()
                    profiled["wall"] = time.perf_counter() - profiled["t0"]

        def work_all():
            km.fit(data, steps_per_epoch=args.warmup + args.steps, epochs=1, verbose=0,
                   callbacks=[ProfileWindow()])
            return profiled["wall"]
    else:
        import numpy as np
        from benchmark import make_config as make_infer_config, synthetic_image
        from mrcnn.model.maskrcnn import MaskRCNN
        from mrcnn.model.optimizer import classic_sgd
        ns = argparse.Namespace(size=args.size, backbone="resnet50", num_classes=91,
                                proposals=1000, detections=100, min_confidence=0.0,
                                rpn_channels=512, seed=0)
        model = MaskRCNN(mode="inference", config=make_infer_config(ns),
                         model_dir=tempfile.mkdtemp())
        image = synthetic_image(args.size, 0)

        def work_all():
            for _ in range(args.warmup):
                model.detect([image])
            t0 = time.perf_counter()
            tf.profiler.experimental.start(logdir)
            for _ in range(args.steps):
                model.detect([image])
            tf.profiler.experimental.stop()
            return time.perf_counter() - t0

    wall = work_all() / args.steps
    traces = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
    top_ops, top_types, op_total = summarize_xspace(traces[0], args.top)
    print(f"trace: {traces[0]}")

    isa = onednn_isa()
    print(f"{args.mode} size {args.size} batch {args.batch} threads {args.threads}: "
          f"{wall:.3f} s per step (profiled), ops total {op_total / args.steps:.3f} s; "
          f"oneDNN ISA {isa}; {cpu_summary()}")
    print(f"{'op':60s} {'type':28s} {'s/step':>8s} {'n':>5s}")
    for name, op_type, t, n in top_ops:
        print(f"{name[:60]:60s} {op_type[:28]:28s} {t / args.steps:8.3f} {n // args.steps:5d}")
    print("by op type:")
    for op_type, t in top_types:
        print(f"  {op_type:40s} {t / args.steps:8.3f}")
    memory = None
    if args.memory:
        peak_mib, peak_op, live = memory_at_peak(traces[0], args.top)
        print(f"allocator peak {peak_mib:.0f} MiB in use, at {peak_op}; live then (allocated "
              "during the trace), largest first:")
        for op, mib in live:
            print(f"  {mib:8.1f} MiB  {op[:100]}")
        memory = {"peak_mib": peak_mib, "peak_op": peak_op, "live_mib": live}
    result = {"mode": args.mode, "size": args.size, "batch": args.batch,
              "memory": memory,
              "threads": args.threads, "wall_s": wall, "ops_s": op_total / args.steps,
              "isa": isa, "cpu": cpu_summary(),
              "top_ops": [[n, ty, t / args.steps, c // args.steps] for n, ty, t, c in top_ops],
              "top_types": [[ty, t / args.steps] for ty, t in top_types],
              "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    line = json.dumps(result)
    if args.json_out:
        with open(args.json_out, "w") as fh:
            fh.write(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
