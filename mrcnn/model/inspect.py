"""Inspection support for the classic notebooks: named intermediate results and ``run_graph``.

The classic inspect_model notebook fetched TF1 graph tensors by name, e.g.
``model.ancestor(pillar, "ROI/pre_nms_anchors:0")``, and evaluated them with ``run_graph``.
Keras 3 has no graph of named tensors, so here the layers with interesting internals
(:class:`~mrcnn.model.proposal.ProposalLayer`, :class:`~mrcnn.model.detection.DetectionLayer`)
list them in ``INTERNALS`` and compute them in ``compute_internals``. :func:`ancestor` turns a
classic name ``"<layer>/<internal>[:0]"`` into a Keras tensor: an :class:`InternalOutput` layer
applied to the same inputs as the named layer. :func:`run_graph` then builds a separate
inspection model, from the model's image, image_meta and anchor inputs to the requested tensors,
that shares every weight with ``keras_model``; the model itself is never changed.

Names (``:0`` suffixes are ignored; a name without ``/`` is a layer's own output):

* ``ROI/pre_nms_scores``, ``ROI/pre_nms_anchors``, ``ROI/refined_anchors``,
  ``ROI/refined_anchors_clipped``, ``ROI/post_nms_anchor_ix`` (the classic
  ``ROI/rpn_non_max_suppression`` and its ``NonMaxSuppressionV2`` / ``V3`` names are aliases);
* ``mrcnn_detection/class_ids``, ``/scores``, ``/refined_rois``, ``/keep`` (inference mode).

Shapes are batched ``[B, ...]`` (the classic ones were per image for some of these); boxes are
normalized ``(y1, x1, y2, x2)``; see each layer's ``compute_internals``.
"""
import collections
import logging

import keras
import numpy as np

from mrcnn.ops.anchors import compute_backbone_shapes as _backbone_shapes

__all__ = ["compute_backbone_shapes", "InternalOutput", "ancestor", "run_graph",
           "INTERNAL_ALIASES"]

logger = logging.getLogger(__name__)

#: Classic TF1 tensor names (after the layer name) and the internal they meant.
INTERNAL_ALIASES = {
    "rpn_non_max_suppression": "post_nms_anchor_ix",
    "rpn_non_max_suppression/NonMaxSuppressionV2": "post_nms_anchor_ix",
    "rpn_non_max_suppression/NonMaxSuppressionV3": "post_nms_anchor_ix",
}


def compute_backbone_shapes(config, image_shape):
    """Classic ``modellib.compute_backbone_shapes(config, image_shape)``.

    Returns [L, 2] int (height, width) of each pyramid level for a molded image shape;
    ``config.COMPUTE_BACKBONE_SHAPE(image_shape)`` when ``config.BACKBONE`` is a callable.
    """
    if callable(config.BACKBONE):
        if config.COMPUTE_BACKBONE_SHAPE is None:
            raise ValueError("compute_backbone_shapes: config.BACKBONE is a callable, so "
                             "config.COMPUTE_BACKBONE_SHAPE must be set (got None)")
        return np.asarray(config.COMPUTE_BACKBONE_SHAPE(image_shape))
    return _backbone_shapes(image_shape, config.BACKBONE_STRIDES)


@keras.saving.register_keras_serializable(package="mrcnn")
class InternalOutput(keras.layers.Layer):
    """One intermediate result of another layer, as its own output (for inspection models).

    Args:
        source: a layer with ``compute_internals(inputs) -> dict`` (ProposalLayer,
            DetectionLayer); called on the inputs ``source`` was called on in the model.
        key: one of ``source.INTERNALS``.

    Holds no weights; the ``source`` layer's weights (if any) stay shared.
    """

    def __init__(self, source, key, **kwargs):
        super().__init__(**kwargs)
        if key not in getattr(source, "INTERNALS", ()):
            raise ValueError(f"layer {source.name!r} has no internal {key!r}; it has "
                             f"{list(getattr(source, 'INTERNALS', ()))}")
        # A plain tuple keeps Keras from tracking the source as a sub-layer of this one.
        self._source = (source,)
        self.key = key

    def call(self, inputs):
        return self._source[0].compute_internals(inputs)[self.key]


def _history_operation(tensor):
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        raise TypeError(f"expected a Keras tensor of the model (e.g. "
                        f"model.keras_model.get_layer('ROI').output), got {type(tensor).__name__}")
    return history.operation, history.node_index


def _upstream_layer(tensor, layer_name):
    """The operation called ``layer_name`` that ``tensor`` depends on (itself included)."""
    operation, node_index = _history_operation(tensor)
    stack = [(operation, node_index)]
    seen = set()
    while stack:
        op, index = stack.pop()
        if id(op) in seen:
            continue
        seen.add(id(op))
        if op.name == layer_name:
            return op
        node = op._inbound_nodes[index]
        for parent in node.input_tensors:
            stack.append(_history_operation(parent))
    return None


