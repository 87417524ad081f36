"""Region Proposal Network: one shared sub-model ``rpn_model`` applied to every pyramid level.

The RPN weights live in the nested model ``rpn_model`` (layers ``rpn_conv_shared``,
``rpn_class_raw``, ``rpn_bbox_pred``), exactly as in the classic ``.h5`` files. :func:`rpn_graph`
applies it to P2..P6 and concatenates the per-level outputs into the layers ``rpn_class_logits``,
``rpn_class`` and ``rpn_bbox``.

Anchor order: per level, row-major over the feature map (h, then w), then the anchors of one
location; levels in the order given (P2 first). This equals the order of
``generate_pyramid_anchors`` (scales outer, then y, x, then ratios) used by the classic model.
"""
import keras
import tensorflow as tf
from keras import layers

from mrcnn.model import rpn_gradient
from mrcnn.model.feature_conv import FeatureConv2D

__all__ = ["RpnModel", "build_rpn_model", "rpn_graph"]


@keras.saving.register_keras_serializable(package="mrcnn")
class RpnModel(keras.Model):
    """The functional ``rpn_model`` whose training-mode call computes its gradient where the
    RPN losses reach (mrcnn/model/rpn_gradient.py).

    Same layers, weights, names, inputs and outputs as a plain functional model of the same
    graph; outside training (and with ``sparse_gradient=False``, which the builder sets for
    ``Config.XLA``: the positions with a gradient are a dynamic shape) it is one. In training
    the outputs are computed from the same weights in one custom-gradient function:
    identical to float rounding, with the 1 x 1 convolutions as one product and the 3 x 3
    convolution by Winograd's F(4 x 4, 3 x 3) without XLA where Winograd applies
    (:meth:`FeatureConv2D.forward_only`; its gradient is not taken through it).
    """

    def __init__(self, *args, sparse_gradient=True, **kwargs):
        super().__init__(*args, **kwargs)
        self.sparse_gradient = bool(sparse_gradient)

    def get_config(self):
        config = super().get_config()
        config["sparse_gradient"] = self.sparse_gradient
        return config

    def call(self, inputs, training=None, mask=None):
        if training and self.sparse_gradient and rpn_gradient.SPARSE_RPN_GRADIENT:
            head = self._head_layers()
            if head is not None:
                return self._call_with_sparse_gradient(inputs, *head)
        return super().call(inputs, training=training, mask=mask)

    def _head_layers(self):
        """``(shared 3 x 3, class 1 x 1, box 1 x 1)`` if they have the form the sparse
        gradient computes (a stride-1 "same" 3 x 3 with ReLU, linear 1 x 1s, all with
        biases), else None."""
        try:
            shared, cls, box = (self.get_layer(name) for name in
                                ("rpn_conv_shared", "rpn_class_raw", "rpn_bbox_pred"))
        except ValueError:
            return None
        if not (isinstance(shared, FeatureConv2D) and tuple(shared.kernel_size) == (3, 3)
                and tuple(shared.strides) == (1, 1) and shared.padding == "same"
                and tuple(shared.dilation_rate) == (1, 1) and shared.groups == 1
                and shared.data_format == "channels_last"
                and shared.activation is keras.activations.relu):
            return None
        for layer in (shared, cls, box):
            if not layer.use_bias:
                return None
        for layer in (cls, box):
            if (tuple(layer.kernel_size) != (1, 1) or tuple(layer.strides) != (1, 1)
                    or layer.activation is not keras.activations.linear):
                return None
        return shared, cls, box

    def _call_with_sparse_gradient(self, feature_map, shared, cls, box):
        dtype = feature_map.dtype
        filters = shared.filters
        head_kernel = tf.concat([tf.reshape(tf.cast(cls.kernel, dtype), [filters, cls.filters]),
                                 tf.reshape(tf.cast(box.kernel, dtype), [filters, box.filters])],
                                axis=1)
        head_bias = tf.concat([tf.cast(cls.bias, dtype), tf.cast(box.bias, dtype)], axis=0)
        head = rpn_gradient.rpn_head_with_sparse_gradient(
            feature_map, tf.cast(shared.kernel, dtype), tf.cast(shared.bias, dtype),
            head_kernel, head_bias,
            conv_forward=lambda x, k, b: shared.forward_only(x, k, b, training=True))
        batch = tf.shape(feature_map)[0]
        # Channels grouped per anchor, as the functional graph's reshapes read them.
        logits = tf.reshape(head[..., :cls.filters], [batch, -1, 2])
        deltas = tf.reshape(head[..., cls.filters:], [batch, -1, 4])
        return [logits, tf.nn.softmax(logits), deltas]


