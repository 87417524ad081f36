"""mrcnn: Mask R-CNN instance segmentation for TensorFlow 2 and Keras 3.

Keeps the public surface of the classic Keras ``mrcnn`` package
(``from mrcnn.config import Config``, ``from mrcnn import utils, visualize``,
``import mrcnn.model as modellib``) on top of a batched, vectorized Keras 3 graph.
"""

__version__ = "0.1.0"
