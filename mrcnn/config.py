"""Mask R-CNN configuration: the classic ``Config`` class.

Users subclass :class:`Config` and override class attributes, exactly as with the
classic Keras ``mrcnn`` package::

    class ShapesConfig(Config):
        NAME = "shapes"
        NUM_CLASSES = 1 + 3
        IMAGE_MIN_DIM = 128
        IMAGE_MAX_DIM = 128

    config = ShapesConfig()
    config.display()

``__init__`` computes the derived values (``BATCH_SIZE``, ``IMAGE_SHAPE``,
``IMAGE_META_SIZE``) and validates the attributes, raising ``ValueError`` with the
field name, its value and what is allowed. The model factory (``MaskRCNN``), the input
pipeline's classic entry points and the training-time evaluator read a ``Config``
(``docs/design.md``); layers and ops take explicit arguments.
"""
import inspect
import numbers
import re
import types

import numpy as np

__all__ = ["Config"]

# image_id (1) + original_image_shape (3) + image_shape (3) + window (4) + scale (1);
# mirrored by mrcnn.data.image_meta.IMAGE_META_FIXED_SIZE (not imported, to keep this
# module free of package imports).
_IMAGE_META_FIXED_SIZE = 1 + 3 + 3 + 4 + 1

_RESIZE_MODES = ("none", "square", "pad64", "crop")
_BACKBONES = ("resnet50", "resnet101")
# mirrored by mrcnn.model.precision.POLICIES
_POLICIES = (None, "float32", "mixed_float16", "mixed_bfloat16")
_LOSS_NAMES = ("rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss",
               "mrcnn_bbox_loss", "mrcnn_mask_loss")
_POSITIVE_COUNTS = (
    "GPU_COUNT", "IMAGES_PER_GPU", "NUM_CLASSES", "STEPS_PER_EPOCH",
    "VALIDATION_STEPS", "TRAIN_ROIS_PER_IMAGE", "RPN_TRAIN_ANCHORS_PER_IMAGE",
    "POST_NMS_ROIS_TRAINING", "POST_NMS_ROIS_INFERENCE", "PRE_NMS_LIMIT",
    "DETECTION_MAX_INSTANCES", "MAX_GT_INSTANCES", "IMAGE_CHANNEL_COUNT",
)
# The backbone downsamples by 2**6 (P6), so molded image sides must divide by 64.
_SIDE_MULTIPLE = 2 ** 6
# NAME becomes a folder and a file-name part; find_last() parses it back with [\w-]+.
_NAME_RE = re.compile(r"[\w-]+")
# (field, low, high, low open, high open) of the real-valued fields.
_REAL_RANGES = (
    ("LEARNING_RATE", 0.0, 1.0, True, False),
    ("LEARNING_MOMENTUM", 0.0, 1.0, False, True),
    ("WEIGHT_DECAY", 0.0, 1.0, False, True),
    ("RPN_NMS_THRESHOLD", 0.0, 1.0, True, False),
    ("DETECTION_NMS_THRESHOLD", 0.0, 1.0, True, False),
)