def build_rpn_model(anchor_stride, anchors_per_location, depth, conv_channels=512,
                    sparse_gradient=True):
    """The shared RPN head as a ``keras.Model`` named ``rpn_model``.

    Args:
        anchor_stride: stride of anchors on the feature map (classic ``RPN_ANCHOR_STRIDE``,
            usually 1); the shared 3x3 convolution uses it as its stride.
        anchors_per_location: anchors per feature-map cell (``len(RPN_ANCHOR_RATIOS)``, usually 3).
        depth: channels of the feature maps (``TOP_DOWN_PYRAMID_SIZE``).
        conv_channels: channels of the shared 3x3 convolution (``RPN_CONV_CHANNELS``; 512 in
            the classic layout and its weights, 256 in torchvision's and detectron2's).
        sparse_gradient: in training, compute the gradient at the sampled anchors'
            positions only (:class:`RpnModel`); False for XLA-compiled steps.
    Returns:
        :class:`RpnModel` with input ``input_rpn_feature_map`` ``[B, h, w, depth]`` (any h, w)
        and outputs ``[rpn_class_logits [B, A_l, 2], rpn_probs [B, A_l, 2] (softmax, index 1
        = foreground), rpn_bbox [B, A_l, 4] (dy, dx, log dh, log dw), still scaled by
        RPN_BBOX_STD_DEV]`` with
        ``A_l = ceil(h / anchor_stride) * ceil(w / anchor_stride) * anchors_per_location``.
    """
    for arg, value in (("anchor_stride", anchor_stride),
                       ("anchors_per_location", anchors_per_location), ("depth", depth),
                       ("conv_channels", conv_channels)):
        if int(value) != value or value < 1:
            raise ValueError(f"build_rpn_model: {arg} must be a positive int, got {value!r}")
    anchors_per_location = int(anchors_per_location)

    feature_map = keras.Input(shape=(None, None, int(depth)), name="input_rpn_feature_map")
    shared = FeatureConv2D(int(conv_channels), (3, 3), padding="same", activation="relu",
                           strides=int(anchor_stride), name="rpn_conv_shared")(feature_map)

    # [B, h, w, 2*a] -> [B, h*w*a, 2]: channels are grouped per anchor (a0: bg, fg; a1: ...),
    # so a row-major reshape yields the (h, w, anchor) order of the anchors.
    x = FeatureConv2D(2 * anchors_per_location, (1, 1), padding="valid", activation="linear",
                      name="rpn_class_raw")(shared)
    rpn_class_logits = layers.Reshape((-1, 2), name="rpn_class_logits_flat")(x)
    rpn_probs = layers.Activation("softmax", name="rpn_class_xxx")(rpn_class_logits)

    x = FeatureConv2D(4 * anchors_per_location, (1, 1), padding="valid", activation="linear",
                      name="rpn_bbox_pred")(shared)
    rpn_bbox = layers.Reshape((-1, 4), name="rpn_bbox_flat")(x)

    return RpnModel(feature_map, [rpn_class_logits, rpn_probs, rpn_bbox], name="rpn_model",
                    sparse_gradient=sparse_gradient)


def rpn_graph(feature_maps, rpn_model):
    """Apply the shared RPN model to every pyramid level and concatenate over anchors.

    Args:
        feature_maps: ``[P2, P3, P4, P5, P6]`` (any number of levels, finest first), each
            ``[B, h_l, w_l, depth]`` float32.
        rpn_model: the model from :func:`build_rpn_model`.
    Returns:
        ``[rpn_class_logits [B, A, 2], rpn_class [B, A, 2] (softmax probabilities),
        rpn_bbox [B, A, 4]]``, A = sum of the levels' A_l; the output layers are named
        ``rpn_class_logits``, ``rpn_class`` and ``rpn_bbox``.
    """
    if not feature_maps:
        raise ValueError("rpn_graph: feature_maps is empty; pass the pyramid levels P2..P6")
    per_level = [rpn_model(p) for p in feature_maps]
    names = ("rpn_class_logits", "rpn_class", "rpn_bbox")
    outputs = []
    for index, name in enumerate(names):
        outputs.append(layers.Concatenate(axis=1, name=name)([lvl[index] for lvl in per_level]))
    return outputs
