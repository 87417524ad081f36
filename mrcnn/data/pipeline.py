"""Training inputs: ``load_image_gt``, per-image training inputs, a parallel ``tf.data`` pipeline.

Three layers, each usable on its own:

* :func:`load_image_gt` - one image and its ground truth, resized (and augmented) as the network
  sees it (classic ``mrcnn.model.load_image_gt`` semantics).
* :func:`build_training_inputs` - the NumPy inputs of the training Keras model for one image,
  padded to fixed shapes (keys and shapes in :class:`TrainingInputs`).
* :func:`make_training_dataset` - a ``tf.data.Dataset`` of batches of those inputs, built in
  parallel, reproducible for a given ``seed``. :func:`data_generator` is the classic Python
  generator (same inputs, classic list order) for code that still calls it.

Coordinates: GT boxes are pixel ``(y1, x1, y2, x2)`` of the molded image (y2/x2 exclusive);
``input_anchors`` are normalized (see docs/design.md). Padding: GT lists are zero-padded at the end
to ``MAX_GT_INSTANCES`` (class id 0, box all zeros, mask all False).

Images without instances are kept by default and act as pure negatives for the RPN (every sampled
anchor negative) and the heads; ``skip_empty=True`` drops them as the classic generator did
(:func:`data_generator` skips them by default, like the classic one).

TensorFlow is imported inside the ``tf.data`` functions only.
"""
import logging
import os
import threading
import time

import numpy as np

from mrcnn.data.augment import make_augmenter
from mrcnn.data.image_meta import compose_image_meta, mold_image
from mrcnn.data.rpn_targets import build_rpn_targets
from mrcnn.data.transforms import resize_image, resize_mask
from mrcnn.data.validation import check_class_ids, check_dataset_image
from mrcnn.ops.anchors import compute_backbone_shapes, generate_pyramid_anchors
from mrcnn.ops.boxes import norm_boxes
from mrcnn.ops.masks import extract_bboxes, minimize_mask

__all__ = [
    "load_image_gt",
    "TrainingInputs",
    "build_training_inputs",
    "pyramid_anchors_for_config",
    "make_training_dataset",
    "data_generator",
    "measure_pipeline_throughput",
]

logger = logging.getLogger(__name__)


def _image_label(dataset, image_id):
    """'image 3 (source 'shapes', id 7, path '...')' for error messages."""
    try:
        info = dataset.image_info[int(image_id)]
        return (f"image {int(image_id)} (source {info.get('source')!r}, id {info.get('id')!r}, "
                f"path {info.get('path')!r})")
    except Exception:  # noqa: BLE001 - only used to decorate another error
        return f"image {image_id!r}"


def _checked_masks(dataset, image_id, image, mask, class_ids):
    """Validate load_mask's output against the image: [H, W, N] bool masks, [N] int32 ids."""
    mask = np.asarray(mask)
    class_ids = np.asarray(class_ids).reshape(-1)
    if mask.ndim == 3 and mask.shape[2] == 0:
        # The base Dataset returns [0, 0, 0] for "no instances".
        mask = np.zeros(image.shape[:2] + (0,), dtype=bool)
    if mask.ndim != 3:
        raise ValueError(f"load_mask of {_image_label(dataset, image_id)} returned masks of shape "
                         f"{mask.shape}; expected [H, W, N]")
    if mask.shape[:2] != image.shape[:2]:
        raise ValueError(
            f"load_mask of {_image_label(dataset, image_id)} returned masks of size "
            f"{mask.shape[0]}x{mask.shape[1]} but load_image returned an image of size "
            f"{image.shape[0]}x{image.shape[1]}; masks must have the image's height and width")
    if class_ids.shape[0] != mask.shape[2]:
        raise ValueError(f"load_mask of {_image_label(dataset, image_id)} returned "
                         f"{mask.shape[2]} masks but {class_ids.shape[0]} class ids")
    if class_ids.size and not np.issubdtype(class_ids.dtype, np.integer):
        if not np.all(class_ids == np.round(class_ids)):
            raise ValueError(f"load_mask of {_image_label(dataset, image_id)} returned "
                             f"non-integer class ids {class_ids.tolist()}")
    return mask.astype(bool, copy=False), class_ids.astype(np.int32)


