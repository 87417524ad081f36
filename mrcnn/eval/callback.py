"""COCO box and mask AP of a validation set while training: :class:`CocoEvalCallback`.

Every ``every`` epochs the callback copies the current weights of the training model into an
inference model (built once, on first use, never rebuilt), runs ``MaskRCNN.detect`` on up to
``limit`` validation images and scores the detections with pycocotools
(:mod:`mrcnn.eval.coco_eval`: COCO AP, mean over IoU 0.50:0.95, 101-point interpolation, over the
whole evaluated set). The figures are written into the epoch's Keras ``logs`` dict, so History,
TensorBoard (validation scalars ``epoch_box_AP`` ...) and the progress line all show them:

    ``val_box_AP``, ``val_box_AP50``, ``val_box_AP75``, ``val_mask_AP``, ``val_mask_AP50``,
    ``val_mask_AP75``

As with Keras' own ``validation_freq``, epochs without an evaluation have no such keys (so their
History lists are shorter than the loss lists; ``CocoEvalCallback.results`` pairs each figure with
its epoch).

With ``best_checkpoint`` the training weights of the epoch with the highest ``monitor`` value are
written (classic ``.h5`` layout, atomically) to ``<log_dir>/best_mask_rcnn_<name>.h5``, beside the
per-epoch checkpoints and never instead of them; the name does not start with ``mask_rcnn`` so
that ``MaskRCNN.find_last`` keeps returning the newest per-epoch checkpoint. A json of the same
stem records the epoch and the figures.

It must run before Keras' TensorBoard callback to reach its scalars: ``train(evaluation=...)``
and ``train(custom_callbacks=[CocoEvalCallback(...)])`` both put it first.
"""
import copy
import json
import logging
import math
import os
import time

import keras
import numpy as np

from mrcnn.eval.coco_eval import (build_coco_ground_truth, detections_to_coco_results,
                                   evaluate_coco_results)

__all__ = ["CocoEvalCallback", "EVAL_LOG_KEYS", "copy_weights", "evaluation_callback"]

logger = logging.getLogger(__name__)

#: (IoU type, COCO metric) -> log key suffix; keys are ``val_<box|mask>_<metric>``.
_LOGGED = (("bbox", "box"), ("segm", "mask"))
_METRICS = ("AP", "AP50", "AP75")
#: The keys the callback writes into the Keras logs of an evaluated epoch.
EVAL_LOG_KEYS = tuple(f"val_{short}_{m}" for _, short in _LOGGED for m in _METRICS)


def _flat_variables(keras_model):
    """{(inner layer name, variable name): variable} over every weight of ``keras_model``.

    Nested sub-models (the RPN) are flattened to the layers that own the variables, the naming of
    the classic ``.h5`` files (:mod:`mrcnn.model.weights_io`).
    """
    from mrcnn.model.weights_io import _layer_entries

    flat = {}
    for layer in keras_model.layers:
        if not layer.weights:
            continue
        for inner, var, variable in _layer_entries(layer):
            key, k = (inner, var), 1
            while key in flat:  # repeated names, numbered as the checkpoint writer does
                key, k = (inner, f"{var}_{k}"), k + 1
            flat[key] = variable
    return flat


def copy_weights(source_model, target_model):
    """Pairs of (source variable, target variable) for copying ``source_model`` into
    ``target_model`` by layer and variable name; every target variable must be matched.

    Returns a callable that performs the copy (``assign`` of each pair): build it once, call it at
    every evaluation (no name matching on the hot path).

    Raises:
        ValueError: a target variable has no source of that name, or the shapes differ (the
            message names the layer and both shapes).
    """
    source = _flat_variables(source_model)
    target = _flat_variables(target_model)
    missing = [f"{inner}/{var}" for inner, var in target if (inner, var) not in source]
    if missing:
        raise ValueError(
            f"copy_weights: {len(missing)} weight(s) of the inference model have no counterpart "
            f"in the training model, e.g. {missing[:5]}; both must be built from the same Config")
    pairs = []
    for key, dst in target.items():
        src = source[key]
        if tuple(src.shape) != tuple(dst.shape):
            raise ValueError(
                f"copy_weights: {key[0]}/{key[1]} has shape {tuple(src.shape)} in the training "
                f"model but {tuple(dst.shape)} in the inference model")
        pairs.append((src, dst))

    def run():
        for src, dst in pairs:
            dst.assign(src.value)

    run.pairs = pairs
    return run