class Config:
    """Base configuration; subclass it and override the class attributes.

    Defaults are those of the classic package. Derived (set by ``__init__``):

    - ``BATCH_SIZE`` (int): ``IMAGES_PER_GPU * GPU_COUNT``.
    - ``IMAGE_SHAPE`` (np.ndarray int, ``[3]``): ``[IMAGE_MAX_DIM, IMAGE_MAX_DIM,
      IMAGE_CHANNEL_COUNT]``; in "crop" mode ``[IMAGE_MIN_DIM, IMAGE_MIN_DIM, C]``.
    - ``IMAGE_META_SIZE`` (int): ``12 + NUM_CLASSES``, the length of one image_meta
      row (see ``mrcnn.data.image_meta``).

    Derived values are computed once; after changing attributes on an instance,
    call :meth:`validate` (and recompute derived values yourself if needed).
    """

    # Name of the configuration, used in the log directory and checkpoint names.
    # None is accepted (quick tests); MaskRCNN needs it for file names.
    NAME = None

    # Images per GPU; 12 GB of GPU memory fits about two 1024x1024 images.
    GPU_COUNT = 1
    IMAGES_PER_GPU = 2

    # Steps per epoch (not tied to the dataset size), and validation steps at the
    # end of each epoch.
    STEPS_PER_EPOCH = 1000
    VALIDATION_STEPS = 50

    # "resnet50", "resnet101", or a callable graph builder; a callable needs
    # COMPUTE_BACKBONE_SHAPE, a callable(image_shape) -> [N, (height, width)].
    BACKBONE = "resnet101"
    COMPUTE_BACKBONE_SHAPE = None

    # Strides of the pyramid levels P2..P6 (pixels).
    BACKBONE_STRIDES = [4, 8, 16, 32, 64]

    # Width of the fully connected layers of the classifier head.
    FPN_CLASSIF_FC_LAYERS_SIZE = 1024

    # Channels of the top-down feature pyramid.
    TOP_DOWN_PYRAMID_SIZE = 256

    # Number of classes, including the background.
    NUM_CLASSES = 1

    # Anchor side lengths in pixels, one per pyramid level.
    RPN_ANCHOR_SCALES = (32, 64, 128, 256, 512)

    # Anchor width / height ratios.
    RPN_ANCHOR_RATIOS = [0.5, 1, 2]

    # 1: an anchor at every feature-map cell; 2: every other cell, and so on.
    RPN_ANCHOR_STRIDE = 1

    # Channels of the RPN's shared 3x3 convolution (layer rpn_conv_shared). 512 is the classic
    # layout and the COCO weights'; 256 (as torchvision and detectron2) halves the RPN's
    # arithmetic, a third of inference at 1024 x 1024, for models trained from scratch.
    RPN_CONV_CHANNELS = 512

    # NMS threshold on RPN proposals.
    RPN_NMS_THRESHOLD = 0.7

    # Anchors sampled per image for RPN training.
    RPN_TRAIN_ANCHORS_PER_IMAGE = 256

    # Top anchors (by RPN score) kept before NMS.
    PRE_NMS_LIMIT = 6000

    # ROIs kept after NMS, in training and inference.
    POST_NMS_ROIS_TRAINING = 2000
    POST_NMS_ROIS_INFERENCE = 1000

    # Store instance masks cropped to their box and resized to MINI_MASK_SHAPE.
    USE_MINI_MASK = True
    MINI_MASK_SHAPE = (56, 56)  # (height, width)

    # "none": no resizing or padding; "square": resize so the short side is
    # IMAGE_MIN_DIM (long side at most IMAGE_MAX_DIM) and pad to
    # [IMAGE_MAX_DIM, IMAGE_MAX_DIM]; "pad64": resize by IMAGE_MIN_DIM/IMAGE_MIN_SCALE
    # and pad each side to a multiple of 64; "crop": random crop of
    # [IMAGE_MIN_DIM, IMAGE_MIN_DIM] (training only).
    IMAGE_RESIZE_MODE = "square"
    IMAGE_MIN_DIM = 800
    IMAGE_MAX_DIM = 1024
    # Minimum upscaling ratio, applied after IMAGE_MIN_DIM (0: none).
    IMAGE_MIN_SCALE = 0
    # 3 for RGB; other counts need a backbone whose first layer is trained for them.
    IMAGE_CHANNEL_COUNT = 3

    # Per-channel mean subtracted from images (RGB).
    MEAN_PIXEL = np.array([123.7, 116.8, 103.9])

    # ROIs per image fed to the classifier and mask heads in training.
    TRAIN_ROIS_PER_IMAGE = 200

    # Fraction of positive ROIs among the training ROIs.
    ROI_POSITIVE_RATIO = 0.33

    # Not classic: add the GT boxes to the proposals the training ROIs are sampled from, so the
    # heads get positives even while the RPN is untrained (detectron2/torchvision do this). False
    # keeps the classic sampling; the from-scratch CPU configs of the samples set it True.
    TRAIN_ROIS_INCLUDE_GT = False

    # ROI Align output sizes of the classifier and mask heads.
    POOL_SIZE = 7
    MASK_POOL_SIZE = 14

    # Output mask size; the mask head produces 2 * MASK_POOL_SIZE.
    MASK_SHAPE = [28, 28]

    # Ground-truth instances kept per image.
    MAX_GT_INSTANCES = 100

    # Standard deviations that box deltas are divided by (RPN and final heads).
    RPN_BBOX_STD_DEV = np.array([0.1, 0.1, 0.2, 0.2])
    BBOX_STD_DEV = np.array([0.1, 0.1, 0.2, 0.2])

    # Final detections per image.
    DETECTION_MAX_INSTANCES = 100

    # Detections with a lower class score are dropped.
    DETECTION_MIN_CONFIDENCE = 0.7

    # Per-class NMS threshold of the final detections.
    DETECTION_NMS_THRESHOLD = 0.3

    # SGD learning rate and momentum.
    LEARNING_RATE = 0.001
    LEARNING_MOMENTUM = 0.9

    # L2 weight decay on trainable weights except BatchNorm gamma/beta.
    WEIGHT_DECAY = 0.0001

    # Weights of the five losses.
    LOSS_WEIGHTS = {
        "rpn_class_loss": 1.,
        "rpn_bbox_loss": 1.,
        "mrcnn_class_loss": 1.,
        "mrcnn_bbox_loss": 1.,
        "mrcnn_mask_loss": 1.,
    }

    # Not classic: per-class weights of the classifier loss (mrcnn_class_loss), None = off
    # (every ROI counts 1, classic). A list of NUM_CLASSES non-negative numbers indexed by
    # internal class id, background first, e.g. [1, 1, 5] to count ROIs of a rare class 2 five
    # times; the loss is then the weighted mean (divided by the sum of the ROIs' weights, as
    # torch's CrossEntropyLoss(weight=...)). Helps the recall of rare classes.
    CLASS_WEIGHTS = None

    # True: ROIs come from the RPN; False: from an input (to debug the heads).
    USE_RPN_ROIS = True

    # None: train BatchNorm layers; False: frozen (inference mode, the default
    # because small batches make batch statistics noisy); True: always training mode.
    TRAIN_BN = False

    # Not classic: False also freezes BatchNorm's gamma and beta (only with TRAIN_BN = False),
    # as torchvision's and detectron2's FrozenBatchNorm2d do; the classic model trains them.
    # Their gradient, sum(dy * x), is what keeps each convolution's output alive for the
    # backward pass, so the step needs less memory frozen (docs/benchmarks.md, issue 9).
    TRAIN_BN_AFFINE = True

    # Not classic: momentum of the BatchNorm moving averages. 0.99 is the Keras 2 default the
    # classic model used; training from scratch with trainable BatchNorm wants a shorter memory
    # (e.g. 0.9), or inference-mode statistics lag behind the fast-changing weights.
    BATCH_NORM_MOMENTUM = 0.99

    # Global gradient norm clipping.
    GRADIENT_CLIP_NORM = 5.0

    # Not classic (docs/distributed.md): Keras dtype policy of the model, None (the Keras global
    # policy), "float32", "mixed_float16" (with loss scaling) or "mixed_bfloat16".
    MIXED_PRECISION = None

    # Not classic: with TRAIN_BN = None, normalise with the moments of the global batch across
    # tf.distribute replicas (synchronised BatchNorm) instead of each replica's own images.
    SYNC_BATCH_NORM = False

    # Not classic: compile the training step with XLA (jit_compile=True), using XLA-compatible
    # RoIAlign and NMS; what a TPU needs.
    XLA = False

    def __init__(self):
        self._unbind_callables()
        self.validate()
        self.BATCH_SIZE = self.IMAGES_PER_GPU * self.GPU_COUNT
        side = self.IMAGE_MIN_DIM if self.IMAGE_RESIZE_MODE == "crop" else self.IMAGE_MAX_DIM
        self.IMAGE_SHAPE = np.array([side, side, self.IMAGE_CHANNEL_COUNT])
        self.IMAGE_META_SIZE = _IMAGE_META_FIXED_SIZE + self.NUM_CLASSES

    def _unbind_callables(self):
        # A plain function written in a subclass body (``BACKBONE = my_resnet``)
        # would otherwise come back as a bound method and get the config as its
        # first argument; store the raw function on the instance instead.
        for name in ("BACKBONE", "COMPUTE_BACKBONE_SHAPE"):
            raw = inspect.getattr_static(self, name, None)
            if isinstance(raw, types.FunctionType):
                setattr(self, name, raw)

    def validate(self):
        """Check every attribute; raise ``ValueError`` naming the first bad one.

        The message holds the field name, its value and what is allowed.
        """
        for name in _POSITIVE_COUNTS:
            value = getattr(self, name)
            if not _is_int(value) or value <= 0:
                raise ValueError(f"Config.{name} must be a positive integer, got {value!r}")

        mode = self.IMAGE_RESIZE_MODE
        if mode not in _RESIZE_MODES:
            raise ValueError(f"Config.IMAGE_RESIZE_MODE must be one of {_RESIZE_MODES}, "
                             f"got {mode!r}")
        if mode != "none":
            # "none" feeds images at their own size, so the dims are unused.
            self._check_side("IMAGE_MAX_DIM", f"in IMAGE_RESIZE_MODE {mode!r}")
            if mode in ("crop", "pad64"):
                # crop: IMAGE_SHAPE is [MIN, MIN]; pad64: the classic resize asserts it.
                self._check_side("IMAGE_MIN_DIM", f"in IMAGE_RESIZE_MODE {mode!r}")

        backbone = self.BACKBONE
        if callable(backbone):
            if not callable(self.COMPUTE_BACKBONE_SHAPE):
                raise ValueError(
                    "Config.COMPUTE_BACKBONE_SHAPE must be a callable(image_shape) -> "
                    "feature map shapes when BACKBONE is a callable, got "
                    f"{self.COMPUTE_BACKBONE_SHAPE!r}")
        elif backbone not in _BACKBONES:
            raise ValueError(f"Config.BACKBONE must be one of {_BACKBONES} or a callable, "
                             f"got {backbone!r}")

        if len(self.RPN_ANCHOR_SCALES) != len(self.BACKBONE_STRIDES):
            raise ValueError(
                f"Config.RPN_ANCHOR_SCALES must have one scale per pyramid level, i.e. "
                f"len(BACKBONE_STRIDES) = {len(self.BACKBONE_STRIDES)} entries, got "
                f"{len(self.RPN_ANCHOR_SCALES)}: {self.RPN_ANCHOR_SCALES!r}")

        if np.ndim(self.MEAN_PIXEL) != 1 or len(self.MEAN_PIXEL) != self.IMAGE_CHANNEL_COUNT:
            raise ValueError(
                f"Config.MEAN_PIXEL must have IMAGE_CHANNEL_COUNT = {self.IMAGE_CHANNEL_COUNT} "
                f"values, got {self.MEAN_PIXEL!r}")

        ratio = self.ROI_POSITIVE_RATIO
        if not _is_real(ratio) or not 0 < ratio <= 1:
            raise ValueError(f"Config.ROI_POSITIVE_RATIO must be in (0, 1], got {ratio!r}")
        confidence = self.DETECTION_MIN_CONFIDENCE
        if not _is_real(confidence) or not 0 <= confidence <= 1:
            raise ValueError(f"Config.DETECTION_MIN_CONFIDENCE must be in [0, 1], "
                             f"got {confidence!r}")

        momentum = self.BATCH_NORM_MOMENTUM
        if not _is_real(momentum) or not 0.0 < momentum < 1.0:
            raise ValueError(f"Config.BATCH_NORM_MOMENTUM must be a number in (0, 1), "
                             f"got {momentum!r}")
        if not isinstance(self.TRAIN_ROIS_INCLUDE_GT, (bool, np.bool_)):
            raise ValueError(f"Config.TRAIN_ROIS_INCLUDE_GT must be True or False, "
                             f"got {self.TRAIN_ROIS_INCLUDE_GT!r}")
        # Identity, not equality: 0 and 1 must not pass for False and True.
        if not any(self.TRAIN_BN is allowed for allowed in (None, True, False)):
            raise ValueError(f"Config.TRAIN_BN must be None, True or False, "
                             f"got {self.TRAIN_BN!r}")

        class_weights = self.CLASS_WEIGHTS
        if class_weights is not None and (
                isinstance(class_weights, (str, dict)) or np.ndim(class_weights) != 1
                or len(class_weights) != self.NUM_CLASSES
                or not all(_is_real(w) and w >= 0 for w in class_weights)
                or not any(w > 0 for w in class_weights)):
            raise ValueError(f"Config.CLASS_WEIGHTS must be None or a list of NUM_CLASSES="
                             f"{self.NUM_CLASSES} non-negative numbers (background first, not "
                             f"all 0), got {class_weights!r}")
        if self.MIXED_PRECISION not in _POLICIES:
            raise ValueError(f"Config.MIXED_PRECISION must be one of {_POLICIES}, "
                             f"got {self.MIXED_PRECISION!r}")
        for name in ("XLA", "SYNC_BATCH_NORM", "TRAIN_BN_AFFINE"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"Config.{name} must be True or False, "
                                 f"got {getattr(self, name)!r}")
        if not self.TRAIN_BN_AFFINE and self.TRAIN_BN is not False:
            # Keras 3 runs a BatchNormalization with trainable=False in inference mode, so
            # frozen gamma/beta with batch statistics cannot be had.
            raise ValueError(f"Config.TRAIN_BN_AFFINE = False needs TRAIN_BN = False, got "
                             f"TRAIN_BN = {self.TRAIN_BN!r}")

        weights = self.LOSS_WEIGHTS
        if not isinstance(weights, dict) or set(weights) != set(_LOSS_NAMES):
            raise ValueError(f"Config.LOSS_WEIGHTS must be a dict with exactly the keys "
                             f"{_LOSS_NAMES}, got {weights!r}")

        for name, length in (("RPN_BBOX_STD_DEV", 4), ("BBOX_STD_DEV", 4),
                             ("MINI_MASK_SHAPE", 2), ("MASK_SHAPE", 2)):
            value = getattr(self, name)
            if np.ndim(value) != 1 or len(value) != length:
                raise ValueError(f"Config.{name} must have {length} values, got {value!r}")
        self._validate_ranges()

    def _validate_ranges(self):
        """Types and ranges of the optimiser, NMS, anchor, mask and naming fields.

        All of these used to pass Config and fail later (inside Keras, at the first step or at
        the first checkpoint), or be accepted as nonsense; see docs/reliability.md.
        """
        name = self.NAME
        if name is not None and (not isinstance(name, str) or not _NAME_RE.fullmatch(name)):
            raise ValueError(
                f"Config.NAME must be None or a folder-name-safe string of letters, digits, '_' "
                f"and '-' (it names the run folder and the checkpoint files), got {name!r}")
        for field, low, high, low_open, high_open in _REAL_RANGES:
            value = getattr(self, field)
            if not _is_real(value) or not np.isfinite(value) or not (
                    (low < value if low_open else low <= value)
                    and (value < high if high_open else value <= high)):
                interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
                raise ValueError(f"Config.{field} must be a number in {interval}, got {value!r}")
        clip = self.GRADIENT_CLIP_NORM
        if clip is not None and (not _is_real(clip) or not np.isfinite(clip) or clip <= 0):
            raise ValueError(f"Config.GRADIENT_CLIP_NORM must be None or a number > 0, "
                             f"got {clip!r}")
        for field in ("RPN_ANCHOR_RATIOS", "RPN_ANCHOR_SCALES", "BACKBONE_STRIDES",
                      "RPN_BBOX_STD_DEV", "BBOX_STD_DEV"):
            value = getattr(self, field)
            values = list(np.ravel(value)) if np.ndim(value) else [value]
            if not values or not all(_is_real(v) and np.isfinite(v) and v > 0 for v in values):
                raise ValueError(f"Config.{field} must be a non-empty sequence of numbers > 0, "
                                 f"got {value!r}")
        for field in ("RPN_ANCHOR_STRIDE", "RPN_CONV_CHANNELS", "POOL_SIZE", "MASK_POOL_SIZE"):
            value = getattr(self, field)
            if not _is_int(value) or value <= 0:
                raise ValueError(f"Config.{field} must be a positive integer, got {value!r}")
        for field in ("MASK_SHAPE", "MINI_MASK_SHAPE"):
            value = getattr(self, field)
            if not all(_is_int(v) and v > 0 for v in value):
                raise ValueError(f"Config.{field} must be two positive integers, got {value!r}")
        # The default mask head upsamples its MASK_POOL_SIZE features once (x2).
        if [int(v) for v in self.MASK_SHAPE] != [2 * self.MASK_POOL_SIZE] * 2:
            raise ValueError(
                f"Config.MASK_SHAPE must be [2 * MASK_POOL_SIZE, 2 * MASK_POOL_SIZE] = "
                f"{[2 * self.MASK_POOL_SIZE] * 2} with the default mask head (MASK_POOL_SIZE = "
                f"{self.MASK_POOL_SIZE}), got {self.MASK_SHAPE!r}")
        if self.IMAGE_MIN_SCALE is not None and (
                not _is_real(self.IMAGE_MIN_SCALE) or self.IMAGE_MIN_SCALE < 0):
            raise ValueError(f"Config.IMAGE_MIN_SCALE must be a number >= 0, "
                             f"got {self.IMAGE_MIN_SCALE!r}")
        for loss, weight in self.LOSS_WEIGHTS.items():
            if not _is_real(weight) or not np.isfinite(weight) or weight < 0:
                raise ValueError(f"Config.LOSS_WEIGHTS[{loss!r}] must be a number >= 0, "
                                 f"got {weight!r}")
        if not isinstance(self.USE_MINI_MASK, (bool, np.bool_)):
            raise ValueError(f"Config.USE_MINI_MASK must be True or False, "
                             f"got {self.USE_MINI_MASK!r}")
        if self.USE_RPN_ROIS is not True:
            raise ValueError(
                f"Config.USE_RPN_ROIS = {self.USE_RPN_ROIS!r} is not supported: train() feeds "
                "no 'input_roi' input (the classic random-ROI generator was not ported); only "
                "True (ROIs from the RPN) is allowed")

    def _check_side(self, name, why):
        value = getattr(self, name)
        if not _is_int(value) or value <= 0 or value % _SIDE_MULTIPLE:
            raise ValueError(
                f"Config.{name} must be a positive multiple of {_SIDE_MULTIPLE} (the image is "
                f"downsampled 6 times) {why}, got {value!r}")

    def _public_names(self):
        # Class attributes of the whole hierarchy plus instance attributes.
        return sorted(name for name in dir(self)
                      if not name.startswith("_") and name.isupper())

    def display(self):
        """Print ``Configurations:`` and one ``{name:30} {value}`` line per attribute.

        Lists every UPPERCASE attribute that is not callable, sorted by name (the
        classic format).
        """
        print("\nConfigurations:")
        for name in self._public_names():
            value = getattr(self, name)
            if not callable(value):
                print(f"{name:30} {value}")
        print("\n")

    def to_dict(self):
        """Return the UPPERCASE attributes as a plain, ``json.dumps``-able dict.

        NumPy arrays become lists, NumPy scalars Python numbers, tuples lists, and
        a callable (a custom BACKBONE or COMPUTE_BACKBONE_SHAPE) its
        ``"module.qualname"`` string.
        """
        return {name: _plain(getattr(self, name)) for name in self._public_names()}


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _plain(value):
    """Convert a config value to JSON-compatible Python types."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if callable(value):
        module = getattr(value, "__module__", None) or ""
        qualname = getattr(value, "__qualname__", None) or type(value).__qualname__
        return f"{module}.{qualname}" if module else qualname
    return value