def load_image_gt(dataset, config, image_id, augment=False, augmentation=None,
                  use_mini_mask=False, rng=None, no_augmentation_sources=None):
    """Load an image and its ground truth, resized (and augmented) for the network.

    Steps (classic order): ``load_image`` / ``load_mask``; ``resize_image`` with
    ``IMAGE_MIN_DIM``, ``IMAGE_MIN_SCALE``, ``IMAGE_MAX_DIM``, ``IMAGE_RESIZE_MODE`` and
    ``resize_mask`` alike; augmentation (unless the image's source is in
    ``no_augmentation_sources``); instances whose mask became empty (resize, crop, augmentation)
    are dropped; boxes from the masks; mini-masks; image_meta.

    Args:
        dataset: a prepared :class:`mrcnn.data.dataset.Dataset`.
        config: a :class:`mrcnn.config.Config`.
        image_id: internal image id.
        augment: classic, deprecated: flip the image left-right with probability 0.5 (after
            resizing, before ``augmentation``). Prefer ``augmentation``.
        augmentation: None, or what :func:`mrcnn.data.augment.make_augmenter` accepts
            (albumentations, imgaug, callable, Augmenter).
        use_mini_mask: False (the classic default: full-size masks), True (``MINI_MASK_SHAPE``
            mini-masks), or None to follow ``config.USE_MINI_MASK``. The training pipeline
            passes ``config.USE_MINI_MASK`` explicitly.
        rng: ``np.random.Generator`` for the random crop ("crop" mode) and augmentation seeding;
            None: a fresh unseeded one.
        no_augmentation_sources: iterable of source names whose images are not augmented.

    Returns:
        image: [h, w, 3] uint8, molded size (``config.IMAGE_SHAPE`` in "square" and "crop" modes).
        image_meta: [12 + NUM_CLASSES] float32 (see :mod:`mrcnn.data.image_meta`).
        class_ids: [N] int32 (negative for crowd regions, as ``load_mask`` returned them).
        bbox: [N, 4] int32 pixel boxes (y1, x1, y2, x2) of the molded image, y2/x2 exclusive.
        mask: [h, w, N] bool, or [mh, mw, N] bool mini-masks (``MINI_MASK_SHAPE``) when
            ``use_mini_mask``.

    Raises:
        ValueError: masks whose H, W differ from the image's, a class-id / mask count mismatch,
            or ``dataset.num_classes != config.NUM_CLASSES``; messages name the image id.
    """
    if rng is None:
        rng = np.random.default_rng()
    if use_mini_mask is None:
        use_mini_mask = bool(config.USE_MINI_MASK)
    num_classes = int(config.NUM_CLASSES)
    if dataset.num_classes != num_classes:
        raise ValueError(f"load_image_gt: dataset has {dataset.num_classes} classes (BG included) "
                         f"but config.NUM_CLASSES is {num_classes}; they must be equal")

    image = check_dataset_image(dataset, image_id, dataset.load_image(image_id),
                                _image_label(dataset, image_id), config.IMAGE_CHANNEL_COUNT)
    mask, class_ids = dataset.load_mask(image_id)
    mask, class_ids = _checked_masks(dataset, image_id, image, mask, class_ids)
    check_class_ids(class_ids, num_classes, _image_label(dataset, image_id))
    original_shape = image.shape

    image, window, scale, padding, crop = resize_image(
        image, min_dim=config.IMAGE_MIN_DIM, min_scale=config.IMAGE_MIN_SCALE,
        max_dim=config.IMAGE_MAX_DIM, mode=config.IMAGE_RESIZE_MODE, rng=rng)
    mask = resize_mask(mask, scale, padding, crop)

    source = dataset.image_info[int(image_id)]["source"]
    if augment:
        logger.warning("load_image_gt: 'augment' is deprecated; use 'augmentation' instead")
        if rng.random() < 0.5:
            image, mask = np.fliplr(image), np.fliplr(mask)
    augmenter = make_augmenter(augmentation)
    if augmenter is not None and source not in set(no_augmentation_sources or ()):
        image, mask = augmenter(image, mask, rng=rng)

    keep = mask.any(axis=(0, 1))
    mask = mask[:, :, keep]
    class_ids = class_ids[keep]
    bbox = extract_bboxes(mask)

    if source not in dataset.source_class_ids:
        raise ValueError(f"load_image_gt: {_image_label(dataset, image_id)} comes from source "
                         f"{source!r}, which has no classes (add_class) in the dataset; sources "
                         f"with classes: {sorted(dataset.source_class_ids)}")
    active_class_ids = np.zeros([num_classes], dtype=np.int32)
    active_class_ids[dataset.source_class_ids[source]] = 1

    if use_mini_mask:
        mask = minimize_mask(bbox, mask, config.MINI_MASK_SHAPE)

    image_meta = compose_image_meta(image_id, original_shape, image.shape, window, scale,
                                    active_class_ids)
    return image, image_meta, class_ids, bbox, mask


