#!/usr/bin/env python3
"""How cost grows with work: inference vs image size and detections, a training step vs batch
and image size. Writes the data as JSON and plots it as PNGs (docs/scaling_*.png).

Each point is one child process of ``scripts/benchmark.py`` (detect(), random weights, confidence
threshold 0 so that the mask head always runs on DETECTION_MAX_INSTANCES boxes) or
``scripts/benchmark_train.py`` (the peer's training work), so that every figure has its own
process, warm-up and peak RSS.

    .venv/bin/python scripts/benchmark_scaling.py --threads 2 --out docs/scaling.json
    .venv/bin/python scripts/benchmark_scaling.py --plot-only --out docs/scaling.json
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from cpu_info import cpu_summary, onednn_isa  # noqa: E402

INFER_SIZES = (256, 512, 768, 1024, 1344)
INFER_DETECTIONS = (1, 10, 100, 300)
TRAIN_BATCHES = (1, 2, 4, 8)      # at 128 x 128
TRAIN_SIZES = (128, 256, 512)     # at batch 2


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pin", default="")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--out", default="docs/scaling.json")
    ap.add_argument("--plot-only", action="store_true", help="re-plot an existing --out file")
    return ap.parse_args(argv)


def _child(script, extra, args):
    with tempfile.NamedTemporaryFile(suffix=".json") as fh:
        cmd = [sys.executable, os.path.join(HERE, script), "--threads", str(args.threads),
               "--runs", str(args.runs), "--warmup", str(args.warmup), "--json-out", fh.name]
        if args.pin:
            cmd += ["--pin", args.pin]
        out = subprocess.run(cmd + extra, capture_output=True, text=True)
        if out.returncode:
            sys.stderr.write(out.stderr[-3000:])
            raise SystemExit(f"{' '.join(cmd + extra)} failed (exit {out.returncode})")
        with open(fh.name) as result:
            return json.load(result)


def measure(args):
    data = {"isa": onednn_isa(), "cpu": cpu_summary(), "threads": args.threads,
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "inference_size": [],
            "inference_detections": [], "train_batch": [], "train_size": []}
    for size in INFER_SIZES:
        r = _child("benchmark.py", ["--size", str(size), "--no-profile"], args)
        data["inference_size"].append({"size": size, "s": r["median_s"],
                                       "rss_mib": r["peak_rss_mib"]})
        print(f"infer {size}: {r['median_s']:.3f} s", flush=True)
    for det in INFER_DETECTIONS:
        r = _child("benchmark.py", ["--detections", str(det), "--no-profile"], args)
        data["inference_detections"].append({"detections": det, "s": r["median_s"],
                                             "rss_mib": r["peak_rss_mib"]})
        print(f"infer 1024, {det} detections: {r['median_s']:.3f} s", flush=True)
    for batch in TRAIN_BATCHES:
        r = _child("benchmark_train.py", ["--configs", f"train_128_b{batch}",
                                          "--pipeline-batches", "2"], args)["results"][0]
        data["train_batch"].append({"batch": batch, "s": r["median_s"],
                                    "rss_mib": r["peak_rss_mib"]})
        print(f"train 128 b{batch}: {r['median_s']:.3f} s", flush=True)
    for size in TRAIN_SIZES:
        r = _child("benchmark_train.py", ["--configs", f"train_{size}_b2",
                                          "--pipeline-batches", "2"], args)["results"][0]
        data["train_size"].append({"size": size, "s": r["median_s"],
                                   "rss_mib": r["peak_rss_mib"]})
        print(f"train {size} b2: {r['median_s']:.3f} s", flush=True)
    return data


def plot(data, out_json):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stem = os.path.splitext(out_json)[0]
    note = f"{data['cpu'].split(';')[0]}, oneDNN {data['isa']}, {data['threads']} threads"
    panels = [
        ("inference", [("inference_size", "size", "image side (px), 100 detections"),
                       ("inference_detections", "detections",
                        "detections at 1024 x 1024")]),
        ("training", [("train_batch", "batch", "batch size at 128 x 128"),
                      ("train_size", "size", "image side (px) at batch 2")]),
    ]
    paths = []
    for name, pairs in panels:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, (key, xkey, xlabel) in zip(axes, pairs):
            xs = [p[xkey] for p in data[key]]
            ys = [p["s"] for p in data[key]]
            ax.plot(xs, ys, "o-")
            for x, y in zip(xs, ys):
                ax.annotate(f"{y:.2f}", (x, y), textcoords="offset points", xytext=(0, 6),
                            ha="center", fontsize=8)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("seconds per image" if name == "inference" else "seconds per step")
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
        fig.suptitle(f"{name}: time against work ({note}; {data['date'][:10]})", fontsize=10)
        fig.tight_layout()
        path = f"{stem}_{name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def main(argv=None):
    args = parse_args(argv)
    if args.plot_only:
        with open(args.out) as fh:
            data = json.load(fh)
    else:
        data = measure(args)
        with open(args.out, "w") as fh:
            json.dump(data, fh, indent=1)
    for path in plot(data, args.out):
        print("wrote", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
