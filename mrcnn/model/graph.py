"""Assemble the Mask R-CNN Keras graph from a Config.

Together with :mod:`mrcnn.model.training` this is the factory behind ``MaskRCNN``: the only code
that translates ``Config`` fields into the explicit arguments of the layers.
"""
import keras

from mrcnn.model.backbone import build_backbone
from mrcnn.model.detection import DetectionBoxes, DetectionLayer
from mrcnn.model.fpn import fpn_graph
from mrcnn.model.heads import build_fpn_mask_graph, fpn_classifier_graph
from mrcnn.model.proposal import ProposalLayer
from mrcnn.model.roi_align import PyramidROIAlign
from mrcnn.model.rpn import build_rpn_model, rpn_graph

__all__ = ["build_inference_model", "build_feature_pyramid", "build_heads", "model_inputs"]

#: Names and order of the inference model's outputs.
INFERENCE_OUTPUTS = ("mrcnn_detection", "mrcnn_class", "mrcnn_bbox", "mrcnn_mask", "ROI",
                     "rpn_class", "rpn_bbox")


def model_inputs(config):
    """The image, image_meta and anchor inputs shared by both modes."""
    input_image = keras.Input(shape=[None, None, config.IMAGE_CHANNEL_COUNT], name="input_image")
    input_image_meta = keras.Input(shape=[config.IMAGE_META_SIZE], name="input_image_meta")
    # Normalized anchors [B, A, 4]: MaskRCNN.get_anchors() / the input pipeline provide them.
    input_anchors = keras.Input(shape=[None, 4], name="input_anchors")
    return input_image, input_image_meta, input_anchors


def build_feature_pyramid(input_image, config):
    """Backbone + FPN + shared RPN.

    Returns:
        rpn_feature_maps [P2, P3, P4, P5, P6], mrcnn_feature_maps [P2, P3, P4, P5],
        (rpn_class_logits [B, A, 2], rpn_class [B, A, 2], rpn_bbox [B, A, 4]).
    """
    c2, c3, c4, c5 = build_backbone(input_image, config.BACKBONE, train_bn=config.TRAIN_BN,
                                    bn_momentum=config.BATCH_NORM_MOMENTUM)
    p2, p3, p4, p5, p6 = fpn_graph(c2, c3, c4, c5, config.TOP_DOWN_PYRAMID_SIZE)
    rpn_feature_maps = [p2, p3, p4, p5, p6]
    rpn_model = build_rpn_model(config.RPN_ANCHOR_STRIDE, len(config.RPN_ANCHOR_RATIOS),
                                config.TOP_DOWN_PYRAMID_SIZE, config.RPN_CONV_CHANNELS,
                                sparse_gradient=not getattr(config, "XLA", False))
    rpn_outputs = rpn_graph(rpn_feature_maps, rpn_model)
    return rpn_feature_maps, [p2, p3, p4, p5], rpn_outputs


def build_heads(rois, input_image_meta, mrcnn_feature_maps, config):
    """RoIAlign + classifier/box head on ``rois`` [B, R, 4] normalized."""
    pooled = PyramidROIAlign([config.POOL_SIZE, config.POOL_SIZE],
                             xla_compatible=getattr(config, "XLA", False),
                             name="roi_align_classifier")(
        [rois, input_image_meta] + mrcnn_feature_maps)
    return fpn_classifier_graph(pooled, config.NUM_CLASSES,
                                fc_layers_size=config.FPN_CLASSIF_FC_LAYERS_SIZE,
                                train_bn=config.TRAIN_BN,
                                bn_momentum=config.BATCH_NORM_MOMENTUM)


def build_mask_head(rois, input_image_meta, mrcnn_feature_maps, config, valid=None,
                    valid_column=None):
    """RoIAlign + mask head on ``rois`` [B, R, 4] normalized -> [B, R, 2m, 2m, NUM_CLASSES].

    ``valid`` (``[B, R]``, or ``[B, R, K]`` tested at ``valid_column``; > 0 = needs a mask)
    runs the mask convolutions on those ROIs only (zeros elsewhere); ignored with ``Config.XLA``,
    whose compiled graphs need static shapes."""
    xla = bool(getattr(config, "XLA", False))
    pooled = PyramidROIAlign([config.MASK_POOL_SIZE, config.MASK_POOL_SIZE],
                             xla_compatible=xla,
                             name="roi_align_mask")([rois, input_image_meta] + mrcnn_feature_maps)
    return build_fpn_mask_graph(pooled, config.NUM_CLASSES, train_bn=config.TRAIN_BN,
                                bn_momentum=config.BATCH_NORM_MOMENTUM,
                                valid=None if xla else valid, valid_column=valid_column)


def build_inference_model(config):
    """The inference graph.

    Inputs: ``input_image`` [B, H, W, C] molded float32, ``input_image_meta`` [B, META],
    ``input_anchors`` [B, A, 4] normalized.
    Outputs (in ``INFERENCE_OUTPUTS`` order): detections [B, DETECTION_MAX_INSTANCES, 6]
    (y1, x1, y2, x2 normalized, class_id, score; zero-padded), mrcnn_class [B, R, NC],
    mrcnn_bbox [B, R, NC, 4], mrcnn_mask [B, DETECTION_MAX_INSTANCES, 28, 28, NC],
    rpn_rois [B, R, 4], rpn_class [B, A, 2], rpn_bbox [B, A, 4].
    """
    input_image, input_image_meta, input_anchors = model_inputs(config)
    _, mrcnn_feature_maps, (_, rpn_class, rpn_bbox) = build_feature_pyramid(input_image, config)
    rpn_rois = ProposalLayer(
        proposal_count=config.POST_NMS_ROIS_INFERENCE, nms_threshold=config.RPN_NMS_THRESHOLD,
        pre_nms_limit=config.PRE_NMS_LIMIT, rpn_bbox_std_dev=config.RPN_BBOX_STD_DEV,
        xla_compatible=bool(getattr(config, "XLA", False)),
        name="ROI")([rpn_class, rpn_bbox, input_anchors])
    _, mrcnn_class, mrcnn_bbox = build_heads(rpn_rois, input_image_meta, mrcnn_feature_maps,
                                             config)
    detections = DetectionLayer(
        max_instances=config.DETECTION_MAX_INSTANCES,
        min_confidence=config.DETECTION_MIN_CONFIDENCE,
        nms_threshold=config.DETECTION_NMS_THRESHOLD, bbox_std_dev=config.BBOX_STD_DEV,
        name="mrcnn_detection")([rpn_rois, mrcnn_class, mrcnn_bbox, input_image_meta])
    detection_boxes = DetectionBoxes(name="detection_boxes")(detections)
    # Masks for the detections only, not for the zero padding up to DETECTION_MAX_INSTANCES.
    mrcnn_mask = build_mask_head(detection_boxes, input_image_meta, mrcnn_feature_maps, config,
                                 valid=detections, valid_column=4)
    return keras.Model([input_image, input_image_meta, input_anchors],
                       [detections, mrcnn_class, mrcnn_bbox, mrcnn_mask, rpn_rois, rpn_class,
                        rpn_bbox], name="mask_rcnn")