class TrainingInputs:
    """Names, shapes and dtypes of the per-image inputs of the training Keras model.

    ``KEYS`` (in the classic input order) and, from :meth:`specs`, per key ``(shape, dtype)``
    for ONE image (``A`` = number of anchors, ``R`` = ``RPN_TRAIN_ANCHORS_PER_IMAGE``,
    ``G`` = ``MAX_GT_INSTANCES``):

    ==================== ======================== ======= =========================================
    key                  shape                    dtype   content
    ==================== ======================== ======= =========================================
    input_image          IMAGE_SHAPE              float32 molded (image - MEAN_PIXEL)
    input_image_meta     [IMAGE_META_SIZE]        float32 image_meta row
    input_rpn_match      [A, 1]                   int32   1 / -1 / 0 (pos / neg / neutral)
    input_rpn_bbox       [R, 4]                   float32 deltas / RPN_BBOX_STD_DEV, zero-padded
    input_gt_class_ids   [G]                      int32   zero-padded (negative: crowd)
    input_gt_boxes       [G, 4]                   float32 pixel (y1, x1, y2, x2), zero-padded
    input_gt_masks       [mh, mw, G]              bool    MINI_MASK_SHAPE or IMAGE_SHAPE[:2]
    ==================== ======================== ======= =========================================

    Batches from :func:`make_training_dataset` add ``input_anchors`` [B, A, 4] float32
    (normalized anchors) and a leading batch dimension to every key.
    """

    KEYS = ("input_image", "input_image_meta", "input_rpn_match", "input_rpn_bbox",
            "input_gt_class_ids", "input_gt_boxes", "input_gt_masks")
    BATCH_KEYS = KEYS + ("input_anchors",)

    @staticmethod
    def specs(config, num_anchors):
        """``{key: (shape tuple, numpy dtype)}`` for one image (see the class docstring)."""
        max_gt = int(config.MAX_GT_INSTANCES)
        if config.USE_MINI_MASK:
            mask_hw = tuple(int(s) for s in config.MINI_MASK_SHAPE)
        else:
            mask_hw = tuple(int(s) for s in config.IMAGE_SHAPE[:2])
        return {
            "input_image": (tuple(int(s) for s in config.IMAGE_SHAPE), np.dtype(np.float32)),
            "input_image_meta": ((int(config.IMAGE_META_SIZE),), np.dtype(np.float32)),
            "input_rpn_match": ((int(num_anchors), 1), np.dtype(np.int32)),
            "input_rpn_bbox": ((int(config.RPN_TRAIN_ANCHORS_PER_IMAGE), 4),
                               np.dtype(np.float32)),
            "input_gt_class_ids": ((max_gt,), np.dtype(np.int32)),
            "input_gt_boxes": ((max_gt, 4), np.dtype(np.float32)),
            "input_gt_masks": (mask_hw + (max_gt,), np.dtype(bool)),
        }


