"""ResNet-50 / ResNet-101 backbone with the classic layer names (Keras 3 functional API).

Layer names and weights equal the classic ``mrcnn`` model (and the Keras ResNet50 ImageNet
file it was initialised from): ``conv1``, ``bn_conv1``, ``res{S}{b}_branch2{a,b,c}``,
``res{S}{b}_branch1``, ``bn{S}{b}_branch...``, block outputs ``res{S}{b}_out``. All convolutions
carry biases. Stage 4 identity blocks are lettered ``b, c, ...`` (``b..f`` for ResNet-50,
``b..w`` for ResNet-101), as the classic code did.
"""
from keras import layers

from mrcnn.model.feature_conv import FeatureConv2D
from mrcnn.model.folded_norm import conv_then_norm
from mrcnn.model.layers import BN_MOMENTUM, BatchNorm

__all__ = ["ARCHITECTURES", "resnet_graph", "build_backbone", "identity_block", "conv_block"]

#: Identity blocks after the conv block, per stage 2..5.
ARCHITECTURES = {
    "resnet50": (2, 3, 5, 2),
    "resnet101": (2, 3, 22, 2),
}


def _conv_bn(x, filters, kernel_size, conv_name, bn_name, train_bn, bn_momentum, **conv_args):
    """``BatchNorm(FeatureConv2D(x))``, the two linked so that the BatchNorm can be folded into
    the convolution where it uses its moving statistics (:mod:`mrcnn.model.folded_norm`, off
    by default)."""
    return conv_then_norm(
        x, FeatureConv2D(filters, kernel_size, name=conv_name, **conv_args),
        BatchNorm(train_bn=train_bn, momentum=bn_momentum, name=bn_name))


def identity_block(input_tensor, kernel_size, filters, stage, block, use_bias=True, train_bn=None,
                   bn_momentum=BN_MOMENTUM):
    """Bottleneck block whose shortcut is the input itself (same shape in and out).

    Args:
        input_tensor: ``[B, H, W, filters[2]]`` float32.
        kernel_size: size of the middle convolution.
        filters: ``(f1, f2, f3)`` channels of the 1x1, kxk and 1x1 convolutions.
        stage, block: name parts, e.g. ``4`` and ``"b"`` give ``res4b_branch2a`` ... ``res4b_out``.
        train_bn: see :class:`~mrcnn.model.layers.BatchNorm`.
        bn_momentum: moving-average momentum of the BatchNorm layers (``BATCH_NORM_MOMENTUM``).
    Returns:
        ``[B, H, W, f3]``.
    """
    f1, f2, f3 = filters
    conv, bn = f"res{stage}{block}_branch", f"bn{stage}{block}_branch"
    norm = dict(train_bn=train_bn, bn_momentum=bn_momentum, use_bias=use_bias)
    x = _conv_bn(input_tensor, f1, (1, 1), conv + "2a", bn + "2a", **norm)
    x = layers.Activation("relu")(x)
    x = _conv_bn(x, f2, (kernel_size, kernel_size), conv + "2b", bn + "2b", padding="same",
                 **norm)
    x = layers.Activation("relu")(x)
    x = _conv_bn(x, f3, (1, 1), conv + "2c", bn + "2c", **norm)
    x = layers.Add()([x, input_tensor])
    return layers.Activation("relu", name=f"res{stage}{block}_out")(x)


def conv_block(input_tensor, kernel_size, filters, stage, block, strides=(2, 2), use_bias=True,
               train_bn=None, bn_momentum=BN_MOMENTUM):
    """Bottleneck block with a 1x1 projection shortcut (``res{S}{b}_branch1``).

    Args:
        input_tensor: ``[B, H, W, C]`` float32.
        strides: stride of the first 1x1 convolution and of the shortcut (1 in stage 2, else 2).
        Other arguments as :func:`identity_block`.
    Returns:
        ``[B, ceil(H / s), ceil(W / s), f3]``.
    """
    f1, f2, f3 = filters
    conv, bn = f"res{stage}{block}_branch", f"bn{stage}{block}_branch"
    norm = dict(train_bn=train_bn, bn_momentum=bn_momentum, use_bias=use_bias)
    x = _conv_bn(input_tensor, f1, (1, 1), conv + "2a", bn + "2a", strides=strides, **norm)
    x = layers.Activation("relu")(x)
    x = _conv_bn(x, f2, (kernel_size, kernel_size), conv + "2b", bn + "2b", padding="same",
                 **norm)
    x = layers.Activation("relu")(x)
    x = _conv_bn(x, f3, (1, 1), conv + "2c", bn + "2c", **norm)
    shortcut = _conv_bn(input_tensor, f3, (1, 1), conv + "1", bn + "1", strides=strides, **norm)
    x = layers.Add()([x, shortcut])
    return layers.Activation("relu", name=f"res{stage}{block}_out")(x)


