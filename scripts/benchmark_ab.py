#!/usr/bin/env python3
"""Detections of variants of the model side by side in one process: A B A B ...

Each variant sets module flags (``module.ATTRIBUTE=value``, read when its model is traced)
before its model is built and traced, and puts them back afterwards; then the variants'
``detect()`` calls alternate (the order reversed every other round), so that a host whose speed
drifts within minutes slows all of them alike. Prints each variant's median and the median of
its per-round ratio to the first variant. The work is ``scripts/benchmark.py``'s (1024 x 1024,
resnet50, 1000 proposals, 100 detections, random weights, seeded alike).

    .venv/bin/python scripts/benchmark_ab.py --variant xla mrcnn.native.ENABLED=False \\
        --variant native --rounds 8
    ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python scripts/benchmark_ab.py \\
        --variant default --variant min256 mrcnn.model.winograd.MIN_NATIVE_CHANNELS=256
"""
import argparse
import ast
import importlib
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_info import configure_threads, cpu_summary, onednn_isa  # noqa: E402


def parse_flag(text):
    """``"pkg.module.NAME=value"`` -> ``("pkg.module", "NAME", value)``, the value a Python
    literal (True, 64, 2.5, "x")."""
    target, sep, value = text.partition("=")
    module, _, name = target.rpartition(".")
    if not sep or not module or not name:
        raise argparse.ArgumentTypeError(f"expected module.NAME=value, got {text!r}")
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError) as error:
        raise argparse.ArgumentTypeError(f"{text!r}: the value must be a Python literal "
                                         f"({error})") from None
    return module, name, parsed


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", nargs="+", action="append", required=True,
                    metavar=("NAME", "MODULE.FLAG=VALUE"),
                    help="a variant: its name, then the flags it sets (none: as installed)")
    ap.add_argument("--rounds", type=int, default=8, help="timed detections of each variant")
    ap.add_argument("--warmup", type=int, default=2, help="untimed detections of each, first")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=1024)
    args = ap.parse_args(argv)
    variants = []
    for name, *flags in args.variant:
        try:
            variants.append((name, [parse_flag(flag) for flag in flags]))
        except argparse.ArgumentTypeError as error:
            ap.error(f"--variant {name}: {error}")
    if len({name for name, _ in variants}) != len(variants):
        ap.error("variant names must differ")
    return args, variants


def build_variant(flags, make_model, warmup):
    """A model built and traced with ``flags`` set, then the flags put back."""
    saved = []
    try:
        for module_name, name, value in flags:
            module = importlib.import_module(module_name)
            if not hasattr(module, name):
                raise SystemExit(f"{module_name} has no {name}")
            saved.append((module, name, getattr(module, name)))
            setattr(module, name, value)
        model, run = make_model()
        for _ in range(warmup):
            run()
        return model, run
    finally:
        for module, name, value in reversed(saved):
            setattr(module, name, value)


def main(argv=None):
    args, variants = parse_args(argv)
    isa = onednn_isa()
    configure_threads(args.threads)
    import keras

    from benchmark import make_config, parse_args as benchmark_args, synthetic_image
    from mrcnn.model.maskrcnn import MaskRCNN

    config = make_config(benchmark_args(["--size", str(args.size)]))
    image = synthetic_image(args.size, 0)

    def make_model():
        keras.utils.set_random_seed(0)
        model = MaskRCNN(mode="inference", config=config, model_dir="/tmp/mrcnn_benchmark_logs")
        return model, lambda: model.detect([image])

    runs = {name: build_variant(flags, make_model, args.warmup)[1] for name, flags in variants}
    times = {name: [] for name in runs}
    for round_index in range(args.rounds):
        order = list(runs) if round_index % 2 == 0 else list(reversed(runs))
        for name in order:
            start = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - start)
    base = variants[0][0]
    print(f"detect {args.size}x{args.size}, {args.rounds} rounds, {args.threads} threads; oneDNN "
          f"ISA {isa}; {cpu_summary()}")
    for name, walls in times.items():
        ratios = [a / b for a, b in zip(walls, times[base])]
        print(f"{name:16s} median {statistics.median(walls):.3f} s  min {min(walls):.3f} s  "
              f"ratio to {base} {statistics.median(ratios):.3f}  "
              f"[{', '.join(f'{w:.3f}' for w in walls)}]")


if __name__ == "__main__":
    main()