def build_training_inputs(dataset, config, image_id, anchors, rng, augmentation=None,
                          no_augmentation_sources=None, skip_empty=False):
    """The training model's inputs for one image, as NumPy arrays padded to fixed shapes.

    Args:
        dataset, config, image_id, augmentation, no_augmentation_sources: as
            :func:`load_image_gt` (mini-masks follow ``config.USE_MINI_MASK``).
        anchors: [A, 4] pixel anchors (y1, x1, y2, x2) of the molded image
            (:func:`pyramid_anchors_for_config`).
        rng: ``np.random.Generator``: crop, augmentation seeding, RPN anchor sampling and the GT
            subset; the same seed gives the same result.
        skip_empty: return None for an image without any positive class id (instead of using it
            as a negative-only image).

    Returns:
        dict with exactly :attr:`TrainingInputs.KEYS`, shapes and dtypes of
        :meth:`TrainingInputs.specs` (no batch dimension); or None (``skip_empty``). RPN targets
        are computed from all instances; when there are more than ``MAX_GT_INSTANCES``, a random
        subset (kept in its original order) fills the GT arrays, as the classic generator.

    Raises:
        ValueError: the molded image does not have ``config.IMAGE_SHAPE`` (e.g. "pad64"/"none"
            modes with images of other sizes) or ``anchors`` is not [A, 4].
    """
    anchors = np.asarray(anchors)
    if anchors.ndim != 2 or anchors.shape[1] != 4:
        raise ValueError(f"build_training_inputs: anchors must be [A, 4] pixel boxes, got shape "
                         f"{anchors.shape}")
    image, image_meta, class_ids, boxes, masks = load_image_gt(
        dataset, config, image_id, augmentation=augmentation,
        use_mini_mask=bool(config.USE_MINI_MASK), rng=rng,
        no_augmentation_sources=no_augmentation_sources)
    if skip_empty and not np.any(class_ids > 0):
        return None
    specs = TrainingInputs.specs(config, anchors.shape[0])
    if image.shape != specs["input_image"][0]:
        raise ValueError(
            f"build_training_inputs: {_image_label(dataset, image_id)} was molded to "
            f"{image.shape} but config.IMAGE_SHAPE is {specs['input_image'][0]} "
            f"(IMAGE_RESIZE_MODE={config.IMAGE_RESIZE_MODE!r}); batched training needs one "
            f"size: use 'square' or 'crop', or images that mold to IMAGE_SHAPE")

    rpn_match, rpn_bbox = build_rpn_targets(
        image.shape, anchors, class_ids, boxes, int(config.RPN_TRAIN_ANCHORS_PER_IMAGE),
        config.RPN_BBOX_STD_DEV, rng=rng)

    max_gt = int(config.MAX_GT_INSTANCES)
    if class_ids.shape[0] > max_gt:
        keep = np.sort(rng.choice(class_ids.shape[0], max_gt, replace=False))
        class_ids, boxes, masks = class_ids[keep], boxes[keep], masks[:, :, keep]
    n = class_ids.shape[0]

    gt_class_ids = np.zeros(specs["input_gt_class_ids"][0], dtype=np.int32)
    gt_boxes = np.zeros(specs["input_gt_boxes"][0], dtype=np.float32)
    gt_masks = np.zeros(specs["input_gt_masks"][0], dtype=bool)
    gt_class_ids[:n] = class_ids
    gt_boxes[:n] = boxes
    if masks.shape[:2] != gt_masks.shape[:2]:
        raise ValueError(f"build_training_inputs: masks of {_image_label(dataset, image_id)} are "
                         f"{masks.shape[:2]}, expected {gt_masks.shape[:2]}")
    gt_masks[:, :, :n] = masks

    return {
        "input_image": mold_image(image, config.MEAN_PIXEL).astype(np.float32),
        "input_image_meta": image_meta.astype(np.float32),
        "input_rpn_match": rpn_match[:, None].astype(np.int32),
        "input_rpn_bbox": rpn_bbox.astype(np.float32),
        "input_gt_class_ids": gt_class_ids,
        "input_gt_boxes": gt_boxes,
        "input_gt_masks": gt_masks,
    }