def _split_name(name):
    name = str(name)
    if name.endswith(":0"):
        name = name[:-2]
    layer_name, _, key = name.partition("/")
    return layer_name, INTERNAL_ALIASES.get(key, key)


def ancestor(tensor, name, cache=None):
    """Classic ``MaskRCNN.ancestor``: the tensor called ``name`` upstream of ``tensor``.

    Args:
        tensor: a Keras tensor of the model, e.g. ``keras_model.get_layer("ROI").output``.
        name: ``"<layer>"`` (that layer's output) or ``"<layer>/<internal>"``, optionally with
            the classic ``":0"``; see the module docstring for the internals.
        cache: optional dict keeping one tensor per name (so repeated calls share a node).

    Returns:
        a Keras tensor usable in :func:`run_graph`, or None when no layer of that name is
        upstream of ``tensor`` (classic).

    Raises:
        ValueError: the layer exists upstream but has no such internal (the message lists the
            ones it has); TF1 op names other than the aliases cannot exist in Keras 3.
    """
    layer_name, key = _split_name(name)
    layer = _upstream_layer(tensor, layer_name)
    if layer is None:
        return None
    if not key:
        return layer.output
    internals = tuple(getattr(layer, "INTERNALS", ()))
    if key not in internals:
        raise ValueError(
            f"ancestor: layer {layer_name!r} ({type(layer).__name__}) exposes no {key!r}: Keras 3 "
            f"has no named graph tensors; the intermediate results it offers are "
            f"{[f'{layer_name}/{k}' for k in internals]} (or use a layer's output, "
            f"keras_model.get_layer(name).output)")
    cache_key = (id(layer), key)
    if cache is not None and cache_key in cache:
        return cache[cache_key]
    inputs = layer._inbound_nodes[0].arguments.args[0]
    result = InternalOutput(layer, key, name=f"{layer_name}_{key}")(inputs)
    if cache is not None:
        cache[cache_key] = result
    return result


def run_graph(mrcnn_model, images, outputs, image_metas=None):
    """Classic ``MaskRCNN.run_graph``: evaluate named tensors on ``images``, in either mode.

    Args:
        mrcnn_model: a :class:`~mrcnn.model.maskrcnn.MaskRCNN` (inference or training mode).
        images: list of [H, W, 3] images, molded here (resize, pad, mean subtraction); or, when
            ``image_metas`` is given, [N, h, w, 3] images already molded *and* normalized (as
            ``mold_inputs`` returns them; they are used as they are, like the classic).
        outputs: list of ``(name, tensor)``; tensors are outputs of layers of ``keras_model`` or
            results of :func:`ancestor`. In training mode they must depend only on the image,
            image_meta and anchor inputs (the RPN, proposals, feature maps), not on ground truth.
        image_metas: [N, META] float32, with molded ``images``.

    Returns:
        ``OrderedDict`` name -> NumPy array with a leading batch dimension, in the given order.

    Raises:
        ValueError: a tensor is None (e.g. an ``ancestor`` that was not found) or, in training
            mode, depends on the ground-truth inputs.
    """
    for name, tensor in outputs:
        if tensor is None:
            raise ValueError(f"run_graph: the tensor for {name!r} is None (ancestor() did not "
                             "find it upstream)")
    if image_metas is None:
        molded_images, image_metas, _ = mrcnn_model.mold_inputs(images)
    else:
        molded_images = np.asarray(images, dtype=np.float32)
    molded_images = molded_images.astype(np.float32)
    image_metas = np.asarray(image_metas, dtype=np.float32)
    anchors = mrcnn_model.get_anchors(molded_images.shape[1:3])
    anchors = np.broadcast_to(anchors, (molded_images.shape[0],) + anchors.shape)
    keras_model = mrcnn_model.keras_model
    inputs = keras_model.inputs[:3]  # input_image, input_image_meta, input_anchors (both modes)
    tensors = [tensor for _, tensor in outputs]
    try:
        probe = keras.Model(inputs, tensors, name="mask_rcnn_inspection")
    except ValueError as exc:
        raise ValueError(
            f"run_graph: the requested outputs {[n for n, _ in outputs]} cannot be computed from "
            f"the image, image_meta and anchors alone ({mrcnn_model.mode} mode): outputs that "
            f"depend on ground truth (detection targets, losses) cannot be run; build the "
            f"MaskRCNN in inference mode for the heads' outputs. Keras said: {exc}") from exc
    values = probe([molded_images, image_metas, np.ascontiguousarray(anchors)], training=False)
    if not isinstance(values, (list, tuple)):
        values = [values]
    result = collections.OrderedDict()
    for (name, _), value in zip(outputs, values):
        result[name] = np.asarray(value)
        logger.debug("%s %s", name, result[name].shape)
    return result
