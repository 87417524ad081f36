"""The classic ``mrcnn.utils`` surface, re-exported from the modules where the code lives.

``from mrcnn import utils`` keeps working for code written against the classic package:
``utils.Dataset``, ``utils.compute_ap``, ``utils.resize_image`` ... No logic lives here.
"""
from mrcnn.data.dataset import Dataset, ImageLoadError, load_image_file
from mrcnn.data.transforms import resize, resize_image, resize_mask
from mrcnn.eval.metrics import compute_ap, compute_ap_range, compute_matches, compute_recall
from mrcnn.model.pretrained import COCO_MODEL_URL, download_trained_weights
from mrcnn.ops.anchors import compute_backbone_shapes, generate_anchors, generate_pyramid_anchors
from mrcnn.ops.boxes import (apply_box_deltas, box_refinement, compute_iou, compute_overlaps,
                             denorm_boxes, non_max_suppression, norm_boxes, trim_zeros)
from mrcnn.ops.masks import (compute_overlaps_masks, expand_mask, extract_bboxes, minimize_mask,
                             unmold_mask)
from mrcnn.ops.batching import batch_slice

__all__ = [
    "Dataset", "ImageLoadError", "load_image_file",
    "resize", "resize_image", "resize_mask",
    "compute_ap", "compute_ap_range", "compute_matches", "compute_recall",
    "COCO_MODEL_URL", "download_trained_weights",
    "compute_backbone_shapes", "generate_anchors", "generate_pyramid_anchors",
    "apply_box_deltas", "box_refinement", "compute_iou", "compute_overlaps", "denorm_boxes",
    "non_max_suppression", "norm_boxes", "trim_zeros",
    "compute_overlaps_masks", "expand_mask", "extract_bboxes", "minimize_mask", "unmold_mask",
    "batch_slice",
]
