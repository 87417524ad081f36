"""The ``MaskRCNN`` class: the one place that reads a ``Config`` and turns it into a Keras model.

It keeps the classic API (``MaskRCNN(mode, config, model_dir)``, ``detect``, ``load_weights``,
``train``, ``find_last``, ``run_graph`` ...) on top of the batched layers of this package.
Graph construction lives in :mod:`mrcnn.model.graph`; training in :mod:`mrcnn.model.training`.
"""
import logging
import os
import re

import numpy as np

from mrcnn.data.image_meta import compose_image_meta, mold_image
from mrcnn.data.transforms import resize_image
from mrcnn.data.validation import check_detect_images
from mrcnn.model import weights_io
from mrcnn.model.checkpoints import (claim_run_dir, find_last_checkpoint, parse_checkpoint_path,
                                     remove_stale_temp_files, run_dir_name)
from mrcnn.model.graph import build_inference_model
from mrcnn.model.inspect import compute_backbone_shapes
from mrcnn.ops.anchors import generate_pyramid_anchors
from mrcnn.ops.boxes import denorm_boxes, norm_boxes
from mrcnn.ops.masks import paste_masks

__all__ = ["MaskRCNN", "IMAGENET_WEIGHTS_URL", "IMAGENET_WEIGHTS_FILE"]

logger = logging.getLogger(__name__)

IMAGENET_WEIGHTS_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
IMAGENET_WEIGHTS_URL = ("https://github.com/fchollet/deep-learning-models/releases/download/v0.2/"
                        + IMAGENET_WEIGHTS_FILE)


def _frozen_batch_norm(config, layer):
    """A BatchNorm layer whose gamma and beta ``Config.TRAIN_BN_AFFINE = False`` keeps fixed."""
    import keras
    return (not getattr(config, "TRAIN_BN_AFFINE", True)
            and isinstance(layer, keras.layers.BatchNormalization))


