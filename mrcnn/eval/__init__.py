"""Evaluation: classic per-image VOC-style mask AP and COCO box/mask AP.

* :mod:`mrcnn.eval.metrics`: the classic per-image mask AP (VOC-style, all-point interpolated,
  at one IoU threshold): ``compute_matches``, ``compute_ap``, ``compute_ap_range``,
  ``compute_recall``. Averaged over images it is the classic "mAP@0.5"; it is not COCO AP.
* :mod:`mrcnn.eval.coco_eval`: COCO AP through pycocotools (mean over IoU 0.50:0.95,
  101-point interpolation, over the whole dataset): ``evaluate_coco``, its builders and
  ``evaluate_coco_results`` (COCO result dicts against any pycocotools ground truth).

See ``docs/evaluation.md``.
"""
from mrcnn.eval.coco_eval import (
    COCO_AP_DESCRIPTION,
    COCO_METRIC_NAMES,
    CocoMetrics,
    build_coco_ground_truth,
    detections_to_coco_results,
    evaluate_coco,
    evaluate_coco_results,
)
from mrcnn.eval.metrics import compute_ap, compute_ap_range, compute_matches, compute_recall

__all__ = [
    "compute_matches",
    "compute_ap",
    "compute_ap_range",
    "compute_recall",
    "COCO_AP_DESCRIPTION",
    "COCO_METRIC_NAMES",
    "CocoMetrics",
    "build_coco_ground_truth",
    "detections_to_coco_results",
    "evaluate_coco",
    "evaluate_coco_results",
]
