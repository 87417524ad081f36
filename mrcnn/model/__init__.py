"""Mask R-CNN model package; ``import mrcnn.model as modellib`` gives the classic names.

``modellib.MaskRCNN``, ``modellib.load_image_gt``, ``modellib.build_rpn_targets``,
``modellib.data_generator``, ``modellib.compose_image_meta``, ``modellib.parse_image_meta``,
``modellib.mold_image``, ``modellib.unmold_image``, ``modellib.log`` and the layer classes are
re-exported from the modules that implement them. They load on first use, so that importing a
light submodule (``mrcnn.model.pretrained``) does not pull in TensorFlow.
"""
import importlib

_EXPORTS = {
    "MaskRCNN": "mrcnn.model.maskrcnn",
    "load_image_gt": "mrcnn.data.pipeline",
    "data_generator": "mrcnn.data.pipeline",
    "build_rpn_targets": "mrcnn.data.rpn_targets",
    "compose_image_meta": "mrcnn.data.image_meta",
    "parse_image_meta": "mrcnn.data.image_meta",
    "parse_image_meta_graph": "mrcnn.data.image_meta",
    "mold_image": "mrcnn.data.image_meta",
    "unmold_image": "mrcnn.data.image_meta",
    "log": "mrcnn.model.debug",
    "BatchNorm": "mrcnn.model.layers",
    "resnet_graph": "mrcnn.model.backbone",
    "fpn_graph": "mrcnn.model.fpn",
    "build_rpn_model": "mrcnn.model.rpn",
    "rpn_graph": "mrcnn.model.rpn",
    "ProposalLayer": "mrcnn.model.proposal",
    "PyramidROIAlign": "mrcnn.model.roi_align",
    "DetectionLayer": "mrcnn.model.detection",
    "DetectionTargetLayer": "mrcnn.model.targets",
    "fpn_classifier_graph": "mrcnn.model.heads",
    "build_fpn_mask_graph": "mrcnn.model.heads",
    "compute_backbone_shapes": "mrcnn.model.inspect",
    "build_detection_targets": "mrcnn.data.detection_targets",
    "generate_random_rois": "mrcnn.data.detection_targets",
}
# Classic graph-function names and where they live now (their TF twins of the box ops).
_RENAMED = {
    "apply_box_deltas_graph": ("mrcnn.ops.boxes", "apply_box_deltas_tf"),
    "clip_boxes_graph": ("mrcnn.ops.boxes", "clip_boxes_tf"),
    "norm_boxes_graph": ("mrcnn.ops.boxes", "norm_boxes_tf"),
    "denorm_boxes_graph": ("mrcnn.ops.boxes", "denorm_boxes_tf"),
    "overlaps_graph": ("mrcnn.ops.boxes", "compute_overlaps_tf"),
    "box_refinement_graph": ("mrcnn.ops.boxes", "box_refinement_tf"),
}

__all__ = sorted(list(_EXPORTS) + list(_RENAMED))


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _RENAMED:
        module, attr = _RENAMED[name]
        value = getattr(importlib.import_module(module), attr)
    else:
        raise AttributeError(f"module 'mrcnn.model' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