def pyramid_anchors_for_config(config):
    """Pyramid anchors of ``config.IMAGE_SHAPE``: ``(pixels [A, 4] float32, normalized [A, 4]
    float32)``, (y1, x1, y2, x2), in :func:`mrcnn.ops.anchors.generate_pyramid_anchors` order.

    A callable ``config.BACKBONE`` takes its feature shapes from ``COMPUTE_BACKBONE_SHAPE``.
    """
    image_shape = tuple(int(s) for s in config.IMAGE_SHAPE)
    if callable(config.BACKBONE):
        feature_shapes = np.asarray(config.COMPUTE_BACKBONE_SHAPE(image_shape))
    else:
        feature_shapes = compute_backbone_shapes(image_shape, config.BACKBONE_STRIDES)
    pixels = generate_pyramid_anchors(config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS,
                                      feature_shapes, config.BACKBONE_STRIDES,
                                      config.RPN_ANCHOR_STRIDE)
    normalized = norm_boxes(pixels, image_shape[:2])
    return pixels.astype(np.float32), normalized.astype(np.float32)


class _EpochOrder:
    """Image order of each epoch: a permutation seeded by (seed, epoch), or the id order.

    Thread-safe (a parallel map asks from several threads); keeps a few recent epochs."""

    def __init__(self, image_ids, shuffle, seed):
        self._ids = np.asarray(image_ids, dtype=np.int64)
        self._shuffle = shuffle
        self._seed = seed
        self._cache = {}
        self._lock = threading.Lock()

    def __call__(self, epoch):
        if not self._shuffle:
            return self._ids
        with self._lock:
            order = self._cache.get(epoch)
            if order is None:
                order = np.random.default_rng([self._seed, epoch]).permutation(self._ids)
                self._cache[epoch] = order
                if len(self._cache) > 4:
                    del self._cache[min(self._cache)]
            return order


def _check_seed(seed, where):
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{where}: seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _shard_positions(n, shard):
    """Epoch positions one input shard reads: all ``n``, or ``index::num_shards``."""
    if shard is None:
        return np.arange(n)
    num_shards, index = (int(v) for v in shard)
    if not 0 <= index < num_shards:
        raise ValueError(f"make_training_dataset: shard index must be in [0, {num_shards}), "
                         f"got shard={shard!r}")
    if num_shards > n:
        raise ValueError(f"make_training_dataset: {num_shards} input shards (workers) need at "
                         f"least as many images, the dataset has {n}")
    return np.arange(index, n, num_shards)


#: Batches the training pipeline keeps ready ahead of the model.
PREFETCH_BATCHES = 4


