"""Mask R-CNN model package; ``import mrcnn.model as modellib`` gives the classic names.

``modellib.MaskRCNN``, ``modellib.load_image_gt``, ``modellib.build_rpn_targets``,
``modellib.data_generator``, ``modellib.compose_image_meta``, ``modellib.parse_image_meta``,
``modellib.mold_image``, ``modellib.unmold_image``, ``modellib.log`` and the layer classes are
re-exported here from the modules that implement them.
"""
from mrcnn.data.image_meta import (compose_image_meta, mold_image, parse_image_meta,
                                   parse_image_meta_graph, unmold_image)
from mrcnn.data.pipeline import data_generator, load_image_gt
from mrcnn.data.rpn_targets import build_rpn_targets
from mrcnn.model.backbone import resnet_graph
from mrcnn.model.debug import log
from mrcnn.model.detection import DetectionLayer
from mrcnn.model.fpn import fpn_graph
from mrcnn.model.heads import build_fpn_mask_graph, fpn_classifier_graph
from mrcnn.model.layers import BatchNorm
from mrcnn.model.maskrcnn import MaskRCNN
from mrcnn.model.proposal import ProposalLayer
from mrcnn.model.roi_align import PyramidROIAlign
from mrcnn.model.rpn import build_rpn_model, rpn_graph
from mrcnn.model.targets import DetectionTargetLayer
from mrcnn.ops.anchors import compute_backbone_shapes
from mrcnn.ops.boxes import (apply_box_deltas_tf as apply_box_deltas_graph,
                             clip_boxes_tf as clip_boxes_graph,
                             denorm_boxes_tf as denorm_boxes_graph,
                             norm_boxes_tf as norm_boxes_graph)

__all__ = [
    "MaskRCNN", "load_image_gt", "build_rpn_targets", "data_generator", "compose_image_meta",
    "parse_image_meta", "parse_image_meta_graph", "mold_image", "unmold_image", "log",
    "BatchNorm", "resnet_graph", "fpn_graph", "build_rpn_model", "rpn_graph", "ProposalLayer",
    "PyramidROIAlign", "DetectionLayer", "DetectionTargetLayer", "fpn_classifier_graph",
    "build_fpn_mask_graph", "compute_backbone_shapes", "apply_box_deltas_graph",
    "clip_boxes_graph", "norm_boxes_graph", "denorm_boxes_graph",
]