def resnet_graph(input_image, architecture, stage5=True, train_bn=None, bn_momentum=BN_MOMENTUM):
    """Build the ResNet feature extractor on ``input_image``.

    Args:
        input_image: ``[B, H, W, 3]`` float32 molded image (mean-subtracted RGB); H and W
            multiples of 64 when the FPN follows (see :func:`mrcnn.model.fpn.fpn_graph`).
        architecture: ``"resnet50"`` or ``"resnet101"``.
        stage5: build stage 5 (C5); when False, C5 is None.
        train_bn: the classic ``TRAIN_BN`` (see :class:`~mrcnn.model.layers.BatchNorm`).
        bn_momentum: BatchNorm moving-average momentum (``BATCH_NORM_MOMENTUM``).
    Returns:
        ``[C1, C2, C3, C4, C5]``: feature maps of strides 4, 4, 8, 16, 32 with 64, 256, 512,
        1024, 2048 channels (C1 is the max-pooled stem output, stride 4, 64 channels).
    Raises:
        ValueError: unknown ``architecture``.
    """
    if not isinstance(architecture, str) or architecture not in ARCHITECTURES:
        raise ValueError(
            f"resnet_graph: architecture must be one of {sorted(ARCHITECTURES)}, "
            f"got {architecture!r}"
        )
    n2, n3, n4, n5 = ARCHITECTURES[architecture]

    # Stage 1
    x = layers.ZeroPadding2D((3, 3))(input_image)
    x = _conv_bn(x, 64, (7, 7), "conv1", "bn_conv1", train_bn, bn_momentum, strides=(2, 2),
                 use_bias=True)
    x = layers.Activation("relu")(x)
    c1 = x = layers.MaxPooling2D((3, 3), strides=(2, 2), padding="same")(x)

    def stage(x, stage_id, filters, n_identity, strides):
        x = conv_block(x, 3, filters, stage=stage_id, block="a", strides=strides,
                       train_bn=train_bn, bn_momentum=bn_momentum)
        for i in range(n_identity):
            # Blocks after "a" are lettered b, c, ... (chr(98) == "b"), up to "w" for ResNet-101.
            x = identity_block(x, 3, filters, stage=stage_id, block=chr(98 + i),
                               train_bn=train_bn, bn_momentum=bn_momentum)
        return x

    c2 = x = stage(x, 2, (64, 64, 256), n2, strides=(1, 1))
    c3 = x = stage(x, 3, (128, 128, 512), n3, strides=(2, 2))
    c4 = x = stage(x, 4, (256, 256, 1024), n4, strides=(2, 2))
    c5 = stage(x, 5, (512, 512, 2048), n5, strides=(2, 2)) if stage5 else None
    return [c1, c2, c3, c4, c5]


def build_backbone(input_image, backbone, train_bn=None, bn_momentum=BN_MOMENTUM):
    """C2..C5 from a named ResNet or from a user callable (the classic ``config.BACKBONE``).

    Args:
        input_image: ``[B, H, W, 3]`` float32 molded image.
        backbone: ``"resnet50"``, ``"resnet101"``, or a callable
            ``backbone(input_image, stage5=True, train_bn=train_bn) -> [C1, C2, C3, C4, C5]``
            (C1 is ignored; the user must also set ``COMPUTE_BACKBONE_SHAPE`` in the Config,
            as in the classic code).
        train_bn: the classic ``TRAIN_BN``.
        bn_momentum: BatchNorm momentum of the named ResNets (a callable builds its own layers).
    Returns:
        ``[C2, C3, C4, C5]`` (strides 4, 8, 16, 32 for the ResNets).
    Raises:
        ValueError: unknown backbone name, or a callable that does not return 5 feature maps.
    """
    if callable(backbone):
        outputs = backbone(input_image, stage5=True, train_bn=train_bn)
        if not isinstance(outputs, (list, tuple)) or len(outputs) != 5:
            raise ValueError(
                "build_backbone: a callable backbone must return [C1, C2, C3, C4, C5], got "
                f"{type(outputs).__name__} of length "
                f"{len(outputs) if isinstance(outputs, (list, tuple)) else 'n/a'}"
            )
        _, c2, c3, c4, c5 = outputs
    else:
        if not isinstance(backbone, str) or backbone not in ARCHITECTURES:
            raise ValueError(
                f"build_backbone: backbone must be one of {sorted(ARCHITECTURES)} or a callable, "
                f"got {backbone!r}"
            )
        _, c2, c3, c4, c5 = resnet_graph(input_image, backbone, stage5=True, train_bn=train_bn,
                                       bn_momentum=bn_momentum)
    return [c2, c3, c4, c5]