class MaskRCNN:
    """Mask R-CNN model: build, load weights, train and detect (classic API).

    Args:
        mode: "training" or "inference".
        config: a :class:`mrcnn.config.Config` (or subclass) instance.
        model_dir: folder for training logs and checkpoints.

    Example::

        model = MaskRCNN(mode="inference", config=InferenceConfig(), model_dir="logs")
        model.load_weights("mask_rcnn_coco.h5", by_name=True)
        r = model.detect([image])[0]   # dict: rois, class_ids, scores, masks
    """

    def __init__(self, mode, config, model_dir):
        if mode not in ("training", "inference"):
            raise ValueError(f"mode must be 'training' or 'inference', got {mode!r}")
        self.mode = mode
        self.config = config
        self.model_dir = str(model_dir)
        self._anchor_cache = {}
        self._inspect_cache = {}
        self.anchors = None  # pixel anchors of the last get_anchors() call (classic)
        self._predict_fn = None
        self.set_log_dir()
        self.keras_model = self.build(mode=mode, config=config)

    # ------------------------------------------------------------------ graph
    def build(self, mode, config):
        """Build the Keras model for ``mode``; returns it (also stored as ``keras_model``)."""
        from mrcnn.model import distribution, precision
        # MIXED_PRECISION sets the Keras dtype policy of the layers built here (None: global).
        with precision.policy_scope(getattr(config, "MIXED_PRECISION", None)):
            if mode == "training":
                from mrcnn.model.training import build_training_model
                # Under a tf.distribute scope, or GPU_COUNT > 1: a data-parallel model.
                with distribution.training_scope(config) as strategy:
                    self.strategy = strategy
                    model = build_training_model(config)
                if getattr(config, "SYNC_BATCH_NORM", False) and config.TRAIN_BN is None:
                    distribution.synchronize_batch_norm(model)
                for layer in model.layers:
                    if _frozen_batch_norm(config, layer):
                        layer.trainable = False
                return model
            self.strategy = None
            return build_inference_model(config)

    # ---------------------------------------------------------------- anchors
    def get_anchors(self, image_shape):
        """Normalized pyramid anchors [A, (y1, x1, y2, x2)] float32 for a molded image shape.

        Also sets ``self.anchors`` to the same anchors in pixels (classic: the inspect_model
        notebook reads it after this call).
        """
        image_shape = tuple(int(d) for d in image_shape[:2])
        if image_shape not in self._anchor_cache:
            anchors = generate_pyramid_anchors(
                self.config.RPN_ANCHOR_SCALES, self.config.RPN_ANCHOR_RATIOS,
                self.compute_backbone_shapes(image_shape), self.config.BACKBONE_STRIDES,
                self.config.RPN_ANCHOR_STRIDE)
            self._anchor_cache[image_shape] = (norm_boxes(anchors, image_shape).astype(np.float32),
                                               anchors)
        normalized, self.anchors = self._anchor_cache[image_shape]
        return normalized

    def compute_backbone_shapes(self, image_shape):
        """[[h, w] per pyramid level] for an image shape; honours COMPUTE_BACKBONE_SHAPE."""
        return compute_backbone_shapes(self.config, image_shape)

    # ---------------------------------------------------------------- molding
    def mold_inputs(self, images):
        """Resize, pad and normalize a list of images for the network.

        Args:
            images: list of [H, W, C] images (any size, RGB).
        Returns:
            molded_images [N, h, w, C] float32 (mean-subtracted), image_metas [N, META] float32,
            windows [N, (y1, x1, y2, x2)] int32: the image area inside the padding, in pixels of
            the molded image.
        """
        molded_images, image_metas, windows = [], [], []
        for image in images:
            molded, window, scale, _, _ = resize_image(
                image, min_dim=self.config.IMAGE_MIN_DIM, min_scale=self.config.IMAGE_MIN_SCALE,
                max_dim=self.config.IMAGE_MAX_DIM, mode=self.config.IMAGE_RESIZE_MODE)
            molded = mold_image(molded, self.config.MEAN_PIXEL)
            meta = compose_image_meta(0, image.shape, molded.shape, window, scale,
                                      np.zeros([self.config.NUM_CLASSES], dtype=np.int32))
            molded_images.append(molded)
            image_metas.append(meta)
            windows.append(window)
        shapes = {m.shape for m in molded_images}
        if len(shapes) > 1:
            raise ValueError(
                f"images of one batch must mold to the same shape, got {sorted(shapes)}; with "
                f"IMAGE_RESIZE_MODE={self.config.IMAGE_RESIZE_MODE!r} pass same-sized images or "
                "use 'square'")
        return (np.stack(molded_images).astype(np.float32), np.stack(image_metas).astype(np.float32),
                np.asarray(windows, dtype=np.int32))

    def unmold_detections(self, detections, mrcnn_mask, original_image_shape, image_shape, window):
        """Turn one image's padded detections into original-image boxes and full-size masks.

        Args:
            detections: [N, (y1, x1, y2, x2, class_id, score)] normalized, zero-padded.
            mrcnn_mask: [N, mh, mw, num_classes] sigmoid masks, or [N, mh, mw] already picked
                for each detection's class.
            original_image_shape: (H, W, C) of the image before resizing.
            image_shape: (h, w, C) of the molded image.
            window: (y1, x1, y2, x2) pixels of the molded image holding the real image.
        Returns:
            boxes [n, (y1, x1, y2, x2)] int32 pixels of the original image, class_ids [n] int32,
            scores [n] float32, masks [H, W, n] bool.
        """
        detections = np.asarray(detections)
        zero_ix = np.where(detections[:, 4] == 0)[0]
        n = zero_ix[0] if zero_ix.shape[0] > 0 else detections.shape[0]
        boxes = detections[:n, :4]
        class_ids = detections[:n, 4].astype(np.int32)
        scores = detections[:n, 5].astype(np.float32)
        if mrcnn_mask.ndim == 4:
            masks = mrcnn_mask[np.arange(n), :, :, class_ids]
        else:
            masks = mrcnn_mask[:n]
        # Map normalized molded-image coordinates to normalized window coordinates, then to
        # pixels of the original image.
        wy1, wx1, wy2, wx2 = norm_boxes(np.asarray(window, dtype=np.float32), image_shape[:2])
        shift = np.array([wy1, wx1, wy1, wx1])
        scale = np.array([wy2 - wy1, wx2 - wx1, wy2 - wy1, wx2 - wx1])
        boxes = denorm_boxes((boxes - shift) / scale, original_image_shape[:2])
        keep = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) > 0
        boxes, class_ids, scores, masks = boxes[keep], class_ids[keep], scores[keep], masks[keep]
        full_masks = paste_masks(masks, boxes, original_image_shape[:2])
        return boxes.astype(np.int32), class_ids, scores, full_masks

    # -------------------------------------------------------------- inference
    def _predict(self, molded_images, image_metas, anchors):
        import tensorflow as tf
        if self._predict_fn is None:
            model = self.keras_model

            @tf.function(reduce_retracing=True)
            def predict(images, metas, anchors_in):
                detections, _, _, mrcnn_mask, _, _, _ = model([images, metas, anchors_in],
                                                               training=False)
                # Pick each detection's own class mask in the graph: far less to copy out.
                class_ids = tf.cast(detections[..., 4], tf.int32)
                masks = tf.transpose(mrcnn_mask, [0, 1, 4, 2, 3])
                masks = tf.gather(masks, class_ids, axis=2, batch_dims=2)
                # float32 under mixed precision too: detect() returns the classic dtypes.
                return tf.cast(detections, tf.float32), tf.cast(masks, tf.float32)

            self._predict_fn = predict
        detections, masks = self._predict_fn(molded_images, image_metas, anchors)
        return detections.numpy(), masks.numpy()

    def _batched_anchors(self, image_shape, batch_size):
        anchors = self.get_anchors(image_shape)
        return np.broadcast_to(anchors, (batch_size,) + anchors.shape)

    def detect(self, images, verbose=0):
        """Run detection on a list of images (any length; run in batches of BATCH_SIZE).

        Returns a list of dicts, one per image: ``rois`` [N, (y1, x1, y2, x2)] int32 pixels of the
        original image, ``class_ids`` [N] int32, ``scores`` [N] float32, ``masks`` [H, W, N] bool.
        """
        if self.mode != "inference":
            raise RuntimeError("detect() needs a MaskRCNN built with mode='inference'")
        images = check_detect_images(images, self.config.IMAGE_CHANNEL_COUNT)
        if verbose:
            logger.info("Processing %d images", len(images))
        results = []
        batch = max(1, self.config.BATCH_SIZE)
        for start in range(0, len(images), batch):
            chunk = images[start:start + batch]
            molded_images, image_metas, windows = self.mold_inputs(chunk)
            results.extend(self._detect_molded_batch(chunk, molded_images, image_metas, windows))
        return results

    def detect_molded(self, molded_images, image_metas, verbose=0):
        """Detect on images already molded (e.g. from ``load_image_gt``); see ``detect``.

        ``molded_images`` [N, h, w, 3] are the resized, padded images *before* mean subtraction
        (as ``load_image_gt`` returns them); ``image_metas`` [N, META] their metas. As in the
        classic package, results are in the frame of the molded image: ``rois`` are pixels of
        the molded image and ``masks`` are [h, w, N], the frame of ``load_image_gt``'s ground
        truth.
        """
        if self.mode != "inference":
            raise RuntimeError("detect_molded() needs a MaskRCNN built with mode='inference'")
        molded_images = np.asarray(molded_images)
        if molded_images.ndim != 4:
            raise ValueError(f"detect_molded: molded_images must be [N, h, w, C], got shape "
                             f"{molded_images.shape}")
        normalized = mold_image(molded_images, self.config.MEAN_PIXEL).astype(np.float32)
        image_metas = np.asarray(image_metas, dtype=np.float32)
        height, width = molded_images.shape[1:3]
        # The whole molded image is the "original": its window spans it all.
        windows = np.tile(np.array([[0, 0, height, width]], dtype=np.int32),
                          (molded_images.shape[0], 1))
        return self._detect_molded_batch(list(molded_images), normalized, image_metas, windows)

    def _detect_molded_batch(self, originals, molded_images, image_metas, windows):
        anchors = self._batched_anchors(molded_images.shape[1:3], molded_images.shape[0])
        detections, masks = self._predict(molded_images, image_metas, anchors)
        results = []
        for i, image in enumerate(originals):
            rois, class_ids, scores, full_masks = self.unmold_detections(
                detections[i], masks[i], image.shape, molded_images[i].shape, windows[i])
            results.append({"rois": rois, "class_ids": class_ids, "scores": scores,
                            "masks": full_masks})
        return results

    def export(self, export_dir, format="tf_saved_model"):
        """Write a self-contained SavedModel with serving signatures (docs/deploy.md)."""
        from mrcnn.export import export_model
        return export_model(self, export_dir, format=format)

    # -------------------------------------------------------------- training
    def train(self, train_dataset, val_dataset, learning_rate, epochs, layers,
              augmentation=None, custom_callbacks=None, no_augmentation_sources=None,
              verbose=1, seed=None, evaluation=None):
        """Train the model (classic signature).

        Args:
            train_dataset, val_dataset: prepared :class:`mrcnn.utils.Dataset` objects
                (``val_dataset`` may be None to skip validation).
            learning_rate: SGD learning rate (momentum LEARNING_MOMENTUM; the step clips
                each gradient to GRADIENT_CLIP_NORM).
            epochs: the epoch number to stop at; training resumes from ``self.epoch`` (set by
                loading a checkpoint), so calling it again with a larger number continues.
            layers: "heads", "3+", "4+", "5+", "all", or a regex over layer names.
            augmentation: an albumentations transform, an imgaug augmenter, or a callable
                ``(image, masks) -> (image, masks)``; applied to training images only.
            custom_callbacks: extra Keras callbacks.
            no_augmentation_sources: dataset sources whose images are never augmented.
            verbose: Keras progress output (1: progress bar, 2: one line per epoch).
            seed: seed of the input shuffling and augmentation (None: random).
            evaluation: COCO box/mask AP of ``val_dataset`` during training (off by default):
                an int K evaluates every K epochs on up to 50 validation images and keeps the
                best checkpoint by mask AP; or a :class:`mrcnn.eval.callback.CocoEvalCallback`
                for other choices. The figures (``val_mask_AP`` ...) go into the Keras logs.
        Writes TensorBoard logs and one checkpoint per epoch, ``log_dir/mask_rcnn_<name>_<epoch>.h5``
        in the classic layout, atomically.
        """
        from mrcnn.model.training import train
        return train(self, train_dataset, val_dataset, learning_rate, epochs, layers,
                     augmentation=augmentation, custom_callbacks=custom_callbacks,
                     no_augmentation_sources=no_augmentation_sources, verbose=verbose,
                     seed=seed, evaluation=evaluation)

    # --------------------------------------------------------------- weights
    def load_weights(self, filepath, by_name=False, exclude=None):
        """Load weights from a classic Keras-2 ``.h5`` file or a Keras 3 ``.weights.h5`` file.

        ``exclude`` lists layer names to skip (it implies ``by_name``), e.g. the class-dependent
        ``["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask"]`` when fine-tuning
        on another class count. Afterwards the epoch counter resumes from the checkpoint's name.
        """
        filepath = os.fspath(filepath)
        if not os.path.exists(filepath):
            raise FileNotFoundError(f"weights file not found: {filepath}")
        if filepath.endswith(".weights.h5"):
            if exclude:
                raise ValueError("exclude= is only supported for classic .h5 files, not for "
                                 f"Keras 3 .weights.h5 files ({filepath})")
            try:
                self.keras_model.load_weights(filepath)
            except (OSError, ValueError) as exc:
                raise ValueError(f"Cannot load Keras 3 weights file {filepath!r}: {exc}") from exc
            report = None
        else:
            report = weights_io.load_classic_weights(self.keras_model, filepath,
                                                     by_name=by_name or bool(exclude),
                                                     exclude=exclude)
        self.set_log_dir(filepath)
        return report

    def save_weights(self, filepath):
        """Save weights: classic Keras-2 ``.h5`` layout, or Keras 3 for ``*.weights.h5``."""
        filepath = os.fspath(filepath)
        if filepath.endswith(".weights.h5"):
            self.keras_model.save_weights(filepath)
        else:
            weights_io.save_classic_weights(self.keras_model, filepath)

    def get_imagenet_weights(self, path=None):
        """Path of the Keras ResNet50 ImageNet "notop" weights used by the classic code.

        Looks for, in order: ``path``, ``$MRCNN_IMAGENET_WEIGHTS``, ``model_dir`` and the Keras
        cache folder; otherwise downloads the classic file. Offline, raises a FileNotFoundError
        saying which file to fetch and where to put it.
        """
        from mrcnn.model.pretrained import fetch_weights_file
        return fetch_weights_file(IMAGENET_WEIGHTS_FILE, IMAGENET_WEIGHTS_URL, path=path,
                                  env_var="MRCNN_IMAGENET_WEIGHTS",
                                  search_dirs=[self.model_dir], cache_subdir="models")

    # ------------------------------------------------------- logs and epochs
    def set_log_dir(self, model_path=None):
        """Set ``log_dir``, ``checkpoint_path`` and ``epoch`` (resuming from a checkpoint name).

        A fresh run gets ``<model_dir>/<name><YYYYMMDDTHHMMSS>``, made unique (``_2``, ...) when
        training creates it (:meth:`prepare_log_dir`); a checkpoint path in the classic layout
        (minutes or seconds) resumes in its run folder under ``model_dir`` at its epoch.
        """
        self.epoch = 0
        self._log_dir_ready = False
        name = (self.config.NAME or "mrcnn").lower()
        parsed = parse_checkpoint_path(model_path) if model_path else None
        if parsed:
            folder, self.epoch = parsed
            self._log_dir_ready = True
            logger.info("Re-starting from epoch %d", self.epoch)
        else:
            folder = run_dir_name(name)
        self.log_dir = os.path.join(self.model_dir, folder)
        self.checkpoint_path = os.path.join(self.log_dir, f"mask_rcnn_{name}_{{epoch:04d}}.h5")

    def prepare_log_dir(self):
        """Create the run folder before training writes to it (called by ``train``).

        Removes temp files left by interrupted checkpoint writes of earlier runs; a fresh run
        claims a folder no other run has (see :mod:`mrcnn.model.checkpoints`).
        """
        name = (self.config.NAME or "mrcnn").lower()
        remove_stale_temp_files(self.model_dir, name)
        if getattr(self, "_log_dir_ready", False):  # a subclass's set_log_dir may not set it
            os.makedirs(self.log_dir, exist_ok=True)
            return self.log_dir
        self.log_dir = claim_run_dir(self.model_dir, self.log_dir)
        self.checkpoint_path = os.path.join(self.log_dir, os.path.basename(self.checkpoint_path))
        self._log_dir_ready = True
        return self.log_dir

    def find_last(self):
        """Path of the newest loadable checkpoint of this config's NAME under model_dir.

        Unlike the classic code, run folders without checkpoints, checkpoints that cannot be read
        whole (truncated, checksum mismatch) and checkpoints holding NaN / infinite weights are
        passed over (with a warning) for the newest one that loads.
        """
        return find_last_checkpoint(self.model_dir, (self.config.NAME or "mrcnn").lower())

    # ------------------------------------------------------------ trainable
    def set_trainable(self, layer_regex, keras_model=None, indent=0, verbose=1):
        """Make the layers whose names fully match ``layer_regex`` trainable, freeze the rest.

        Nested models (the shared ``rpn_model``) are entered, as in the classic code.
        """
        import keras
        keras_model = keras_model or self.keras_model
        if verbose > 0 and keras_model is self.keras_model:
            logger.info("Selecting layers to train")
        for layer in keras_model.layers:
            if isinstance(layer, keras.Model):
                if verbose > 0:
                    logger.info("%sIn model: %s", " " * indent, layer.name)
                self.set_trainable(layer_regex, keras_model=layer, indent=indent + 4,
                                   verbose=verbose)
                continue
            if not layer.weights:
                continue
            trainable = (bool(re.fullmatch(layer_regex, layer.name))
                         and not _frozen_batch_norm(self.config, layer))
            layer.trainable = trainable
            if trainable and verbose > 0:
                logger.info("%s%-20s (%s)", " " * indent, layer.name, type(layer).__name__)

    def find_trainable_layer(self, layer):
        """The layer itself (kept for the classic API: there are no TimeDistributed wrappers)."""
        return layer

    def get_trainable_layers(self):
        """Layers that own weights (the shared ``rpn_model`` counts as one), in model order."""
        return [layer for layer in self.keras_model.layers if layer.weights]

    # ------------------------------------------------------------ inspection
    def ancestor(self, tensor, name, checked=None):
        """The tensor called ``name`` upstream of ``tensor`` (classic helper), or None.

        ``name`` is a layer name or ``"<layer>/<internal>"`` such as ``"ROI/pre_nms_anchors:0"``
        (see :mod:`mrcnn.model.inspect` for the names); the result goes into :meth:`run_graph`.
        """
        from mrcnn.model.inspect import ancestor
        return ancestor(tensor, name, cache=self._inspect_cache)

    def run_graph(self, images, outputs, image_metas=None):
        """Run the model on ``images`` and return named intermediate tensors as NumPy arrays.

        Works in both modes (see :func:`mrcnn.model.inspect.run_graph`). ``outputs`` is a list
        of (name, tensor) pairs: layer outputs (``keras_model.get_layer("ROI").output``) or
        :meth:`ancestor` results. Without ``image_metas`` the images are molded here; with it
        they must already be molded and normalized (they are used as given).
        Returns an OrderedDict name -> array.
        """
        from mrcnn.model.inspect import run_graph
        return run_graph(self, images, outputs, image_metas=image_metas)

    def compile(self, learning_rate, momentum):
        """Classic ``compile``: SGD(learning_rate, momentum).

        The losses, L2 weight decay and the clipping of each gradient to GRADIENT_CLIP_NORM are
        part of the training model's step, so this only sets the optimizer (the classic one
        also set ``clipnorm``: here that would clip every gradient a second time,
        docs/classic-differences.md); ``train`` compiles itself and need not be preceded by
        this call.
        """
        if self.mode != "training":
            raise RuntimeError("compile() is for a MaskRCNN built with mode='training'; an "
                               "inference model needs no compiling (call detect())")
        from mrcnn.model.optimizer import classic_sgd
        self.keras_model.compile(optimizer=classic_sgd(learning_rate, momentum),
                                 jit_compile=False)
