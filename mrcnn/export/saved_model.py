"""Write an inference ``MaskRCNN`` as a self-contained TensorFlow SavedModel.

The SavedModel needs neither this package nor custom ops: molding (:mod:`mrcnn.export.molding`),
the network and unmolding/mask pasting (:mod:`mrcnn.export.unmolding`) are all traced into plain
TensorFlow graphs. Signatures (all inputs of one call share one image size):

``serving_default``
    ``images`` uint8 [B, H, W, 3] ->
    ``detection_boxes`` float32 [B, N, 4] (y1, x1, y2, x2 pixels of the input image, y2/x2
    exclusive, integer-valued exactly as detect()'s ``rois``), ``detection_classes`` int32
    [B, N], ``detection_scores`` float32 [B, N], ``num_detections`` int32 [B] and
    ``detection_masks`` uint8 [B, N, H, W] (0/1, pasted as detect() pastes them).
    N = DETECTION_MAX_INSTANCES; rows ``>= num_detections`` are zeros.
``mask_probabilities``
    ``images`` as above -> the same boxes, classes, scores, num_detections and
    ``detection_mask_probabilities`` float32 [B, N, mh, mw] (MASK_SHAPE, the mask head's sigmoid
    for each detection's class; paste them into its box to get detect()'s masks).
``image_bytes``
    ``image_bytes`` string [B] (encoded JPEG/PNG/BMP/GIF; decoded to RGB) -> the outputs of
    ``serving_default``.
"""
import logging
import os
import time

import numpy as np
import tensorflow as tf

from mrcnn.export.molding import check_resize_mode, mold_images_tf, pyramid_anchors_tf
from mrcnn.export.unmolding import paste_masks_tf, pick_class_masks_tf, unmold_detections_tf
from mrcnn.model.winograd import direct_convolutions
from mrcnn.ops.anchors import compute_backbone_shapes

__all__ = ["SIGNATURES", "export_saved_model", "make_serving_functions"]

logger = logging.getLogger(__name__)

#: Signature names of the exported SavedModel.
SIGNATURES = ("serving_default", "mask_probabilities", "image_bytes")


def _check_exportable(model):
    config = model.config
    if model.mode != "inference":
        raise ValueError("export() needs a MaskRCNN built with mode='inference', "
                         f"got mode={model.mode!r}")
    check_resize_mode(config.IMAGE_RESIZE_MODE)
    if config.IMAGE_CHANNEL_COUNT != 3:
        raise ValueError("export() serves RGB images: Config.IMAGE_CHANNEL_COUNT must be 3, "
                         f"got {config.IMAGE_CHANNEL_COUNT!r}")
    if callable(config.BACKBONE) and config.IMAGE_RESIZE_MODE != "square":
        # The graph computes anchors from BACKBONE_STRIDES for molded shapes known only at run
        # time; a custom backbone must produce the feature maps those strides imply.
        for shape in ((128, 192), (320, 256), (448, 64)):
            expected = compute_backbone_shapes(shape, config.BACKBONE_STRIDES)
            got = np.asarray(config.COMPUTE_BACKBONE_SHAPE(shape))
            if got.shape != expected.shape or not np.array_equal(got, expected):
                raise ValueError(
                    f"export() with IMAGE_RESIZE_MODE={config.IMAGE_RESIZE_MODE!r} computes "
                    f"anchors from BACKBONE_STRIDES={list(config.BACKBONE_STRIDES)}, but "
                    f"COMPUTE_BACKBONE_SHAPE({shape}) gives {got.tolist()} instead of "
                    f"{expected.tolist()}; use IMAGE_RESIZE_MODE='square' for this backbone")


