"""Nucleus: Mask R-CNN on cell nuclei in microscopy images (classic DSB2018 sample).

Data layout (the Kaggle 2018 Data Science Bowl ``stage1_train`` folder)::

    <root>/stage1_train/<image_id>/images/<image_id>.png   one image (RGB or RGBA; alpha dropped)
    <root>/stage1_train/<image_id>/masks/<mask_id>.png     one binary PNG per nucleus

``--dataset`` may name ``<root>`` or the ``stage1_train`` folder itself (or any folder laid out
like it). Subsets:

* ``"train"`` / ``"val"``: a deterministic split of the annotated folder (:func:`split_image_ids`):
  the image ids are ordered by the SHA-256 of the id and the first ``round(n * val_fraction)``
  (default 0.15, at least one, never all) form ``"val"``. It depends only on the set of ids, so the
  same command gives the same split on any folder in this layout, on any machine. (The classic
  sample hard-coded 25 validation ids of the full Kaggle set, which do not exist in other folders.)
* ``"stage1_train"``: every image of the annotated folder.
* any other name (``"stage1_test"``, ...): the folder ``<root>/<name>``; masks are optional there
  (only ``detect`` can run on such a subset).

One class, ``"nucleus"`` (id 1). Empty mask PNGs are skipped.

Configs: :class:`NucleusConfig` / :class:`NucleusInferenceConfig` (the classic GPU values) and
:class:`NucleusCPUConfig` / :class:`NucleusCPUInferenceConfig` (from scratch on a small CPU).

Command line (from the repository root)::

    python -m samples.nucleus.nucleus train --dataset DIR --weights imagenet --logs ./logs
    python -m samples.nucleus.nucleus train --dataset DIR --weights none --config cpu --minutes 30
    python -m samples.nucleus.nucleus detect --dataset DIR --subset val --weights last
    python -m samples.nucleus.nucleus evaluate --dataset DIR --subset val --weights last

``detect`` writes ``<output>/submit_<timestamp>/submit.csv`` (RLE lines without overlaps, see
:mod:`mrcnn.data.rle`) and one PNG per image; ``evaluate`` prints and returns COCO mask/box AP and
the classic per-image mAP@0.5. The steps are functions: :func:`train_nucleus`,
:func:`detect_nucleus`, :func:`evaluate_nucleus`.
"""
import argparse
import datetime
import hashlib
import logging
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from mrcnn.config import Config
from mrcnn.data.dataset import Dataset, ImageLoadError
from mrcnn.data.mask_folder import read_image_size
# rle_encode / rle_decode / mask_to_rle lived in this module in the classic sample.
from mrcnn.data.rle import SUBMISSION_HEADER, mask_to_rle, rle_decode, rle_encode

__all__ = [
    "DEFAULT_VAL_FRACTION", "TRAIN_FOLDER", "NucleusConfig", "NucleusInferenceConfig",
    "NucleusCPUConfig", "NucleusCPUInferenceConfig", "make_config", "NucleusDataset", "load_dataset",
    "resolve_subset_dir", "list_image_ids", "split_image_ids", "nucleus_augmentation",
    "train_nucleus", "detect_nucleus", "evaluate_nucleus",
    "build_parser", "main", "rle_encode", "rle_decode", "mask_to_rle",
]

logger = logging.getLogger(__name__)

DEFAULT_VAL_FRACTION = 0.15
#: The annotated folder that "train", "val" and "stage1_train" read.
TRAIN_FOLDER = "stage1_train"
DEFAULT_LOGS_DIR = "logs"
DEFAULT_RESULTS_DIR = os.path.join("results", "nucleus")

# Size of the classic split (657 images of stage1_train, 25 of them for validation); only used
# for the class-level STEPS defaults, the command line computes them from the real dataset.
_CLASSIC_TRAIN_IMAGES = 657 - 25
_CLASSIC_VAL_IMAGES = 25