def make_training_dataset(dataset, config, anchors_normalized, anchors_pixels, shuffle=True,
                          augmentation=None, no_augmentation_sources=None, seed=0, repeat=True,
                          num_parallel_calls=None, skip_empty=False, batch_size=None,
                          shard=None):
    """A ``tf.data.Dataset`` of training batches, built in parallel and reproducibly.

    Element ``k`` of the stream is position ``k % n`` of epoch ``k // n`` (``n`` images). Each
    epoch visits every image once, in a permutation seeded by ``(seed, epoch)`` (id order when
    ``shuffle`` is False); the per-image ``np.random.Generator`` (crop, augmentation, anchor
    sampling, GT subset) is seeded by ``(seed, epoch, position)``. Elements are computed by
    :func:`build_training_inputs` inside ``tf.numpy_function`` in a parallel, order-preserving
    ``map``, so the same seed gives the same batches (for imgaug augmenters, which keep their own
    random state, only the order and the sampling are reproducible).

    Args:
        dataset: a prepared Dataset; config: the Config (BATCH_SIZE, shapes, RPN settings).
        anchors_normalized: [A, 4] normalized anchors, fed as ``input_anchors``.
        anchors_pixels: [A, 4] the same anchors in pixels, used for the RPN targets
            (both from :func:`pyramid_anchors_for_config`).
        shuffle: shuffle image ids each epoch.
        augmentation, no_augmentation_sources: as :func:`load_image_gt`.
        seed: non-negative int.
        repeat: True: endless stream of epochs; False: one epoch.
        num_parallel_calls: parallel map width; None: the number of CPUs.
        skip_empty: drop images without positive instances (as the classic generator).
        batch_size: images per batch; None: ``config.BATCH_SIZE`` (under ``tf.distribute``,
            the per-replica batch).
        shard: None, or ``(num_shards, index)``: read only positions ``index, index +
            num_shards, ...`` of each epoch's permutation (one worker's distinct share of the
            image ids in multi-worker training; all workers must use the same ``seed``).

    Returns:
        ``tf.data.Dataset`` of dicts with :attr:`TrainingInputs.BATCH_KEYS`; every value has the
        static shape ``[BATCH_SIZE] + spec shape`` (``input_anchors``: ``[BATCH_SIZE, A, 4]``
        float32), batches of ``config.BATCH_SIZE`` with ``drop_remainder=True``, prefetched.

    Raises:
        ValueError: the anchor arrays disagree or the dataset has no images. While iterating, a
            failing image raises a ``tf.errors.OpError`` whose message names the image id.

    Example::

        pixels, normalized = pyramid_anchors_for_config(config)
        ds = make_training_dataset(train_set, config, normalized, pixels, seed=1)
        batch = next(iter(ds))  # batch["input_image"].shape == (B, H, W, 3)
    """
    import tensorflow as tf

    seed = _check_seed(seed, "make_training_dataset")
    anchors_normalized = np.asarray(anchors_normalized, dtype=np.float32)
    anchors_pixels = np.asarray(anchors_pixels, dtype=np.float32)
    if (anchors_normalized.ndim != 2 or anchors_normalized.shape[1] != 4
            or anchors_normalized.shape != anchors_pixels.shape):
        raise ValueError(f"make_training_dataset: anchors_normalized {anchors_normalized.shape} "
                         f"and anchors_pixels {anchors_pixels.shape} must both be [A, 4] with "
                         f"the same A")
    image_ids = np.asarray(dataset.image_ids)
    n = int(image_ids.shape[0])
    if n == 0:
        raise ValueError("make_training_dataset: the dataset has no images")
    batch_size = int(config.BATCH_SIZE if batch_size is None else batch_size)
    positions = _shard_positions(n, shard)
    num_anchors = anchors_pixels.shape[0]
    specs = TrainingInputs.specs(config, num_anchors)
    keys = TrainingInputs.KEYS
    augmenter = make_augmenter(augmentation)
    order = _EpochOrder(image_ids, shuffle, seed)

    def load(k):
        epoch, j = divmod(int(k), positions.shape[0])
        position = int(positions[j])
        image_id = int(order(epoch)[position])
        rng = np.random.default_rng([seed, epoch, position])
        try:
            inputs = build_training_inputs(dataset, config, image_id, anchors_pixels, rng,
                                           augmentation=augmenter,
                                           no_augmentation_sources=no_augmentation_sources,
                                           skip_empty=skip_empty)
        except Exception as exc:
            raise RuntimeError(f"make_training_dataset: failed to load "
                               f"{_image_label(dataset, image_id)}: "
                               f"{type(exc).__name__}: {exc}") from exc
        if inputs is None:
            return tuple(np.zeros(s, dtype=d) for s, d in (specs[key] for key in keys)) + (
                np.bool_(False),)
        return tuple(inputs[key] for key in keys) + (np.bool_(True),)

    tout = [tf.as_dtype(specs[key][1]) for key in keys] + [tf.bool]

    def to_dict(k):
        values = tf.numpy_function(load, [k], tout, name="mrcnn_training_inputs")
        out = {}
        for key, value in zip(keys, values[:-1]):
            value.set_shape(specs[key][0])
            out[key] = value
        keep = values[-1]
        keep.set_shape(())
        return out, keep

    counter = tf.data.Dataset.counter() if repeat else tf.data.Dataset.range(positions.shape[0])
    parallel = (os.cpu_count() or 2) if num_parallel_calls is None else int(num_parallel_calls)
    ds = counter.map(to_dict, num_parallel_calls=parallel, deterministic=True)
    if skip_empty:
        ds = ds.filter(lambda inputs, keep: keep)
    ds = ds.map(lambda inputs, keep: inputs)
    ds = ds.batch(batch_size, drop_remainder=True)
    anchors_tensor = tf.constant(anchors_normalized)

    def add_anchors(batch):
        batch = dict(batch)
        batch["input_anchors"] = tf.broadcast_to(anchors_tensor[None],
                                                 [batch_size, num_anchors, 4])
        return batch

    ds = ds.map(add_anchors)
    # Fixed parallelism and buffer, autotuning off: with tf.data autotuning on, a 2-core CPU
    # showed stalls of 5-10 s with idle cores when Keras dropped the validation iterator at an
    # epoch end (measured, docs/benchmarks.md); the fixed pipeline still runs far ahead of the
    # model.
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.prefetch(PREFETCH_BATCHES).with_options(options)


