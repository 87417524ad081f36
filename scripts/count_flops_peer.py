#!/usr/bin/env python3
"""The torchvision peer's arithmetic of one forward pass, by part, on the benchmarks' work: the
counterpart of ``scripts/count_flops.py`` (same parts, same counting), run in ``.venv-peer``.

Builds the model exactly as ``../shared/bench/torchvision_peer.py`` does (its ``build_model``,
``natural_image`` and ``shapes_batch``, imported from that file) and counts the multiply-
accumulates of every ``Conv2d``, ``ConvTranspose2d`` and ``Linear`` call with forward hooks.

    .venv-peer/bin/python scripts/count_flops_peer.py infer --size 1024
    .venv-peer/bin/python scripts/count_flops_peer.py train --size 128 --batch 8
"""
import argparse
import collections
import importlib.util
import json
import os
import sys

PEER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "bench",
                    "torchvision_peer.py")


def part_of(module_name):
    """The part of ``count_flops.PARTS`` a torchvision module belongs to."""
    if module_name.startswith("backbone.fpn"):
        return "fpn"
    if module_name.startswith("backbone"):
        return "backbone"
    if module_name.startswith("rpn"):
        return "rpn"
    if module_name.startswith(("roi_heads.mask_head", "roi_heads.mask_predictor")):
        return "mask head"
    return "box head"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["infer", "train"])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--peer", default=PEER, help="path of torchvision_peer.py")
    args = ap.parse_args(argv)

    spec = importlib.util.spec_from_file_location("torchvision_peer", args.peer)
    peer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peer)
    import torch

    # The peer's defaults (its argparse): 91 classes and 100 detections at score 0 for inference;
    # 4 classes, 3 instances, rpn batch 256, box batch 128 for training.
    peer_args = argparse.Namespace(seed=0, box_score_thresh=0.0, detections=100, rpn_batch=256,
                                   box_batch=128, trainable_layers=3, no_calibrate=False,
                                   instances=3)
    cfg = dict(image_hw=(args.size, args.size), min_size=args.size, max_size=args.size,
               backbone="builder", batch=args.batch)
    train = args.mode == "train"
    model, _ = peer.build_model(cfg, peer_args, 4 if train else 91, train=train)
    parts = collections.Counter()
    per_layer = collections.Counter()

    def hook(name):
        def record(module, inputs, output):
            x = inputs[0]
            if isinstance(module, torch.nn.Linear):
                macs = output.numel() // output.shape[-1] * module.in_features * module.out_features
            elif isinstance(module, torch.nn.ConvTranspose2d):
                n, c, h, w = x.shape
                kh, kw = module.kernel_size
                macs = n * h * w * kh * kw * c * module.out_channels
            else:
                n, c, h, w = output.shape
                kh, kw = module.kernel_size
                macs = n * h * w * kh * kw * module.in_channels // module.groups * c
            parts[part_of(name)] += macs
            per_layer[name] += macs
        return record

    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)):
            module.register_forward_hook(hook(name))
    if train:
        images, targets = peer.shapes_batch(args.batch, args.size, args.size, 3, 0)
        model.train()
        model(images, targets)
    else:
        image, _ = peer.natural_image(args.size, args.size, 0)
        model.eval()
        with torch.inference_mode():
            model([image])

    total = sum(parts.values())
    print(f"torchvision {args.mode} size {args.size}"
          + (f" batch {args.batch}" if train else "") + f": forward {2 * total / 1e9:.1f} GFLOP")
    for part, macs in parts.most_common():
        print(f"  {part:12s} {2 * macs / 1e9:8.1f} GFLOP ({100.0 * macs / total:4.1f} %)")
    print("largest layers:")
    for name, macs in per_layer.most_common(8):
        print(f"  {name:40s} {2 * macs / 1e9:8.1f} GFLOP")
    print(json.dumps({"framework": "torchvision", "mode": args.mode, "size": args.size,
                      "batch": args.batch if train else 1, "gflop_forward": 2 * total / 1e9,
                      "parts_gflop": {k: 2 * v / 1e9 for k, v in parts.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
