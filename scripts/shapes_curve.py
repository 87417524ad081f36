#!/usr/bin/env python3
"""Shapes from scratch on the CPU: accuracy against training minutes.

Trains ShapesCPUConfig from random initialisation with one checkpoint per epoch, noting the
training wall time at the end of each epoch (validation excluded), then evaluates every
checkpoint on held-out generated images: the classic mask mAP@0.5 and COCO mask/box AP.

    .venv/bin/python scripts/shapes_curve.py --minutes 15 --steps 50 --eval-images 100
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=15.0, help="training time budget")
    ap.add_argument("--epochs", type=int, default=100, help="upper bound on epochs")
    ap.add_argument("--steps", type=int, default=50, help="steps per epoch")
    ap.add_argument("--train-images", type=int, default=1000)
    ap.add_argument("--eval-images", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--logs", default="logs/shapes_curve")
    ap.add_argument("--json-out", default="")
    ap.add_argument("--evaluate-only", default="", metavar="RUN_DIR",
                    help="skip training: evaluate the checkpoints in RUN_DIR, taking the "
                         "training minutes of each epoch from --marks")
    ap.add_argument("--marks", default="", help="json list of [epoch, minutes, loss]")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=JSON",
                    help="override a config attribute in training and evaluation, e.g. "
                         "--set TOP_DOWN_PYRAMID_SIZE=128 (repeatable)")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import keras
    from samples.shapes.shapes import (ShapesCPUConfig, ShapesCPUInferenceConfig,
                                       evaluate_shapes, make_dataset, train_shapes)
    from mrcnn.model.maskrcnn import MaskRCNN

    marks = []

    class EpochClock(keras.callbacks.Callback):
        """Training seconds at each epoch end, validation time excluded."""

        def on_train_begin(self, logs=None):
            self.total, self.t0 = 0.0, None

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.monotonic()

        def on_train_batch_end(self, batch, logs=None):
            self.last = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            self.total += self.last - self.t0
            loss = (logs or {}).get("loss")
            marks.append((epoch + 1, self.total / 60.0, None if loss is None else float(loss)))

    from mrcnn.cli import parse_config_overrides

    try:
        overrides = parse_config_overrides(args.set)
    except ValueError as exc:
        ap.error(f"--set: {exc}")
    # Subclasses, so the derived values (IMAGE_SHAPE, BATCH_SIZE) see the overrides.
    ShapesCPUConfig = type("ShapesCPUConfig", (ShapesCPUConfig,), dict(overrides))
    ShapesCPUInferenceConfig = type("ShapesCPUInferenceConfig", (ShapesCPUInferenceConfig,),
                                    dict(overrides))
    config = ShapesCPUConfig()
    config.STEPS_PER_EPOCH = args.steps
    started = time.monotonic()
    if args.evaluate_only:
        run_dir = args.evaluate_only
        with open(args.marks) as fh:
            marks = [tuple(m) for m in json.load(fh)]
        wall_train = None
    else:
        model = train_shapes(config, logs=args.logs, epochs=args.epochs,
                             train_images=args.train_images, seed=args.seed,
                             minutes=args.minutes, callbacks=[EpochClock()])
        wall_train = (time.monotonic() - started) / 60.0
        run_dir = model.log_dir
        with open(os.path.join(run_dir, "epoch_minutes.json"), "w") as fh:
            json.dump(marks, fh)
    inference = MaskRCNN(mode="inference", config=ShapesCPUInferenceConfig(),
                         model_dir=args.logs)
    dataset = make_dataset(args.eval_images, "eval", args.seed)
    rows = []
    for epoch, minutes, loss in marks:
        path = os.path.join(run_dir, f"mask_rcnn_shapes_{epoch:04d}.h5")
        inference.load_weights(path, by_name=True)
        m = evaluate_shapes(inference, dataset, limit=args.eval_images)
        row = {"epoch": epoch, "train_minutes": round(minutes, 2), "loss": loss,
               "mAP50": m["mAP50"], "coco_segm_AP": m["coco_segm_AP"],
               "coco_segm_AP50": m["coco_segm_AP50"], "coco_bbox_AP": m["coco_bbox_AP"],
               "seconds_per_image": m["seconds_per_image"]}
        rows.append(row)
        loss_text = "n/a" if loss is None else f"{loss:.3f}"
        print(f"epoch {epoch:3d}  {minutes:6.2f} min  loss {loss_text}  mAP@0.5 "
              f"{m['mAP50']:.3f}  COCO mask AP {m['coco_segm_AP']:.3f}  box AP "
              f"{m['coco_bbox_AP']:.3f}", flush=True)
    result = {"rows": rows, "wall_minutes_with_validation": wall_train,
              "steps_per_epoch": args.steps, "batch": config.BATCH_SIZE,
              "eval_images": args.eval_images, "overrides": overrides,
              "date": time.strftime("%Y-%m-%d %H:%M")}
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(result, fh, indent=1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
