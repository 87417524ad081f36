#!/usr/bin/env python3
"""Short from-scratch nucleus runs for tuning: RPN losses and proposal recall after N minutes.

Trains ``NucleusCPUConfig`` (with ``--set`` overrides) from random initialisation for
``--minutes``, then measures the RPN alone on the first ``--images`` validation images: the
fraction of ground-truth nuclei that one of the top ``--top`` proposals covers at IoU >= 0.5.
Without a working RPN no detection can follow, and this recall moves long before the mask AP
does, so a few minutes tell settings apart.

    .venv/bin/python scripts/nucleus_probe.py --dataset ../shared/data/nucleus --minutes 4.5 \\
        --set LEARNING_RATE=0.0025
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def proposal_recall(model, image, gt_boxes, top, iou=0.5):
    """Fraction of ``gt_boxes`` (original-image pixels) matched by one of the top proposals."""
    import numpy as np

    from mrcnn.ops.boxes import compute_overlaps, denorm_boxes

    if len(gt_boxes) == 0:
        return None
    molded, _, windows = model.mold_inputs([image])
    out = model.run_graph([image], [("proposals", model.keras_model.get_layer("ROI").output)])
    proposals = denorm_boxes(out["proposals"][0][:top], molded[0].shape[:2])
    window = windows[0]
    scale = (window[2] - window[0]) / image.shape[0]
    offset = np.array([window[0], window[1], window[0], window[1]])
    overlaps = compute_overlaps(proposals, gt_boxes * scale + offset)
    return float(np.mean(overlaps.max(axis=0) >= iou))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True, help="nucleus folder (stage1_train layout)")
    ap.add_argument("--minutes", type=float, default=4.5)
    ap.add_argument("--images", type=int, default=8, help="validation images to measure")
    ap.add_argument("--top", type=int, default=300, help="proposals per image to count")
    ap.add_argument("--logs", default="logs/nucleus_probe")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=JSON",
                    help="override a config attribute, e.g. --set LEARNING_RATE=0.005")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import glob

    import keras
    import numpy as np

    from mrcnn.model.maskrcnn import MaskRCNN
    from mrcnn.ops.masks import extract_bboxes
    from samples.nucleus import nucleus

    from mrcnn.cli import parse_config_overrides

    try:
        overrides = parse_config_overrides(args.set)
    except ValueError as exc:
        ap.error(f"--set: {exc}")
    train_cls = type("NucleusProbeConfig", (nucleus.NucleusCPUConfig,), dict(overrides))
    infer_cls = type("NucleusProbeInferenceConfig", (nucleus.NucleusCPUInferenceConfig,),
                     dict(overrides))
    train_set = nucleus.load_dataset(args.dataset, "train")
    val_set = nucleus.load_dataset(args.dataset, "val")
    config = train_cls(train_images=len(train_set.image_ids),
                       val_images=len(val_set.image_ids))

    epochs = []

    class RpnLosses(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            epochs.append({k: round(float(v), 3) for k, v in (logs or {}).items() if "rpn" in k})

    model = MaskRCNN("training", config, args.logs)
    nucleus.train_nucleus(model, train_set, val_set, epochs=1000, layers="all",
                          minutes=args.minutes, custom_callbacks=[RpnLosses()])
    inference = MaskRCNN("inference", infer_cls(), args.logs)
    inference.load_weights(sorted(glob.glob(os.path.join(model.log_dir, "*.h5")))[-1],
                           by_name=True)
    recalls = []
    for image_id in val_set.image_ids[:args.images]:
        masks, _ = val_set.load_mask(image_id)
        recall = proposal_recall(inference, val_set.load_image(image_id), extract_bboxes(masks),
                                 args.top)
        if recall is not None:
            recalls.append(recall)
    result = {"overrides": overrides, "minutes": args.minutes, "epochs": epochs,
              "recall_per_image": [round(r, 3) for r in recalls],
              "mean_recall": round(float(np.mean(recalls)), 3) if recalls else None}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