def make_serving_functions(model):
    """The three serving functions (plain Python callables to trace), keyed by signature name.

    Args:
        model: an inference :class:`mrcnn.model.maskrcnn.MaskRCNN`.
    """
    _check_exportable(model)
    config = model.config
    keras_model = model.keras_model
    mode = config.IMAGE_RESIZE_MODE
    fixed_anchors = None
    if mode == "square":
        # The molded shape is always [MAX_DIM, MAX_DIM]: one constant set of anchors.
        fixed_anchors = np.asarray(model.get_anchors(config.IMAGE_SHAPE), np.float32)

    # One traced function shared by the three signatures: each signature (and the tracing that
    # saving repeats) then embeds a call to it instead of tracing the network again.
    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)], autograph=False)
    def detect_core(images):
        shape = tf.shape(images)
        batch, height, width = shape[0], shape[1], shape[2]
        molded, metas, window = mold_images_tf(
            images, config.MEAN_PIXEL, config.NUM_CLASSES, config.IMAGE_MIN_DIM,
            config.IMAGE_MAX_DIM, config.IMAGE_MIN_SCALE, mode)
        mh, mw = tf.shape(molded)[1], tf.shape(molded)[2]
        if fixed_anchors is not None:
            anchors = tf.constant(fixed_anchors)
        else:
            anchors = pyramid_anchors_tf(mh, mw, config.RPN_ANCHOR_SCALES,
                                         config.RPN_ANCHOR_RATIOS, config.BACKBONE_STRIDES,
                                         config.RPN_ANCHOR_STRIDE)
        anchors = tf.broadcast_to(anchors[None], tf.concat([[batch], tf.shape(anchors)], 0))
        detections, _, _, mrcnn_mask, _, _, _ = keras_model([molded, metas, anchors],
                                                           training=False)
        masks = pick_class_masks_tf(detections, mrcnn_mask)
        out = unmold_detections_tf(detections, masks, (height, width), (mh, mw), window)
        return out, height, width

    def outputs(out):
        return {
            "detection_boxes": tf.cast(out["boxes"], tf.float32),
            "detection_classes": out["class_ids"],
            "detection_scores": out["scores"],
            "num_detections": out["num"],
        }

    def serving_default(images):
        out, height, width = detect_core(images)
        result = outputs(out)
        result["detection_masks"] = paste_masks_tf(out["masks"], out["boxes"], height, width)
        return result

    def mask_probabilities(images):
        out, _, _ = detect_core(images)
        result = outputs(out)
        result["detection_mask_probabilities"] = out["masks"]
        return result

    def image_bytes(image_bytes):
        # All images of one request must decode to the same size (one [B, H, W, 3] batch).
        images = tf.map_fn(
            lambda data: tf.io.decode_image(data, channels=3, dtype=tf.uint8,
                                            expand_animations=False),
            image_bytes, fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))
        return serving_default(images)

    return {"serving_default": serving_default, "mask_probabilities": mask_probabilities,
            "image_bytes": image_bytes}


def export_saved_model(model, export_dir):
    """Write ``model`` (inference MaskRCNN) as a SavedModel with :data:`SIGNATURES`.

    Written to a temporary sibling folder and renamed, so ``export_dir`` holds a whole
    SavedModel or nothing. Raises FileExistsError if ``export_dir`` exists and is not empty.
    Returns ``export_dir``.
    """
    export_dir = os.fspath(export_dir)
    if os.path.isdir(export_dir) and os.listdir(export_dir):
        raise FileExistsError(f"export_dir {export_dir} exists and is not empty")
    functions = make_serving_functions(model)
    started = time.monotonic()
    # A plain tf.Module holding the variables and the signature functions: saving the Keras
    # model object itself would make TensorFlow trace its layers again for the object graph.
    module = tf.Module()
    module.model_variables = [getattr(v, "value", v) for v in model.keras_model.weights]
    image_spec = tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")
    bytes_spec = tf.TensorSpec([None], tf.string, name="image_bytes")
    signatures = {}
    for name, spec in (("serving_default", image_spec), ("mask_probabilities", image_spec),
                       ("image_bytes", bytes_spec)):
        fn = tf.function(functions[name], input_signature=[spec], autograph=False)
        with direct_convolutions():  # no XLA-compiled functions in the exported graph
            signatures[name] = fn.get_concrete_function()
    parent = os.path.dirname(os.path.abspath(export_dir))
    os.makedirs(parent, exist_ok=True)
    tmp_dir = os.path.join(parent, f".{os.path.basename(export_dir)}.tmp{os.getpid()}")
    tf.saved_model.save(module, tmp_dir, signatures=signatures)
    if os.path.isdir(export_dir):
        os.rmdir(export_dir)
    os.replace(tmp_dir, export_dir)
    logger.info("Exported SavedModel to %s in %.1f s (signatures: %s)", export_dir,
                time.monotonic() - started, ", ".join(SIGNATURES))
    return export_dir
