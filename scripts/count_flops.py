#!/usr/bin/env python3
"""Arithmetic of one forward pass, by part of the network: our Keras graph (this script) and the
torchvision peer (``scripts/count_flops_peer.py``, run in ``.venv-peer``), on the benchmarks' work.

Counts the multiply-accumulates of every convolution, transposed convolution and dense layer
from the shapes the layers produce on a real call (so the ROI counts are the ones the call had:
1000 proposals and the detections at inference, the sampled ROIs and positives in training)
and prints GFLOP = 2 x MACs per part. Elementwise ops, BatchNorm, RoIAlign and NMS are left out:
they are a few per cent of the arithmetic. A training step's backward pass costs about twice
its forward pass (input and filter gradients), so the forward figures compare training too.

    .venv/bin/python scripts/count_flops.py infer --size 1024
    .venv/bin/python scripts/count_flops.py train --size 128 --batch 8
    .venv-peer/bin/python scripts/count_flops_peer.py infer --size 1024

The last stdout line is one JSON object.
"""
import argparse
import collections
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

#: Parts of the network, by the first matching layer-name prefix (classic layer names).
PARTS = (("rpn", "rpn"), ("fpn_", "fpn"), ("mrcnn_mask", "mask head"),
         ("mrcnn_class", "box head"), ("mrcnn_bbox", "box head"), ("", "backbone"))


def part_of(layer_name):
    return next(part for prefix, part in PARTS if layer_name.startswith(prefix))


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["infer", "train"])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=2, help="training batch (train only)")
    ap.add_argument("--detections", type=int, default=100, help="inference only")
    ap.add_argument("--proposals", type=int, default=1000, help="inference only")
    ap.add_argument("--rpn-channels", type=int, default=512, help="RPN_CONV_CHANNELS")
    return ap.parse_args(argv)


def layer_macs(layer, inputs, output):
    """Multiply-accumulates of one call of ``layer`` given NumPy ``inputs`` (list) and
    ``output``; None for layers without a kernel."""
    import numpy as np
    kernel = getattr(layer, "kernel", None)
    if kernel is None:
        return None
    k = tuple(kernel.shape)
    if len(k) == 2:  # Dense over the last axis
        return int(np.prod(output.shape[:-1])) * k[0] * k[1]
    kh, kw, a, b = k
    if type(layer).__name__ == "Conv2DTranspose":  # kernel [kh, kw, out, in]
        return int(np.prod(inputs[0].shape[:-1])) * kh * kw * a * b
    if type(layer).__name__ == "ValidRoisConv2D":  # runs on the gathered rows only
        rows = inputs[0]
        return int(np.prod(rows.shape[:-1])) * kh * kw * a * b
    return int(np.prod(output.shape[:-1])) * kh * kw * a * b  # Conv2D, RoiConv2D, WindowConv2D


def rpn_macs(rpn_model, feature_maps):
    """The shared RPN sub-model applied to every pyramid level (one call per level)."""
    total = 0
    for fmap in feature_maps:
        n, h, w, _ = fmap.shape
        for layer in rpn_model.layers:
            kernel = getattr(layer, "kernel", None)
            if kernel is not None:
                kh, kw, a, b = tuple(kernel.shape)
                stride = layer.strides[0]
                total += n * -(-h // stride) * -(-w // stride) * kh * kw * a * b
    return total


def count(args):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tempfile

    import keras
    import numpy as np
    from mrcnn.model.maskrcnn import MaskRCNN

    if args.mode == "infer":
        from benchmark import make_config, synthetic_image
        ns = argparse.Namespace(size=args.size, backbone="resnet50", num_classes=91,
                                proposals=args.proposals, detections=args.detections,
                                min_confidence=0.0, seed=0, rpn_channels=args.rpn_channels)
        model = MaskRCNN(mode="inference", config=make_config(ns), model_dir=tempfile.mkdtemp())
    else:
        from benchmark_train import make_config, make_dataset
        from mrcnn.data.pipeline import make_training_dataset, pyramid_anchors_for_config
        config = make_config(args.size, args.batch, rpn_channels=args.rpn_channels)
        model = MaskRCNN(mode="training", config=config, model_dir=tempfile.mkdtemp())
    km = model.keras_model
    layers = [layer for layer in km.layers if getattr(layer, "kernel", None) is not None]
    fpn_levels = [f"fpn_p{i}" for i in (2, 3, 4, 5)]
    tensors = []
    for layer in layers:
        tensors += [keras.tree.flatten(layer.input), layer.output]
    fmaps = [km.get_layer(name).output for name in fpn_levels]
    p6 = km.get_layer("fpn_p6").output
    probe = keras.Model(km.inputs, keras.tree.flatten(tensors) + fmaps + [p6])
    if args.mode == "infer":
        image = synthetic_image(args.size, 0)
        molded, metas, _ = model.mold_inputs([image])
        anchors = np.broadcast_to(model.get_anchors(molded.shape[1:3]),
                                  (1,) + model.get_anchors(molded.shape[1:3]).shape)
        values = probe([molded, metas, anchors], training=False)
    else:
        anchors_px, anchors = pyramid_anchors_for_config(config)
        data = make_training_dataset(make_dataset(args.size), config, anchors, anchors_px, seed=0)
        batch = next(iter(data))
        values = probe(keras.utils.unpack_x_y_sample_weight(batch)[0], training=True)
    values = [np.asarray(v) for v in values]

    parts = collections.Counter()
    per_layer = []
    cursor = 0
    for layer in layers:
        n_in = len(keras.tree.flatten(layer.input))
        inputs, output = values[cursor:cursor + n_in], values[cursor + n_in]
        cursor += n_in + 1
        macs = layer_macs(layer, inputs, output)
        parts[part_of(layer.name)] += macs
        per_layer.append((layer.name, macs))
    rpn = km.get_layer("rpn_model")
    parts["rpn"] += rpn_macs(rpn, values[cursor:cursor + 5])
    return parts, per_layer


def report(parts, per_layer, args, framework):
    total = sum(parts.values())
    print(f"{framework} {args.mode} size {args.size}"
          + (f" batch {args.batch}" if args.mode == "train" else "")
          + f", RPN {args.rpn_channels} channels: forward {2 * total / 1e9:.1f} GFLOP")
    for part, macs in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"  {part:12s} {2 * macs / 1e9:8.1f} GFLOP ({100.0 * macs / total:4.1f} %)")
    print("largest layers:")
    for name, macs in sorted(per_layer, key=lambda kv: -kv[1])[:8]:
        print(f"  {name:40s} {2 * macs / 1e9:8.1f} GFLOP")
    print(json.dumps({"framework": framework, "mode": args.mode, "size": args.size,
                      "batch": args.batch if args.mode == "train" else 1,
                      "rpn_conv_channels": args.rpn_channels,
                      "gflop_forward": 2 * total / 1e9,
                      "parts_gflop": {k: 2 * v / 1e9 for k, v in parts.items()}}))


def main(argv=None):
    args = parse_args(argv)
    parts, per_layer = count(args)
    report(parts, per_layer, args, "mrcnn (Keras)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