class CocoEvalCallback(keras.callbacks.Callback):
    """COCO AP of ``dataset`` every ``every`` epochs, into the Keras logs (see the module doc).

    Args:
        mrcnn_model: the training :class:`~mrcnn.model.maskrcnn.MaskRCNN` (its ``keras_model``
            is the model being fitted; its ``log_dir``, ``config`` and ``model_dir`` are used).
        dataset: a prepared :class:`~mrcnn.data.dataset.Dataset` (validation images with
            ground truth; crowd regions = negative class ids, ignored as in COCO).
        every: evaluate after epochs whose 1-based number is a multiple of ``every`` (>= 1).
        limit: evaluate at most this many images (the first ``limit`` of ``image_ids``, the same
            images every time); None: all.
        image_ids: internal image ids to evaluate (default ``dataset.image_ids``).
        inference_config: the Config of the inference model; default a copy of the training
            config (``detect`` then runs in batches of its BATCH_SIZE). Needed when the training
            config crops (``IMAGE_RESIZE_MODE="crop"`` is for training only).
        best_checkpoint: keep the training weights of the best epoch by ``monitor`` in
            ``<log_dir>/best_mask_rcnn_<name>.h5`` (plus a ``.json`` with epoch and figures).
        monitor: the log key that selects the best epoch (higher is better).
        verbose: 1 logs a line per evaluation with its figures and time.
        inference_model: an inference ``MaskRCNN`` to reuse (its config then replaces
            ``inference_config``); default: built at the first evaluation.

    Attributes:
        inference_model: the inference ``MaskRCNN`` (built at the first evaluation).
        results: list of ``(epoch 1-based, {log key: value})``, one per evaluation.
        best: the best ``monitor`` value so far (-inf before the first evaluation).
        best_epoch: its 1-based epoch, or None.
        last_seconds: wall time of the last evaluation (copy + detect + COCOeval).
    """

    def __init__(self, mrcnn_model, dataset, every=1, limit=50, image_ids=None,
                 inference_config=None, best_checkpoint=True, monitor="val_mask_AP", verbose=1,
                 inference_model=None):
        super().__init__()
        if not isinstance(every, (int, np.integer)) or isinstance(every, bool) or every < 1:
            raise ValueError(f"CocoEvalCallback: every must be an integer >= 1 (epochs between "
                             f"evaluations), got {every!r}")
        if limit is not None and (not isinstance(limit, (int, np.integer)) or limit < 1):
            raise ValueError(f"CocoEvalCallback: limit must be a positive integer or None, got "
                             f"{limit!r}")
        if monitor not in EVAL_LOG_KEYS:
            raise ValueError(f"CocoEvalCallback: monitor {monitor!r} is not one of "
                             f"{EVAL_LOG_KEYS}")
        if inference_model is not None:
            if inference_model.mode != "inference":
                raise ValueError("CocoEvalCallback: inference_model must be a MaskRCNN built "
                                 f"with mode='inference', got mode={inference_model.mode!r}")
            inference_config = inference_model.config
        config = inference_config if inference_config is not None else copy.copy(
            mrcnn_model.config)
        if config.IMAGE_RESIZE_MODE == "crop":
            raise ValueError(
                "CocoEvalCallback: the inference config has IMAGE_RESIZE_MODE='crop' (random "
                "training crops); pass inference_config= with 'square', 'pad64' or 'none'")
        ids = list(dataset.image_ids if image_ids is None else image_ids)
        if limit is not None:
            ids = ids[:int(limit)]
        if not ids:
            raise ValueError("CocoEvalCallback: the validation dataset has no image to evaluate")
        self.mrcnn_model = mrcnn_model
        self.dataset = dataset
        self.every = int(every)
        self.image_ids = [int(i) for i in ids]
        self.inference_config = config
        self.best_checkpoint = bool(best_checkpoint)
        self.monitor = monitor
        self.verbose = int(verbose)
        self.inference_model = inference_model
        self.results = []
        self.best = -math.inf
        self.best_epoch = None
        self.last_seconds = None
        self._copy = None
        self._coco_gt = None
        self._images = None

    # ---------------------------------------------------------------- set-up
    def _ensure_ready(self):
        """Build the inference model, the weight copier and the ground truth, once."""
        if self.inference_model is None:
            from mrcnn.model.maskrcnn import MaskRCNN
            self.inference_model = MaskRCNN(mode="inference", config=self.inference_config,
                                            model_dir=self.mrcnn_model.model_dir)
        if self._copy is None:
            self._copy = copy_weights(self.mrcnn_model.keras_model,
                                      self.inference_model.keras_model)
        if self._coco_gt is None:
            self._coco_gt = build_coco_ground_truth(self.dataset, self.image_ids)
            self._images = [self.dataset.load_image(i) for i in self.image_ids]

    @property
    def best_checkpoint_path(self):
        """``<log_dir>/best_mask_rcnn_<name>.h5`` of the training model's current run."""
        name = (self.mrcnn_model.config.NAME or "mrcnn").lower()
        return os.path.join(self.mrcnn_model.log_dir, f"best_mask_rcnn_{name}.h5")

    # ------------------------------------------------------------ evaluation
    def evaluate(self):
        """Copy the weights, detect on the images, return ``{log key: value}`` (floats)."""
        start = time.monotonic()
        self._ensure_ready()
        self._copy()
        predictions = []
        batch = max(1, int(self.inference_config.BATCH_SIZE))
        for k in range(0, len(self._images), batch):
            predictions.extend(self.inference_model.detect(self._images[k:k + batch]))
        coco_image_ids = [image["id"] for image in self._coco_gt.dataset["images"]]
        results = detections_to_coco_results(self.image_ids, predictions, dataset=self.dataset)
        metrics = evaluate_coco_results(self._coco_gt, results, image_ids=coco_image_ids)
        logs = {}
        for iou_type, short in _LOGGED:
            for name in _METRICS:
                # -1 is pycocotools' "undefined" (no ground truth); keep it as is.
                logs[f"val_{short}_{name}"] = float(metrics[iou_type][name])
        self.last_seconds = time.monotonic() - start
        return logs

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        figures = self.evaluate()
        if logs is not None:
            logs.update(figures)
        self.results.append((epoch + 1, figures))
        if self.verbose:
            logger.info("Epoch %d: COCO AP on %d validation images in %.1f s: %s", epoch + 1,
                        len(self.image_ids), self.last_seconds,
                        ", ".join(f"{k}={v:.4f}" for k, v in figures.items()))
        value = figures[self.monitor]
        if self.best_checkpoint and value > self.best:
            from mrcnn.model.weights_io import save_classic_weights
            os.makedirs(self.mrcnn_model.log_dir, exist_ok=True)
            path = save_classic_weights(self.mrcnn_model.keras_model, self.best_checkpoint_path)
            record = {"epoch": epoch + 1, "monitor": self.monitor, "value": value,
                      "images": len(self.image_ids), "figures": figures}
            stem = os.path.splitext(path)[0]
            tmp = f"{stem}.json.tmp"
            with open(tmp, "w") as f:
                json.dump(record, f, indent=1)
            os.replace(tmp, stem + ".json")
            logger.info("New best %s=%.4f at epoch %d: %s", self.monitor, value, epoch + 1, path)
        if value > self.best:
            self.best, self.best_epoch = value, epoch + 1


def evaluation_callback(mrcnn_model, val_dataset, evaluation):
    """The callbacks for ``MaskRCNN.train(evaluation=...)``: ``[]`` for None/0/False, one
    :class:`CocoEvalCallback` every K epochs (50 images, best checkpoint) for an int K, or the
    given callback itself."""
    if evaluation is None or evaluation is False or evaluation == 0:
        return []
    if isinstance(evaluation, CocoEvalCallback):
        return [evaluation]
    if isinstance(evaluation, bool) or not isinstance(evaluation, (int, np.integer)):
        raise ValueError(f"train(evaluation=...): expected None, an int K (evaluate every K "
                         f"epochs) or a CocoEvalCallback, got {evaluation!r}")
    if val_dataset is None:
        raise ValueError(f"train(evaluation={evaluation}): COCO evaluation needs a val_dataset")
    return [CocoEvalCallback(mrcnn_model, val_dataset, every=int(evaluation))]
