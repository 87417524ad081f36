"""Feature Pyramid Network top-down path with the classic layer names (Keras 3 functional API).

Layers: lateral 1x1 convolutions ``fpn_c5p5``, ``fpn_c4p4``, ``fpn_c3p3``, ``fpn_c2p2``;
nearest-neighbour upsampling ``fpn_p5upsampled``, ``fpn_p4upsampled``, ``fpn_p3upsampled``;
merges ``fpn_p4add``, ``fpn_p3add``, ``fpn_p2add``; 3x3 output convolutions ``fpn_p2`` ..
``fpn_p5``; and ``fpn_p6``, a stride-2 subsampling of P5 (used by the RPN only).
"""
from keras import layers

from mrcnn.model.feature_conv import FeatureConv2D

__all__ = ["fpn_graph"]


def fpn_graph(C2, C3, C4, C5, pyramid_size=256):
    """Build P2..P6 from the backbone maps C2..C5.

    Args:
        C2, C3, C4, C5: ``[B, H/s, W/s, C]`` float32 backbone maps of strides s = 4, 8, 16, 32.
        pyramid_size: channels of every pyramid level (the classic ``TOP_DOWN_PYRAMID_SIZE``).
    Returns:
        ``[P2, P3, P4, P5, P6]``, each ``[B, H/s, W/s, pyramid_size]`` for s = 4, 8, 16, 32, 64.

    Each level is the 2x upsampled coarser level added to the lateral projection, so every map
    must be exactly twice the size of the next coarser one: the image height and width must be
    multiples of 64, as in the classic model (``Config`` validates ``IMAGE_*_DIM``). Other sizes
    fail at run time with a shape mismatch in ``fpn_p*add``.
    """
    if int(pyramid_size) != pyramid_size or pyramid_size < 1:
        raise ValueError(f"fpn_graph: pyramid_size must be a positive int, got {pyramid_size!r}")
    pyramid_size = int(pyramid_size)

    P5 = FeatureConv2D(pyramid_size, (1, 1), name="fpn_c5p5")(C5)
    P4 = layers.Add(name="fpn_p4add")([
        layers.UpSampling2D(size=(2, 2), name="fpn_p5upsampled")(P5),
        FeatureConv2D(pyramid_size, (1, 1), name="fpn_c4p4")(C4),
    ])
    P3 = layers.Add(name="fpn_p3add")([
        layers.UpSampling2D(size=(2, 2), name="fpn_p4upsampled")(P4),
        FeatureConv2D(pyramid_size, (1, 1), name="fpn_c3p3")(C3),
    ])
    P2 = layers.Add(name="fpn_p2add")([
        layers.UpSampling2D(size=(2, 2), name="fpn_p3upsampled")(P3),
        FeatureConv2D(pyramid_size, (1, 1), name="fpn_c2p2")(C2),
    ])
    # 3x3 convolutions reduce the aliasing of the upsampling.
    P2 = FeatureConv2D(pyramid_size, (3, 3), padding="same", name="fpn_p2")(P2)
    P3 = FeatureConv2D(pyramid_size, (3, 3), padding="same", name="fpn_p3")(P3)
    P4 = FeatureConv2D(pyramid_size, (3, 3), padding="same", name="fpn_p4")(P4)
    P5 = FeatureConv2D(pyramid_size, (3, 3), padding="same", name="fpn_p5")(P5)
    # P6 only feeds the RPN (the 5th anchor scale); it is never used by ROI Align.
    P6 = layers.MaxPooling2D(pool_size=(1, 1), strides=2, name="fpn_p6")(P5)
    return [P2, P3, P4, P5, P6]