# ----------------------------------------------------------------------------------- configs
class NucleusConfig(Config):
    """Classic training configuration (GPU): 512 x 512 random crops of 2x upscaled images.

    Args:
        train_images, val_images: dataset sizes; when given, ``STEPS_PER_EPOCH`` and
            ``VALIDATION_STEPS`` become ``max(1, n // BATCH_SIZE)`` (one pass over the data per
            epoch, as the classic sample computed from its fixed split).
    """
    NAME = "nucleus"
    IMAGES_PER_GPU = 6
    NUM_CLASSES = 1 + 1  # background + nucleus
    STEPS_PER_EPOCH = _CLASSIC_TRAIN_IMAGES // 6
    VALIDATION_STEPS = max(1, _CLASSIC_VAL_IMAGES // 6)
    # Two classes: the softmax already makes 0.5 the effective minimum.
    DETECTION_MIN_CONFIDENCE = 0
    BACKBONE = "resnet50"
    IMAGE_RESIZE_MODE = "crop"
    IMAGE_MIN_DIM = 512
    IMAGE_MAX_DIM = 512
    IMAGE_MIN_SCALE = 2.0
    # Nuclei are small: anchors one octave below the COCO defaults.
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    POST_NMS_ROIS_TRAINING = 1000
    POST_NMS_ROIS_INFERENCE = 2000
    # A loose NMS keeps more proposals in crowded images during training.
    RPN_NMS_THRESHOLD = 0.9
    RPN_TRAIN_ANCHORS_PER_IMAGE = 64
    MEAN_PIXEL = np.array([43.53, 39.56, 48.22])
    USE_MINI_MASK = True
    MINI_MASK_SHAPE = (56, 56)
    TRAIN_ROIS_PER_IMAGE = 128
    MAX_GT_INSTANCES = 200
    DETECTION_MAX_INSTANCES = 400

    def __init__(self, train_images=None, val_images=None, num_classes=None):
        batch = int(self.IMAGES_PER_GPU) * int(self.GPU_COUNT)
        if num_classes is not None:  # another annotation format (--format) may have more classes
            self.NUM_CLASSES = int(num_classes)
        if train_images is not None:
            self.STEPS_PER_EPOCH = max(1, int(train_images) // batch)
        if val_images is not None:
            self.VALIDATION_STEPS = max(1, int(val_images) // batch)
        super().__init__()


class NucleusInferenceConfig(NucleusConfig):
    """Classic inference configuration: whole images, one at a time, padded to multiples of 64.

    The scale rule is the training one (``IMAGE_MIN_DIM`` / ``IMAGE_MIN_SCALE``), so nuclei have
    the size the network was trained on.
    """
    GPU_COUNT = 1
    IMAGES_PER_GPU = 1
    IMAGE_RESIZE_MODE = "pad64"
    RPN_NMS_THRESHOLD = 0.7


class NucleusCPUConfig(NucleusConfig):
    """Training from scratch (``--weights none``) on a 2-core CPU in about half an hour.

    Not classic; every value is a plain class attribute meant to be tuned:

    - 256 x 256 crops of the image upscaled 2x (``IMAGE_MIN_SCALE = 2``, as the classic config):
      a quarter of the classic pixels per step. At the original scale most nuclei (6-15 px) are
      smaller than the smallest anchors can match at IoU 0.7, and the RPN stalled (measured:
      rpn_class_loss stuck at 0.5 after 1,000 steps).
    - ``TRAIN_BN = None``: BatchNorm trains (no pretrained statistics to keep frozen).
    - Lighter heads: 14 x 14 masks from 7 x 7 RoIAlign (classic 28 from 14; nuclei are 5-40
      pixels across) and a 512-wide classifier (classic 1024): the mask head dominated the step.
    - Fewer proposals, smaller mini-masks (nuclei are small).
    - ``LEARNING_RATE = 0.0025`` (classic 0.001): measured in 4.5-minute runs, the RPN's recall
      of validation nuclei (IoU 0.5, top 300 proposals) was 0.01 at 0.01, 0.16 at 0.005 and
      0.52 at 0.0025; at 0.01 the RPN never learned (rpn_class_loss flat at 0.25).
    - ``TRAIN_ROIS_INCLUDE_GT = True``: the GT boxes join the proposals the head ROIs are
      sampled from. Without them an untrained RPN gives the heads almost no positives: measured,
      after 15 minutes the classifier had learned "background" (mrcnn_class_loss 0.03) and
      detected 3 nuclei in 51 validation images.
    - ``BATCH_NORM_MOMENTUM = 0.9`` (Keras 0.99): moving statistics that keep up with weights
      changing fast from scratch, so inference mode sees what training saw.
    - ``TOP_DOWN_PYRAMID_SIZE = 128`` (classic 256): the FPN and RPN convolutions over P2 cost as
      much as the ResNet-50 at this size; half the channels make the step ~20% faster.
    """
    IMAGES_PER_GPU = 2
    IMAGE_MIN_DIM = 256
    IMAGE_MAX_DIM = 256
    IMAGE_MIN_SCALE = 2.0
    TRAIN_BN = None
    MASK_POOL_SIZE = 7
    MASK_SHAPE = [14, 14]
    FPN_CLASSIF_FC_LAYERS_SIZE = 512
    PRE_NMS_LIMIT = 2000
    POST_NMS_ROIS_TRAINING = 500
    POST_NMS_ROIS_INFERENCE = 1000
    RPN_TRAIN_ANCHORS_PER_IMAGE = 128
    TRAIN_ROIS_PER_IMAGE = 128
    MINI_MASK_SHAPE = (28, 28)
    DETECTION_MAX_INSTANCES = 300
    LEARNING_RATE = 0.0025
    TRAIN_ROIS_INCLUDE_GT = True
    BATCH_NORM_MOMENTUM = 0.9
    TOP_DOWN_PYRAMID_SIZE = 128
    STEPS_PER_EPOCH = 289 // 2  # 340 shared images minus the 51 of "val"
    VALIDATION_STEPS = 10


class NucleusCPUInferenceConfig(NucleusCPUConfig):
    """:class:`NucleusCPUConfig` for detection: whole images (pad64), one at a time."""
    GPU_COUNT = 1
    IMAGES_PER_GPU = 1
    IMAGE_RESIZE_MODE = "pad64"
    RPN_NMS_THRESHOLD = 0.7


_CONFIGS = {
    ("classic", "training"): NucleusConfig, ("classic", "inference"): NucleusInferenceConfig,
    ("cpu", "training"): NucleusCPUConfig, ("cpu", "inference"): NucleusCPUInferenceConfig,
}


def make_config(kind="classic", mode="training", train_images=None, val_images=None,
                num_classes=None):
    """A config instance: ``kind`` "classic" or "cpu", ``mode`` "training" or "inference";
    ``num_classes`` (with background) replaces the nucleus sample's 2."""
    try:
        cls = _CONFIGS[(kind, mode)]
    except KeyError:
        raise ValueError(f"make_config: kind must be 'classic' or 'cpu' and mode 'training' or "
                         f"'inference', got kind={kind!r}, mode={mode!r}") from None
    return cls(train_images=train_images, val_images=val_images, num_classes=num_classes)


# ----------------------------------------------------------------------------------- dataset
def _is_image_root(folder):
    return any(child.is_dir() and (child / "images").is_dir() for child in folder.iterdir())


def resolve_subset_dir(dataset_dir, subset):
    """The folder holding the ``<image_id>/`` folders of ``subset``.

    "train", "val", "stage1_train": ``<dataset_dir>/stage1_train``, else ``dataset_dir`` itself
    if it is a folder of ``<image_id>/images/``; other names: ``<dataset_dir>/<subset>`` or
    ``dataset_dir`` itself when it carries that name. FileNotFoundError names the folders tried.
    """
    if not isinstance(subset, str) or not subset or "/" in subset or "\\" in subset:
        raise ValueError(f"subset must be 'train', 'val', 'stage1_train' or the name of a "
                         f"subfolder of the dataset folder, got {subset!r}")
    if dataset_dir is None or not os.path.isdir(dataset_dir):
        raise FileNotFoundError(f"nucleus dataset folder not found: {dataset_dir!r} (pass the "
                                f"folder that holds {TRAIN_FOLDER}/, or {TRAIN_FOLDER} itself)")
    root = Path(dataset_dir)
    name = TRAIN_FOLDER if subset in ("train", "val") else subset
    if (root / name).is_dir():
        return root / name
    if root.name == name or (name == TRAIN_FOLDER and _is_image_root(root)):
        return root
    raise FileNotFoundError(
        f"subset {subset!r}: folder {root / name} not found, and {root} is not itself a folder "
        f"of <image_id>/images/<image_id>.png")


def list_image_ids(folder):
    """Sorted names of the subfolders (not starting with '.') of ``folder``; ValueError if none."""
    folder = Path(folder)
    ids = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not ids:
        raise ValueError(f"no image folders (<image_id>/images/...) in {folder}")
    return ids


def split_image_ids(image_ids, val_fraction=DEFAULT_VAL_FRACTION):
    """Deterministic split: ``(train_ids, val_ids)``, sorted, disjoint, together all the ids.

    The ids are ordered by ``sha256(id)`` (ties by id) and the first
    ``round(len(ids) * val_fraction)`` go to validation, at least 1 and at most ``len - 1`` when
    ``val_fraction > 0`` and there are two ids or more (else 0). The split depends only on the set
    of ids, not on their order or the machine. ValueError unless ``0 <= val_fraction < 1``.
    """
    try:
        fraction = float(val_fraction)
    except (TypeError, ValueError):
        fraction = float("nan")
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    ids = sorted({str(i) for i in image_ids})
    ordered = sorted(ids, key=lambda i: (hashlib.sha256(i.encode("utf-8")).hexdigest(), i))
    count = int(round(len(ordered) * fraction))
    if fraction > 0 and len(ordered) >= 2:
        count = min(max(count, 1), len(ordered) - 1)
    elif len(ordered) < 2:
        count = 0
    return sorted(ordered[count:]), sorted(ordered[:count])


def _image_file(image_dir, image_id):
    images = image_dir / "images"
    if not images.is_dir():
        raise FileNotFoundError(f"nucleus image folder {image_dir} has no images/ subfolder")
    path = images / f"{image_id}.png"
    if path.is_file():
        return path
    candidates = sorted(p for p in images.iterdir() if p.is_file() and not p.name.startswith("."))
    if len(candidates) == 1:
        return candidates[0]
    raise FileNotFoundError(f"nucleus image folder {image_dir}: expected images/{image_id}.png "
                            f"(or a single file in images/), found {[p.name for p in candidates]}")


def _read_mask(path, image_id):
    """One mask PNG -> [H, W] bool (any non-zero pixel is foreground; alpha ignored)."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("1", "L", "I", "I;16", "F"):
                array = np.asarray(im)
            else:
                array = np.asarray(im.convert("L"))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageLoadError(f"image {image_id!r}: cannot read mask file '{path}': "
                             f"{type(exc).__name__}: {exc}") from exc
    return array > 0


class NucleusDataset(Dataset):
    """Nuclei in the DSB2018 folder layout; one class ``"nucleus"``.

    ``image_info[i]``: ``id`` (the image folder name), ``path`` (the image PNG) and ``mask_dir``
    (its ``masks/`` folder, or None for unannotated subsets).
    """

    def load_nucleus(self, dataset_dir, subset, image_ids=None, val_fraction=DEFAULT_VAL_FRACTION):
        """Register the images of ``subset`` (see the module docstring for subsets and layout).

        Args:
            dataset_dir: the folder holding ``stage1_train/`` (etc.), or ``stage1_train`` itself.
            subset: "train", "val", "stage1_train" or another subfolder name.
            image_ids: optional list of image ids (folder names) to keep, in that order; each
                must belong to the subset.
            val_fraction: fraction of the annotated images in "val" (:func:`split_image_ids`).

        Raises:
            FileNotFoundError: missing dataset/subset folder, an image folder without
                ``images/`` (or, in "train"/"val"/"stage1_train", without ``masks/``).
            ValueError: empty subset, unknown ``image_ids``, bad ``val_fraction``.
        """
        self.add_class("nucleus", 1, "nucleus")
        folder = resolve_subset_dir(dataset_dir, subset)
        ids = list_image_ids(folder)
        if subset in ("train", "val"):
            train_ids, val_ids = split_image_ids(ids, val_fraction)
            ids = train_ids if subset == "train" else val_ids
        if image_ids is not None:
            requested = [str(i) for i in image_ids]
            known = set(ids)
            unknown = [i for i in requested if i not in known]
            if unknown:
                raise ValueError(f"image_ids not in subset {subset!r} of {folder}: "
                                 f"{unknown[:5]}{' ...' if len(unknown) > 5 else ''}")
            ids = list(dict.fromkeys(requested))
        if not ids:
            raise ValueError(f"subset {subset!r} of {folder} is empty (val_fraction="
                             f"{val_fraction}, {len(list_image_ids(folder))} image folders)")
        annotated = subset in ("train", "val", TRAIN_FOLDER)
        for image_id in ids:
            image_dir = folder / image_id
            path = _image_file(image_dir, image_id)
            mask_dir = image_dir / "masks"
            if not mask_dir.is_dir():
                if annotated:
                    raise FileNotFoundError(
                        f"nucleus image folder {image_dir} has no masks/ subfolder (subset "
                        f"{subset!r} needs one PNG per nucleus there)")
                mask_dir = None
            self.add_image("nucleus", image_id=image_id, path=str(path),
                           mask_dir=None if mask_dir is None else str(mask_dir))

    def load_mask(self, image_id):
        """Instance masks of image ``image_id`` (internal id) from its ``masks/*.png``.

        Returns:
            masks: ``[H, W, N]`` bool, one channel per non-empty mask PNG (files in name order);
                ``[H, W, 0]`` when there is none.
            class_ids: ``[N]`` int32, all 1 (nucleus).

        Raises:
            FileNotFoundError: the image has no ``masks/`` folder.
            ImageLoadError (a ValueError): a mask PNG cannot be decoded; ValueError: a mask's
                size differs from the image's. Both name the file.
        """
        info = self._image_info_for(image_id, "load_mask")
        if info["source"] != "nucleus":
            return super().load_mask(image_id)
        mask_dir = info.get("mask_dir")
        if mask_dir is None or not os.path.isdir(mask_dir):
            raise FileNotFoundError(f"image {info['id']!r} ({info['path']}) has no masks/ "
                                    "folder next to its images/ folder")
        height, width = read_image_size(info["path"], f"image {info['id']!r} file")
        masks = []
        for name in sorted(os.listdir(mask_dir)):
            if not name.lower().endswith(".png") or name.startswith("."):
                continue
            path = os.path.join(mask_dir, name)
            mask = _read_mask(path, info["id"])
            if mask.shape != (height, width):
                raise ValueError(f"image {info['id']!r}: mask file '{path}' is {mask.shape[1]}x"
                                 f"{mask.shape[0]} (WxH) but the image is {width}x{height}")
            if mask.any():
                masks.append(mask)
        if not masks:
            return np.zeros((height, width, 0), dtype=bool), np.zeros([0], dtype=np.int32)
        return np.stack(masks, axis=-1), np.ones([len(masks)], dtype=np.int32)

    def image_reference(self, image_id):
        """The image id (folder name) of internal image ``image_id``."""
        info = self._image_info_for(image_id, "image_reference")
        if info["source"] == "nucleus":
            return info["id"]
        return super().image_reference(image_id)


def load_dataset(dataset_dir, subset, val_fraction=DEFAULT_VAL_FRACTION, image_ids=None):
    """A prepared :class:`NucleusDataset` of one split of a folder: ``subset`` "train" or "val"
    (the deterministic :func:`split_image_ids` of the annotated folder), or any subfolder name
    (see :meth:`NucleusDataset.load_nucleus`); ``image_ids`` keeps only those folders.

    The one loader of the command line, ``scripts/nucleus_probe.py``,
    ``scripts/nucleus_holdout.py`` and the tests.
    """
    dataset = NucleusDataset()
    dataset.load_nucleus(dataset_dir, subset, image_ids=image_ids, val_fraction=val_fraction)
    dataset.prepare()
    return dataset


# ---------------------------------------------------------------------------------- training
def nucleus_augmentation():
    """The classic augmentation in albumentations: up to two of flips, 90-degree rotations,
    brightness/contrast and Gaussian blur per image (classic: ``iaa.SomeOf((0, 2), [Fliplr(0.5),
    Flipud(0.5), rotate 90/180/270, Multiply((0.8, 1.5)), GaussianBlur(sigma=(0, 5))])``).

    Two transforms are drawn per image; the flips fire with probability 0.5 each, so 0, 1 or 2
    are applied. Spatial transforms move the masks too (albumentations decides).
    """
    import albumentations as A

    return A.Compose([A.SomeOf([
        A.HorizontalFlip(p=0.5),
        A.VerticalFlip(p=0.5),
        A.RandomRotate90(p=1.0),
        # Multiply((0.8, 1.5)): one factor for the whole image. (RandomBrightnessContrast adds
        # up to half the dtype maximum, which turned dark fluorescence images grey.)
        A.MultiplicativeNoise(multiplier=(0.8, 1.5), per_channel=False, elementwise=False,
                              p=1.0),
        A.GaussianBlur(sigma_limit=(0.1, 5.0), p=1.0),
    ], n=2, replace=False, p=1.0)])


def train_nucleus(model, train_dataset, val_dataset, epochs=40, layers="heads+all",
                  learning_rate=None, augmentation=True, minutes=None, custom_callbacks=None):
    """Train ``model`` (a training ``MaskRCNN``) on prepared nucleus datasets.

    Args:
        epochs: epoch number to stop at (training resumes from ``model.epoch``).
        layers: "heads+all" (classic schedule for ImageNet/COCO starts: heads up to epoch
            ``epochs // 2``, then all layers), or a ``layers`` value of ``MaskRCNN.train``
            ("all" for training from scratch, "heads", "4+", a regex ...).
        learning_rate: default ``model.config.LEARNING_RATE``.
        augmentation: True: :func:`nucleus_augmentation`; None/False: none; else passed on.
        minutes: stop training after this many minutes, counted from this call, over all
            stages (one ``mrcnn.model.training.TimeLimit``); later stages are then skipped.
        custom_callbacks: more Keras callbacks.

    Returns the Keras ``History`` of each stage that ran (a list).
    """
    config = model.config
    learning_rate = config.LEARNING_RATE if learning_rate is None else float(learning_rate)
    if augmentation is True:
        augmentation = nucleus_augmentation()
    elif augmentation is False:
        augmentation = None
    callbacks = list(custom_callbacks or [])
    limit = None
    if minutes is not None:
        from mrcnn.model.training import TimeLimit

        # One instance for every stage: they share the budget, counted from now.
        limit = TimeLimit(float(minutes), start=time.monotonic())
        callbacks.append(limit)
    if layers == "heads+all":
        stages = [("heads", int(epochs) // 2), ("all", int(epochs))]
    else:
        stages = [(layers, int(epochs))]
    histories = []
    for stage_layers, stage_epochs in stages:
        if stage_epochs <= model.epoch:
            continue
        if limit is not None and limit.expired():
            logger.info("Time limit reached: skipping the %r stage", stage_layers)
            break
        print(f"Training layers {stage_layers!r} up to epoch {stage_epochs} "
              f"({config.STEPS_PER_EPOCH} steps of {config.BATCH_SIZE} images)")
        histories.append(model.train(train_dataset, val_dataset, learning_rate=learning_rate,
                                     epochs=stage_epochs, layers=stage_layers,
                                     augmentation=augmentation, custom_callbacks=callbacks))
        if limit is not None and limit.expired():
            break
    return histories


# ---------------------------------------------------------------------- detection / evaluation
def _selected_ids(dataset, limit):
    image_ids = [int(i) for i in dataset.image_ids]
    if limit is not None:
        image_ids = image_ids[:int(limit)]
    if not image_ids:
        raise ValueError("no images to process (empty dataset or limit=0)")
    return image_ids


def detect_nucleus(model, dataset, output_dir=DEFAULT_RESULTS_DIR, save_images=True, limit=None):
    """Detect nuclei on every image of ``dataset`` and write a DSB2018 submission.

    Writes ``<output_dir>/submit_<YYYYmmddTHHMMSS>/submit.csv`` (header ``ImageId,EncodedPixels``,
    then :func:`mrcnn.data.rle.mask_to_rle` lines: overlaps removed by score, one ``"id,"`` line
    for an image without detections) and, when ``save_images``, ``<image_id>.png`` pictures of the
    detections (:func:`mrcnn.visualize.save_instances_figure`).

    ``model`` is an inference ``MaskRCNN``, ``dataset`` a prepared :class:`NucleusDataset`
    (masks are not needed), ``limit`` keeps the first images only. Returns the folder (str).
    """
    submit_dir = os.path.join(os.fspath(output_dir),
                              f"submit_{datetime.datetime.now():%Y%m%dT%H%M%S}")
    os.makedirs(submit_dir, exist_ok=True)
    if save_images:
        from mrcnn import visualize
    lines = []
    for image_id in _selected_ids(dataset, limit):
        image = dataset.load_image(image_id)
        r = model.detect([image], verbose=0)[0]
        source_id = dataset.image_info[image_id]["id"]
        lines.append(mask_to_rle(source_id, r["masks"], r["scores"]))
        if save_images:
            visualize.save_instances_figure(
                os.path.join(submit_dir, f"{source_id}.png"), image, r["rois"], r["masks"],
                r["class_ids"], dataset.class_names, r["scores"],
                title=f"{source_id[:16]}: {len(r['class_ids'])} nuclei")
    path = os.path.join(submit_dir, "submit.csv")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join([SUBMISSION_HEADER] + lines) + "\n")
    print(f"Saved {len(lines)} images to {submit_dir}")
    return submit_dir


def evaluate_nucleus(model, dataset, limit=None, verbose=True):
    """COCO mask/box AP and the classic mAP@0.5 of an inference model on an annotated dataset.

    ``model``: inference ``MaskRCNN``; ``dataset``: prepared :class:`NucleusDataset` with masks
    (e.g. subset "val"); ``limit``: the first images only; ``verbose``: print the metrics.

    Returns:
        dict of floats: ``mask_AP``, ``mask_AP50``, ``mask_AP75``, ``box_AP``, ``box_AP50``,
        ``box_AP75`` (COCO AP through pycocotools, over all evaluated images), ``mAP50`` (mean
        over images of the classic per-image mask AP at IoU 0.5, images without ground truth
        left out), ``num_images`` and ``num_detections``.
    """
    from mrcnn.eval.coco_eval import evaluate_coco
    from mrcnn.eval.metrics import compute_ap
    from mrcnn.ops.masks import extract_bboxes

    image_ids = _selected_ids(dataset, limit)
    predictions, aps = [], []
    for image_id in image_ids:
        r = model.detect([dataset.load_image(image_id)], verbose=0)[0]
        predictions.append(r)
        gt_masks, gt_class_ids = dataset.load_mask(image_id)
        if gt_class_ids.shape[0]:
            ap, _, _, _ = compute_ap(extract_bboxes(gt_masks), gt_class_ids, gt_masks,
                                     r["rois"], r["class_ids"], r["scores"], r["masks"])
            aps.append(float(ap))
    coco = evaluate_coco(dataset, predictions, image_ids=image_ids)
    metrics = {f"{kind}_{k}": float(coco[iou_type][k])
               for kind, iou_type in (("mask", "segm"), ("box", "bbox"))
               for k in ("AP", "AP50", "AP75")}
    metrics.update(mAP50=float(np.mean(aps)) if aps else float("nan"), num_images=len(image_ids),
                   num_detections=int(sum(len(r["class_ids"]) for r in predictions)))
    if verbose:
        print(f"Evaluated {len(image_ids)} images, {metrics['num_detections']} detections")
        for kind in ("mask", "box"):
            print(f"  COCO {kind:4} " + "  ".join(
                f"{k} {metrics[f'{kind}_{k}']:.3f}" for k in ("AP", "AP50", "AP75")))
        print(f"  classic mAP@0.5 (mean per-image mask AP): {metrics['mAP50']:.3f}")
    return metrics


# ------------------------------------------------------------------------------ command line
def build_parser():
    """The argparse parser of ``python -m samples.nucleus.nucleus``."""
    from mrcnn.cli import add_weights_argument

    parser = argparse.ArgumentParser(
        prog="python -m samples.nucleus.nucleus",
        description="Mask R-CNN for nuclei segmentation (DSB2018 layout).")
    parser.add_argument("command", choices=["train", "detect", "evaluate"])
    parser.add_argument("--dataset", required=True, metavar="DIR",
                        help=f"folder holding {TRAIN_FOLDER}/ (or {TRAIN_FOLDER} itself); with "
                             "another --format, its json or folder")
    parser.add_argument("--subset", default=None,
                        help="train: training subset (default 'train'; validation uses 'val'); "
                             "detect/evaluate: default 'val'; also 'stage1_train' or a subfolder")
    add_weights_argument(parser)
    parser.add_argument("--logs", default=DEFAULT_LOGS_DIR, metavar="DIR", help="checkpoints")
    parser.add_argument("--config", choices=["classic", "cpu"], default="classic",
                        help="classic GPU values, or NucleusCPUConfig (from scratch on a CPU)")
    parser.add_argument("--epochs", type=int, default=40, help="epoch to stop training at")
    parser.add_argument("--layers", default=None,
                        help="'heads+all' (classic two stages), 'all', 'heads', '4+' ... "
                             "(default: 'all' with --weights none, else 'heads+all')")
    parser.add_argument("--minutes", type=float, help="stop training after this many minutes")
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--no-augmentation", action="store_true")
    parser.add_argument("--val-fraction", type=float, default=DEFAULT_VAL_FRACTION,
                        help="fraction of the annotated images in 'val' (deterministic split)")
    parser.add_argument("--limit", type=int, help="detect/evaluate: only the first N images")
    parser.add_argument("--output", default=DEFAULT_RESULTS_DIR, metavar="DIR",
                        help="detect: folder for the submit_<timestamp> results")
    from mrcnn.data.formats import add_format_arguments
    add_format_arguments(parser, native="dsb",
                         native_help=f"the DSB2018 layout, --dataset holding {TRAIN_FOLDER}/ "
                                     "and --subset choosing the split")
    return parser


def load_datasets(args, command):
    """``(train, val)`` for ``command == "train"``, ``(None, dataset)`` else, from parsed
    arguments: the DSB2018 layout (``--format dsb``: ``--subset`` and the deterministic
    ``--val-fraction`` split) or any format of :mod:`mrcnn.data.formats`."""
    if args.format != "dsb":
        from mrcnn.data.formats import load_format_datasets
        return load_format_datasets(args, command)
    from mrcnn.cli import require_dataset_dir
    require_dataset_dir(args.dataset)
    if command == "train":
        return (load_dataset(args.dataset, args.subset or "train", args.val_fraction),
                load_dataset(args.dataset, "val", args.val_fraction))
    return None, load_dataset(args.dataset, args.subset or "val", args.val_fraction)


def main(argv=None):
    """Run the command line; returns the training histories, submission folder or metrics."""
    from mrcnn.cli import load_weights_spec
    from mrcnn.model.maskrcnn import MaskRCNN

    args = build_parser().parse_args(argv)
    train_set, dataset = load_datasets(args, args.command)
    num_classes = None if args.format == "dsb" else dataset.num_classes
    weights = args.weights
    if weights is None:
        weights = "last" if args.command != "train" else (
            "none" if args.config == "cpu" else "imagenet")
    print(f"Command: {args.command}  dataset: {args.dataset}  weights: {weights}  "
          f"config: {args.config}  logs: {args.logs}")
    if args.command == "train":
        config = make_config(args.config, "training", train_images=train_set.num_images,
                             val_images=dataset.num_images, num_classes=num_classes)
        config.display()
        model = MaskRCNN(mode="training", config=config, model_dir=args.logs)
        load_weights_spec(model, weights)
        layers = args.layers or ("all" if str(weights).lower() == "none" else "heads+all")
        return train_nucleus(model, train_set, dataset, epochs=args.epochs, layers=layers,
                             learning_rate=args.learning_rate,
                             augmentation=not args.no_augmentation, minutes=args.minutes)

    config = make_config(args.config, "inference", num_classes=num_classes)
    config.display()
    model = MaskRCNN(mode="inference", config=config, model_dir=args.logs)
    load_weights_spec(model, weights)
    if args.command == "detect":
        return detect_nucleus(model, dataset, output_dir=args.output, limit=args.limit)
    return evaluate_nucleus(model, dataset, limit=args.limit)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
