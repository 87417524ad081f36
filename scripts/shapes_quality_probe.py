#!/usr/bin/env python3
"""Choose the bound of CI's learning check: train tests/samples/shapes_quality.py's tiny model
for a fixed number of steps with several seeds and print each seed's scores.

    .venv/bin/python scripts/shapes_quality_probe.py --seeds 0 1 2 --steps 300

The test's BOUND should sit well below the worst seed (training is seeded, but float sums are
not bit-identical across CPUs) and well above an untrained model (0.0).
"""
import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=None, help="default: the test's STEPS")
    ap.add_argument("--eval-images", type=int, default=40)
    ap.add_argument("--json-out", default="")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from scripts.cpu_info import cpu_summary
    from tests.samples.shapes_quality import STEPS, train_and_score

    steps = args.steps or STEPS
    rows = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as logs:
            start = time.perf_counter()
            m = train_and_score(logs, steps=steps, seed=seed, eval_images=args.eval_images)
            row = {"seed": seed, "steps": m["steps"], "mAP50": round(m["mAP50"], 4),
                   "coco_segm_AP50": round(m["coco_segm_AP50"], 4),
                   "coco_bbox_AP50": round(m["coco_bbox_AP50"], 4),
                   "num_detections": m["num_detections"],
                   "seconds": round(time.perf_counter() - start, 1)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    result = {"cpu": cpu_summary(), "rows": rows,
              "worst_mAP50": min(r["mAP50"] for r in rows)}
    print(json.dumps(result, indent=1))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
