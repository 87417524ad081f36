#!/usr/bin/env python3
"""Convert an exported SavedModel's serving_default to ONNX (tf2onnx) and compare onnxruntime's
detections with the SavedModel's on random images of two sizes.

    .venv/bin/pip install tf2onnx onnxruntime      # the 'deploy' extra; tensorflow unchanged
    .venv/bin/python -m mrcnn.export --config MODULE:CLASS --weights W.h5 --output export/m
    .venv/bin/python scripts/onnx_check.py --saved-model export/m --output m.onnx

Prints the largest difference per output and exits 1 if detections differ (classes, count or
masks not equal, boxes more than 2 px or scores more than 1e-3 apart).
"""
import argparse
import os
import subprocess
import sys
import time


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--saved-model", required=True)
    ap.add_argument("--output", default="model.onnx")
    ap.add_argument("--opset", type=int, default=18)
    ap.add_argument("--sizes", default="50x40,30x64", help="HxW test image sizes")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--saved-model", args.saved_model,
                    "--signature_def", "serving_default", "--tag", "serve",
                    "--opset", str(args.opset), "--output", args.output], check=True)
    print(f"converted in {time.monotonic() - started:.0f} s")
    import numpy as np
    import onnxruntime as ort
    import tensorflow as tf

    session = ort.InferenceSession(args.output)
    served = tf.saved_model.load(args.saved_model).signatures["serving_default"]
    names = [o.name for o in session.get_outputs()]
    ok = True
    for size in args.sizes.split(","):
        h, w = (int(v) for v in size.split("x"))
        image = np.random.default_rng(h * w).integers(0, 256, (1, h, w, 3), dtype=np.uint8)
        ref = {k: v.numpy() for k, v in served(images=tf.constant(image)).items()}
        got = dict(zip(names, session.run(None, {session.get_inputs()[0].name: image})))
        for key, value in ref.items():
            diff = float(np.abs(got[key].astype(np.float64) - value.astype(np.float64)).max())
            limit = {"detection_boxes": 2.0, "detection_scores": 1e-3}.get(key, 0.0)
            ok &= diff <= limit
            print(f"{size:8s} {key:20s} max |onnx - savedmodel| = {diff:.3g}")
    print("same detections" if ok else "DETECTIONS DIFFER")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
