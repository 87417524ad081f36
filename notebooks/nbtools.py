"""Shared set-up of the notebooks: tiny CPU configs, checkpoint reuse, per-step loss curves, data.

Every notebook starts with ``import nbtools`` (from this folder), which puts this checkout's
repository root first on ``sys.path`` so that its ``mrcnn`` and ``samples`` are the ones used.

Environment variables:

* ``MRCNN_NOTEBOOK_QUICK=1``: CI mode; training runs a handful of steps (the pictures are the same
  kind, the model just knows less). ``make notebooks`` leaves it unset.
* ``MRCNN_NOTEBOOK_LOGS``: folder of the notebooks' checkpoints (default ``notebooks/logs``). A
  notebook that needs a trained model takes the newest checkpoint of its config there (e.g. the one
  ``train_shapes`` wrote) and otherwise trains a tiny one first, so each notebook also runs alone.
* ``MRCNN_NUCLEUS_DIR``: the DSB2018-layout nuclei (default ``../shared/data/nucleus`` next to the
  repository).
* ``MRCNN_BALLOON_DIR``: the classic balloon data (``train/`` and ``val/`` with
  ``via_region_data.json``); when absent a small VIA set is generated.
"""
import json
import logging
import os
import sys
import time
from pathlib import Path

ROOT_DIR = Path(__file__).resolve().parents[1]
if str(ROOT_DIR) not in sys.path or sys.path[0] != str(ROOT_DIR):
    sys.path.insert(0, str(ROOT_DIR))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from mrcnn.config import Config  # noqa: E402
from samples.shapes.shapes import ShapesConfig  # noqa: E402

__all__ = ["ROOT_DIR", "QUICK", "LOGS_DIR", "steps", "get_ax", "NotebookShapesConfig",
           "NotebookNucleusConfig", "NotebookBalloonConfig", "inference_config", "LossHistory",
           "plot_losses", "checkpoint_or_train", "shapes_datasets", "nucleus_dir",
           "balloon_dir", "make_via_balloon_set"]

logger = logging.getLogger(__name__)

QUICK = os.environ.get("MRCNN_NOTEBOOK_QUICK", "") not in ("", "0")
LOGS_DIR = Path(os.environ.get("MRCNN_NOTEBOOK_LOGS", ROOT_DIR / "notebooks" / "logs"))


def steps(full, quick):
    """``quick`` in CI mode (MRCNN_NOTEBOOK_QUICK=1), else ``full``."""
    return quick if QUICK else full


def get_ax(rows=1, cols=1, size=6):
    """A grid of matplotlib axes (the classic notebooks' helper)."""
    import matplotlib.pyplot as plt
    _, ax = plt.subplots(rows, cols, figsize=(size * cols, size * rows))
    return ax


# ------------------------------------------------------------------------------- configs
class _TinyCPU:
    """Small heads and few ROIs: every notebook trains or runs in seconds to minutes on a CPU."""
    BACKBONE = "resnet50"
    TRAIN_BN = None
    BATCH_NORM_MOMENTUM = 0.9
    TOP_DOWN_PYRAMID_SIZE = 64
    FPN_CLASSIF_FC_LAYERS_SIZE = 128
    MASK_POOL_SIZE = 7
    MASK_SHAPE = [14, 14]
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    PRE_NMS_LIMIT = 1000
    POST_NMS_ROIS_TRAINING = 200
    POST_NMS_ROIS_INFERENCE = 100
    RPN_TRAIN_ANCHORS_PER_IMAGE = 64
    TRAIN_ROIS_PER_IMAGE = 32
    TRAIN_ROIS_INCLUDE_GT = True
    LEARNING_RATE = 0.01
    VALIDATION_STEPS = 2


class NotebookShapesConfig(_TinyCPU, ShapesConfig):
    """Shapes at 64 x 64 (generated at 128 and resized), 4 images per batch."""
    NAME = "nbshapes"
    IMAGES_PER_GPU = 4
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64
    MAX_GT_INSTANCES = 10
    DETECTION_MAX_INSTANCES = 20
    DETECTION_MIN_CONFIDENCE = 0.5
    STEPS_PER_EPOCH = 50