def data_generator(dataset, config, shuffle=True, augmentation=None, random_rois=0, batch_size=1,
                   detection_targets=False, no_augmentation_sources=None, augment=False, *,
                   seed=None, skip_empty=True):
    """Classic-compatible endless Python generator of training batches.

    Yields ``(inputs, outputs)`` with ``inputs`` = ``[batch_images, batch_image_meta,
    batch_rpn_match, batch_rpn_bbox, batch_gt_class_ids, batch_gt_boxes, batch_gt_masks]``
    (shapes of :class:`TrainingInputs` with a leading ``batch_size``; images molded float32,
    boxes float32 pixels where the classic used int32) and ``outputs`` = ``[]``.

    With ``random_rois`` > 0, ``inputs`` also gets ``batch_rpn_rois`` [B, random_rois, 4] int32
    pixel ROIs (:func:`mrcnn.data.detection_targets.generate_random_rois`); with
    ``detection_targets`` as well, ``inputs`` gets ``batch_rois`` [B, TRAIN_ROIS_PER_IMAGE, 4]
    int32 and ``outputs`` = ``[batch_mrcnn_class_ids [B, T, 1] int32, batch_mrcnn_bbox
    [B, T, NUM_CLASSES, 4] float32, batch_mrcnn_mask [B, T, mh, mw, NUM_CLASSES] float32]``
    (:func:`mrcnn.data.detection_targets.build_detection_targets`), in the classic order.

    Args:
        dataset, config, augmentation, no_augmentation_sources: as :func:`load_image_gt`.
        shuffle: shuffle image ids every epoch.
        random_rois: int, random ROIs per image (0: none), for inspecting or training the heads
            without the RPN (``USE_RPN_ROIS=False``).
        detection_targets: also yield the heads' targets of those ROIs (needs ``random_rois``).
        batch_size: images per batch.
        augment: the classic deprecated flag; True raises a ValueError naming the replacement.
        seed: None (unseeded) or a non-negative int for a reproducible stream.
        skip_empty: skip images without positive instances (the classic behaviour). With
            ``detection_targets`` images without instances are always skipped.

    Prefer :func:`make_training_dataset`, which builds batches in parallel.

    Raises:
        ValueError: ``detection_targets`` without ``random_rois``, or a bad ``batch_size``.
        RuntimeError: an image fails to load (the message names the image id).
    """
    if augment:
        raise ValueError("data_generator: augment=True (classic, deprecated) is not supported; "
                         "pass augmentation=albumentations.HorizontalFlip(p=0.5) instead")
    if detection_targets and not random_rois:
        raise ValueError("data_generator: detection_targets=True needs random_rois > 0 (the "
                         "targets are built for those ROIs), e.g. random_rois=2000")
    skip_empty = skip_empty or bool(detection_targets)
    if batch_size < 1:
        raise ValueError(f"data_generator: batch_size must be >= 1, got {batch_size!r}")
    rng = np.random.default_rng(None if seed is None else _check_seed(seed, "data_generator"))
    anchors, _ = pyramid_anchors_for_config(config)
    augmenter = make_augmenter(augmentation)
    image_ids = np.copy(dataset.image_ids)
    if image_ids.shape[0] == 0:
        raise ValueError("data_generator: the dataset has no images")
    keys = TrainingInputs.KEYS
    batch = []
    consecutive_skips = 0
    while True:
        if shuffle:
            rng.shuffle(image_ids)
        for image_id in image_ids:
            try:
                inputs = build_training_inputs(dataset, config, int(image_id), anchors, rng,
                                               augmentation=augmenter,
                                               no_augmentation_sources=no_augmentation_sources,
                                               skip_empty=skip_empty)
            except Exception as exc:
                raise RuntimeError(f"data_generator: failed to load "
                                   f"{_image_label(dataset, image_id)}: "
                                   f"{type(exc).__name__}: {exc}") from exc
            if inputs is None:
                consecutive_skips += 1
                if consecutive_skips > 2 * image_ids.shape[0]:
                    raise ValueError("data_generator: no image of the dataset has a positive "
                                     "instance; nothing to train on with skip_empty=True")
                continue
            consecutive_skips = 0
            if random_rois:
                inputs.update(_random_roi_targets(inputs, config, random_rois,
                                                  detection_targets, rng))
            batch.append(inputs)
            if len(batch) == batch_size:
                batch_inputs = [np.stack([b[key] for b in batch]) for key in keys]
                outputs = []
                if random_rois:
                    batch_inputs.append(np.stack([b["rpn_rois"] for b in batch]))
                    if detection_targets:
                        batch_inputs.append(np.stack([b["rois"] for b in batch]))
                        outputs = [np.stack([b[key] for b in batch])
                                   for key in ("mrcnn_class_ids", "mrcnn_bbox", "mrcnn_mask")]
                        # Keras wanted outputs and targets of the same rank (classic).
                        outputs[0] = outputs[0][..., np.newaxis]
                yield batch_inputs, outputs
                batch = []