class NotebookNucleusConfig(_TinyCPU, Config):
    """Nuclei: 128 x 128 random crops at scale 1, one class; full images at inference."""
    NAME = "nbnucleus"
    NUM_CLASSES = 1 + 1
    IMAGES_PER_GPU = 2
    IMAGE_RESIZE_MODE = "crop"
    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 128
    IMAGE_MIN_SCALE = 0
    MEAN_PIXEL = np.array([43.53, 39.56, 48.22])
    RPN_ANCHOR_SCALES = (4, 8, 16, 32, 64)
    RPN_NMS_THRESHOLD = 0.9
    PRE_NMS_LIMIT = 2000
    POST_NMS_ROIS_TRAINING = 400
    POST_NMS_ROIS_INFERENCE = 400
    TRAIN_ROIS_PER_IMAGE = 64
    RPN_TRAIN_ANCHORS_PER_IMAGE = 128
    USE_MINI_MASK = True
    MINI_MASK_SHAPE = (28, 28)
    MAX_GT_INSTANCES = 100
    DETECTION_MAX_INSTANCES = 200
    DETECTION_MIN_CONFIDENCE = 0
    LEARNING_RATE = 0.005
    STEPS_PER_EPOCH = 40


class NotebookBalloonConfig(_TinyCPU, Config):
    """Balloons at 64 x 64, one class."""
    NAME = "nbballoon"
    NUM_CLASSES = 1 + 1
    IMAGES_PER_GPU = 4
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64
    MAX_GT_INSTANCES = 10
    DETECTION_MAX_INSTANCES = 20
    DETECTION_MIN_CONFIDENCE = 0.5
    STEPS_PER_EPOCH = 40


def inference_config(config_class, **overrides):
    """An instance of ``config_class`` for inference: one image per batch, plus ``overrides``."""
    attrs = {"GPU_COUNT": 1, "IMAGES_PER_GPU": 1}
    attrs.update(overrides)
    return type(config_class.__name__.replace("Config", "InferenceConfig"), (config_class,),
                attrs)()


# ------------------------------------------------------------------------------ training
def _keras_callback_base():
    import keras
    return keras.callbacks.Callback


class LossHistory:
    """Keras callback factory recording every loss component at every training step.

    Keras reports running means over the epoch in its batch logs; this undoes the averaging,
    so ``history[name]`` is the loss of each step (``history["step"]`` counts from 1 over all
    epochs).
    """

    def __new__(cls):
        base = _keras_callback_base()

        class _LossHistory(base):
            def __init__(self):
                super().__init__()
                self.history = {"step": []}
                self._previous = {}
                self._seen = 0

            def on_epoch_begin(self, epoch, logs=None):
                self._previous, self._batch = {}, 0

            def on_train_batch_end(self, batch, logs=None):
                self._batch = batch + 1
                self._seen += 1
                self.history["step"].append(self._seen)
                for name, mean in (logs or {}).items():
                    mean = float(mean)
                    value = self._batch * mean - batch * self._previous.get(name, 0.0)
                    self._previous[name] = mean
                    self.history.setdefault(name, []).append(value)

        return _LossHistory()


def plot_losses(history, title="Training losses"):
    """One panel per loss component against steps; returns the Figure."""
    import matplotlib.pyplot as plt
    names = [n for n in history.history if n != "step"]
    cols = 3
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3 * rows), squeeze=False)
    for ax, name in zip(axes.ravel(), names):
        ax.plot(history.history["step"], history.history[name], lw=1)
        ax.set_title(name)
        ax.set_xlabel("step")
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def checkpoint_or_train(config, train_set, val_set, epochs, layers="all", augmentation=None,
                        logs=None, callbacks=None):
    """Path of the newest checkpoint of ``config.NAME`` under ``logs``; trains one first if none.

    Returns ``(path, history)``; ``history`` is the :class:`LossHistory` of the training run, or
    None when an existing checkpoint was used.
    """
    from mrcnn.model.maskrcnn import MaskRCNN

    logs = Path(logs or LOGS_DIR)
    probe = _find_checkpoint(config, logs)
    if probe:
        print(f"Using the checkpoint {probe} (written by an earlier notebook run)")
        return probe, None
    history = LossHistory()
    model = MaskRCNN(mode="training", config=config, model_dir=str(logs))
    start = time.time()
    print(f"No checkpoint of {config.NAME!r} in {logs}: training a tiny model for {epochs} epochs "
          f"of {config.STEPS_PER_EPOCH} steps")
    if QUICK:
        val_set = None  # CI: no validation pass, one graph less to trace
    model.train(train_set, val_set, learning_rate=config.LEARNING_RATE, epochs=epochs,
                layers=layers, augmentation=augmentation,
                custom_callbacks=[history] + list(callbacks or []), verbose=0, seed=0)
    print(f"Trained in {time.time() - start:.0f} s")
    return model.find_last(), history


def _find_checkpoint(config, logs):
    if not logs.is_dir():
        return None
    key = config.NAME.lower()
    runs = sorted(d for d in logs.iterdir() if d.is_dir() and d.name.startswith(key))
    for run in reversed(runs):
        files = sorted(run.glob(f"mask_rcnn_{key}_*.h5"))
        if files:
            return str(files[-1])
    return None


def shapes_datasets(train_count=200, val_count=20):
    """Generated shapes (128 x 128 images): ``(train, val)``, prepared, seeded."""
    from samples.shapes.shapes import make_dataset
    return (make_dataset(train_count, "train", seed=0, height=128, width=128),
            make_dataset(val_count, "val", seed=0, height=128, width=128))


# ---------------------------------------------------------------------------------- data
def nucleus_dir():
    """The nucleus data folder: ``$MRCNN_NUCLEUS_DIR`` or ``../shared/data/nucleus``."""
    env = os.environ.get("MRCNN_NUCLEUS_DIR")
    return Path(env) if env else ROOT_DIR.parent / "shared" / "data" / "nucleus"


def balloon_dir():
    """``(folder, description)``: the balloon data if present, else a generated VIA set."""
    candidates = [os.environ.get("MRCNN_BALLOON_DIR"), ROOT_DIR.parent / "shared" / "data" /
                  "balloon", ROOT_DIR / "datasets" / "balloon"]
    for folder in candidates:
        if folder and (Path(folder) / "train" / "via_region_data.json").is_file():
            return Path(folder), f"the balloon dataset in {folder}"
    folder = LOGS_DIR / "generated_balloons"
    make_via_balloon_set(folder)
    return folder, (f"a generated VIA set in {folder} (no balloon data found; set "
                    "MRCNN_BALLOON_DIR to use the real one)")


def make_via_balloon_set(folder, counts=(("train", 24), ("val", 6)), size=128, seed=0):
    """Write a small balloon-like dataset in the classic layout: ``<folder>/<subset>/*.png`` and a
    VIA 2.x ``via_region_data.json`` with one polygon per balloon (an ellipse with a string).

    Deterministic for a given ``seed``; an existing set is kept.
    """
    from PIL import Image, ImageDraw

    folder = Path(folder)
    rng = np.random.default_rng(seed)
    for subset, count in counts:
        sub = folder / subset
        if (sub / "via_region_data.json").is_file():
            continue
        sub.mkdir(parents=True, exist_ok=True)
        entries = {}
        for i in range(count):
            sky = rng.integers(120, 230, 3)
            gradient = np.linspace(0.75, 1.0, size)[:, None, None]
            pixels = (np.ones((size, size, 3)) * sky * gradient).astype(np.uint8)
            image = Image.fromarray(pixels)
            draw = ImageDraw.Draw(image)
            regions = []
            for _ in range(int(rng.integers(1, 4))):
                ry, rx = rng.uniform(0.1, 0.2, 2) * size
                ry = max(ry, rx * 1.1)
                cy = rng.uniform(ry + 2, size - ry - 12)
                cx = rng.uniform(rx + 2, size - rx - 2)
                t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
                xs = (cx + rx * np.cos(t)).round().astype(int).tolist()
                ys = (cy + ry * np.sin(t)).round().astype(int).tolist()
                colour = tuple(int(c) for c in rng.integers(0, 256, 3))
                draw.line([(cx, cy + ry), (cx + rng.uniform(-6, 6), min(size - 1, cy + ry + 14))],
                          fill=(60, 60, 60), width=1)
                draw.polygon(list(zip(xs, ys)), fill=colour)
                regions.append({"shape_attributes": {"name": "polygon", "all_points_x": xs,
                                                     "all_points_y": ys},
                                "region_attributes": {"name": "balloon"}})
            name = f"balloon_{subset}_{i:03d}.png"
            image.save(sub / name)
            entries[f"{name}{(sub / name).stat().st_size}"] = {
                "filename": name, "size": (sub / name).stat().st_size, "regions": regions,
                "file_attributes": {}}
        tmp = sub / "via_region_data.json.tmp"
        tmp.write_text(json.dumps(entries))
        tmp.replace(sub / "via_region_data.json")
    return folder