def _random_roi_targets(inputs, config, random_rois, detection_targets, rng):
    """Random ROIs (and their head targets) for one image of :func:`data_generator`."""
    from mrcnn.data.detection_targets import build_detection_targets, generate_random_rois

    class_ids = inputs["input_gt_class_ids"]
    n = int(np.flatnonzero(class_ids)[-1]) + 1 if np.any(class_ids) else 0
    gt_boxes = inputs["input_gt_boxes"][:n].astype(np.int32)
    out = {"rpn_rois": generate_random_rois(config.IMAGE_SHAPE, random_rois, class_ids[:n],
                                            gt_boxes, rng=rng)}
    if detection_targets:
        rois, mrcnn_class_ids, mrcnn_bbox, mrcnn_mask = build_detection_targets(
            out["rpn_rois"], class_ids[:n], gt_boxes, inputs["input_gt_masks"][:, :, :n], config,
            rng=rng)
        out.update(rois=rois, mrcnn_class_ids=mrcnn_class_ids, mrcnn_bbox=mrcnn_bbox,
                   mrcnn_mask=mrcnn_mask)
    return out


def measure_pipeline_throughput(tf_dataset, batches):
    """Batches per second of an input pipeline (for benchmark scripts, not for tests).

    Takes one batch first (start-up, autotuning warm-up; not counted), then times ``batches``
    further batches.

    Args:
        tf_dataset: any iterable of batches (``tf.data.Dataset``, generator ...).
        batches: positive int, number of timed batches.

    Returns:
        float, batches per second.

    Raises:
        ValueError: ``batches`` < 1, or the pipeline ends before ``batches + 1`` batches.
    """
    if isinstance(batches, (bool, np.bool_)) or not isinstance(batches, (int, np.integer)) \
            or batches < 1:
        raise ValueError(f"measure_pipeline_throughput: batches must be a positive integer, got "
                         f"{batches!r}")
    iterator = iter(tf_dataset)
    try:
        next(iterator)
        start = time.perf_counter()
        for _ in range(int(batches)):
            next(iterator)
    except StopIteration:
        raise ValueError(f"measure_pipeline_throughput: the pipeline ended before "
                         f"{int(batches) + 1} batches") from None
    return int(batches) / (time.perf_counter() - start)
