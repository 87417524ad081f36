"""Mask R-CNN on MS COCO, or on any COCO-format json (the classic ``samples/coco/coco.py``).

Usage::

    # MS COCO in the classic layout: <dataset>/annotations/instances_<subset><year>.json and
    # the images in <dataset>/<subset><year>/
    python -m samples.coco.coco train --dataset /data/coco --year 2017 --model imagenet
    python -m samples.coco.coco evaluate --dataset /data/coco --year 2017 --model last --limit 500

    # Any COCO json (an annotation tool's export): classes come from its categories
    python -m samples.coco.coco train --annotations export.json --images imgs/ --model coco \\
        --layers heads --epochs 10
    python -m samples.coco.coco evaluate --dataset export.json --images imgs/ --model last \\
        --output results.json

Training follows the classic three-stage schedule (heads to epoch 40, ResNet stage 4 and up to
epoch 120, all layers at a tenth of the learning rate to epoch 160); ``--epochs E1,E2,E3``,
``--lr`` and ``--layers`` (one stage) override it for small runs. ``evaluate`` runs detection on
the first ``--limit`` images and prints the pycocotools bbox and segm tables, computed against the
json's own annotations (the official numbers) when they carry ``area``, ``bbox`` and
``segmentation``, else against ``load_mask``.
"""
import argparse
import collections
import json
import logging
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping

import numpy as np

from mrcnn.cli import add_weights_argument, config_with, default_layers, load_weights_spec, \
    require_dataset_dir
from mrcnn.config import Config
from mrcnn.data.coco import CocoDataset as _CocoDatasetBase
from mrcnn.data.coco import read_coco_json, validate_coco_dict
from mrcnn.eval.coco_eval import detections_to_coco_results

__all__ = ["CocoConfig", "CocoInferenceConfig", "CocoDataset", "CocoDownloadError",
           "TrainingStage", "build_coco_results", "build_schedule", "classic_schedule",
           "coco_paths", "download_coco", "evaluate", "evaluate_coco", "horizontal_flip",
           "load_model_weights", "main", "make_config", "run_cocoeval", "train"]

logger = logging.getLogger(__name__)

ROOT_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))
DEFAULT_LOGS_DIR = os.path.join(ROOT_DIR, "logs")
COCO_MODEL_PATH = os.path.join(ROOT_DIR, "mask_rcnn_coco.h5")
DEFAULT_DATASET_YEAR = "2017"
COCO_NUM_CLASSES = 1 + 80

# The classic download locations (images and annotations from cocodataset.org; the 2014
# minival / valminusminival splits of the Detectron team).
COCO_IMAGES_URL = "http://images.cocodataset.org/zips/{}{}.zip"
COCO_ANNOTATIONS_URL = "http://images.cocodataset.org/annotations/annotations_trainval{}.zip"
COCO_MINIVAL_URL = ("https://dl.dropboxusercontent.com/s/o43o90bna78omob/"
                    "instances_minival2014.json.zip?dl=0")
COCO_VALMINUSMINIVAL_URL = ("https://dl.dropboxusercontent.com/s/s3tw5zcg7395368/"
                            "instances_valminusminival2014.json.zip?dl=0")


# ------------------------------------------------------------------ Configurations

class CocoConfig(Config):
    """Training on MS COCO: 80 classes + background, two images per GPU (classic)."""
    NAME = "coco"
    IMAGES_PER_GPU = 2
    NUM_CLASSES = COCO_NUM_CLASSES


class CocoInferenceConfig(CocoConfig):
    """Evaluation: one image at a time and no confidence cut-off, so AP sees every detection."""
    GPU_COUNT = 1
    IMAGES_PER_GPU = 1
    DETECTION_MIN_CONFIDENCE = 0


def make_config(base=CocoConfig, **overrides):
    """An instance of a subclass of ``base`` with ``overrides`` (None values ignored).

    Overrides become class attributes, so the derived values (``IMAGE_META_SIZE`` from
    ``NUM_CLASSES``, ``BATCH_SIZE``...) are computed from them and validated.
    """
    return config_with(base, **overrides)


# ------------------------------------------------------------------ Dataset

def coco_paths(dataset_dir, subset, year=DEFAULT_DATASET_YEAR):
    """(annotation file, image folder) of a subset in the classic layout.

    ``<dataset_dir>/annotations/instances_<subset><year>.json`` and ``<dataset_dir>/<subset>
    <year>/``; the 2014 ``minival`` and ``valminusminival`` splits take their images from
    ``val2014``.
    """
    image_subset = "val" if subset in ("minival", "valminusminival") else subset
    annotation_file = os.path.join(dataset_dir, "annotations", f"instances_{subset}{year}.json")
    return annotation_file, os.path.join(dataset_dir, f"{image_subset}{year}")


class CocoDataset(_CocoDatasetBase):
    """:class:`mrcnn.data.coco.CocoDataset` with the classic ``load_coco`` signature."""

    def load_coco(self, dataset_dir, subset=None, year=DEFAULT_DATASET_YEAR, class_ids=None,
                  class_map=None, return_coco=False, auto_download=False, limit=None,
                  image_ids=None, source="coco"):
        """Load a subset of COCO from the classic layout (``coco_paths``).

        ``load_coco(dataset_dir, "val", "2017")`` as in classic code. Called with a json file
        (or dict) first, it is the package form ``load_coco(annotation_file, image_dir, ...)``
        (``image_dir`` defaults to the json's folder). ``class_map`` is unused (classic).

        Raises:
            FileNotFoundError: the folder, the annotation file or the image folder is missing
                (the message shows the expected layout).
            CocoDownloadError: ``auto_download`` and the files cannot be downloaded.
        """
        if isinstance(dataset_dir, Mapping) or os.path.isfile(os.fspath(dataset_dir)):
            image_dir = subset
            if image_dir is None:
                if isinstance(dataset_dir, Mapping):
                    raise ValueError("load_coco(dict, image_dir): image_dir is required")
                image_dir = os.path.dirname(os.path.abspath(dataset_dir))
            return super().load_coco(dataset_dir, image_dir, class_ids=class_ids, source=source,
                                     image_ids=image_ids, limit=limit, return_coco=return_coco)
        if subset is None:
            raise ValueError(f"load_coco({dataset_dir!r}): give the subset (train, val, minival "
                             f"...) or pass a json file")
        if auto_download:
            download_coco(dataset_dir, subset, year)
        require_dataset_dir(dataset_dir, "COCO dataset")
        annotation_file, image_dir = coco_paths(dataset_dir, subset, year)
        if not os.path.isfile(annotation_file):
            raise FileNotFoundError(
                f"COCO annotation file not found: '{annotation_file}'. Expected the layout "
                f"<dataset>/annotations/instances_<subset><year>.json with images in "
                f"<dataset>/<subset><year>/ (use --download, or --annotations/--images for "
                f"another layout)")
        return super().load_coco(annotation_file, image_dir, class_ids=class_ids, source=source,
                                 image_ids=image_ids, limit=limit, return_coco=return_coco)


# ------------------------------------------------------------------ Download

class CocoDownloadError(OSError):
    """COCO files are missing and could not be downloaded (typically: no internet access)."""


def _fetch(url, destination, timeout):
    part = destination + ".part"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
            shutil.copyfileobj(response, out, length=1 << 20)
        os.replace(part, destination)
    finally:
        if os.path.exists(part):
            os.remove(part)


def download_coco(dataset_dir, subset, year=DEFAULT_DATASET_YEAR, timeout=30):
    """Download and unzip a COCO subset into the classic layout, unless it is already there.

    Downloading needs internet access: train2017 images are about 18 GB, val2017 about 1 GB,
    the annotations about 250 MB. Files already on disk are not fetched again.

    Raises:
        CocoDownloadError: a download failed (offline, refused, timeout); the message lists the
            URL and where to unzip it by hand.
    """
    annotation_file, image_dir = coco_paths(dataset_dir, subset, year)
    image_subset = os.path.basename(image_dir)
    wanted = []
    if not os.path.isdir(image_dir):
        wanted.append((COCO_IMAGES_URL.format(image_subset[:-len(str(year))], year),
                       os.path.join(dataset_dir, f"{image_subset}.zip"), dataset_dir))
    if not os.path.isfile(annotation_file):
        if subset == "minival":
            wanted.append((COCO_MINIVAL_URL, annotation_file + ".zip",
                           os.path.dirname(annotation_file)))
        elif subset == "valminusminival":
            wanted.append((COCO_VALMINUSMINIVAL_URL, annotation_file + ".zip",
                           os.path.dirname(annotation_file)))
        else:
            wanted.append((COCO_ANNOTATIONS_URL.format(year),
                           os.path.join(dataset_dir, f"annotations_trainval{year}.zip"),
                           dataset_dir))
    if not wanted:
        return
    print(f"Downloading COCO {subset}{year} needs internet access (images: about 1 GB for "
          f"val, 18 GB for train; annotations about 250 MB).")
    for url, zip_path, extract_to in wanted:
        os.makedirs(extract_to, exist_ok=True)
        print(f"Downloading {url} -> {zip_path}")
        try:
            _fetch(url, zip_path, timeout)
        except (urllib.error.URLError, OSError) as err:
            raise CocoDownloadError(
                f"could not download {url} ({err}). Downloading COCO needs internet access; on a "
                f"machine that has it, download that file and unzip it into '{extract_to}'") \
                from err
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(extract_to)
        os.remove(zip_path)


# ------------------------------------------------------------------ Training

#: One ``MaskRCNN.train`` call: train ``layers`` until epoch ``epochs`` at ``learning_rate``.
TrainingStage = collections.namedtuple("TrainingStage", ["layers", "epochs", "learning_rate"])


def classic_schedule(learning_rate, epochs=(40, 120, 160)):
    """The classic COCO schedule: heads, then ResNet stage 4+, then all layers at lr / 10."""
    return [TrainingStage("heads", int(epochs[0]), learning_rate),
            TrainingStage("4+", int(epochs[1]), learning_rate),
            TrainingStage("all", int(epochs[2]), learning_rate / 10)]


def build_schedule(learning_rate, epochs=None, layers=None, from_scratch=False):
    """Training stages from the command-line options.

    Args:
        learning_rate: base learning rate.
        epochs: None (classic 40,120,160), "E1,E2,E3" (classic stages, increasing stop epochs)
            or, with ``layers``, one stop epoch.
        layers: None for the classic three stages, else one stage on this preset (heads, 3+,
            4+, 5+, all) or layer regex.
        from_scratch: no pretrained weights (``--model none``): the classic stages train all
            layers (heads alone on a random frozen backbone learn nothing).
    """
    values = []
    if epochs is not None:
        try:
            values = [int(v) for v in str(epochs).split(",")]
        except ValueError:
            raise ValueError(f"--epochs: expected integers like '1' or '40,120,160', got "
                             f"{epochs!r}") from None
        if any(v <= 0 for v in values):
            raise ValueError(f"--epochs: epochs must be positive, got {epochs!r}")
    if layers is not None:
        if len(values) != 1:
            raise ValueError(f"--layers {layers!r} trains one stage: give one --epochs value "
                             f"(the epoch to stop at), got {epochs!r}")
        return [TrainingStage(layers, values[0], learning_rate)]
    if values and (len(values) != 3 or values != sorted(values)):
        raise ValueError(f"--epochs {epochs!r}: the classic schedule needs three increasing stop "
                         f"epochs E1,E2,E3 (heads, 4+, all); for one stage add --layers")
    stages = classic_schedule(learning_rate, values) if values else classic_schedule(
        learning_rate)
    if from_scratch:
        stages = [stage._replace(layers="all") for stage in stages]
    return stages


def horizontal_flip(image, masks, rng=None):
    """Flip image and masks left-right with probability 0.5 (the classic ``iaa.Fliplr(0.5)``)."""
    rng = rng if rng is not None else np.random.default_rng()
    if rng.random() < 0.5:
        return np.ascontiguousarray(image[:, ::-1]), np.ascontiguousarray(masks[:, ::-1])
    return image, masks


def load_model_weights(model, spec):
    """Load ``--model``/``--weights`` into ``model``; returns the path or None.

    The shared rule of :func:`mrcnn.cli.load_weights_spec`: ``coco`` weights skip the
    class-dependent layers only when the class count differs from COCO's 81, so that evaluating
    or fine-tuning on COCO itself keeps the trained heads.
    """
    path = load_weights_spec(model, spec)
    if path is not None:
        print(f"Loaded weights {path}")
    return path


def train(config, dataset_train, dataset_val, model_dir=DEFAULT_LOGS_DIR, weights=None,
          schedule=None, augmentation=horizontal_flip, verbose=1):
    """Build a training model, load ``weights`` and run the stages of ``schedule``.

    Args:
        config: a Config (NUM_CLASSES must equal ``dataset_train.num_classes``).
        dataset_train, dataset_val: prepared datasets.
        model_dir: log/checkpoint folder.
        weights: "imagenet", "coco", "last", a path, or None/"none".
        schedule: list of :class:`TrainingStage` (default :func:`classic_schedule`).
        augmentation: passed to ``MaskRCNN.train`` (default: horizontal flip).

    Returns:
        the ``MaskRCNN`` training model (checkpoints in ``model.log_dir``).
    """
    from mrcnn.model.maskrcnn import MaskRCNN

    if dataset_train.num_classes != config.NUM_CLASSES:
        raise ValueError(
            f"config.NUM_CLASSES is {config.NUM_CLASSES} but the training dataset has "
            f"{dataset_train.num_classes} classes (with BG); build the config with "
            f"make_config(NUM_CLASSES=dataset.num_classes)")
    model = MaskRCNN(mode="training", config=config, model_dir=model_dir)
    load_model_weights(model, weights)
    if schedule is None:
        schedule = build_schedule(config.LEARNING_RATE,
                                  from_scratch=default_layers(weights) == "all")
    for stage in schedule:
        print(f"Training {stage.layers} to epoch {stage.epochs} at learning rate "
              f"{stage.learning_rate}")
        model.train(dataset_train, dataset_val, learning_rate=stage.learning_rate,
                    epochs=stage.epochs, layers=stage.layers, augmentation=augmentation)
    return model


# ------------------------------------------------------------------ Evaluation

def build_coco_results(dataset, image_ids, rois, class_ids, scores, masks):
    """Classic helper: COCO result dicts for ONE image's detections (the package's general form
    is :func:`mrcnn.eval.coco_eval.detections_to_coco_results`, any number of images).

    Args:
        dataset: a prepared :class:`CocoDataset` (maps ids back to the json's).
        image_ids: a sequence of one json (COCO) image id, as the classic ``evaluate_coco``
            passed ``coco_image_ids[i:i + 1]``; empty gives ``[]``.
        rois: ``[N, (y1, x1, y2, x2)]`` pixels; class_ids ``[N]`` internal ids; scores ``[N]``;
            masks ``[H, W, N]`` (bool or uint8) at the original image size.

    Returns:
        list of ``{"image_id", "category_id", "bbox": [x, y, w, h], "score", "segmentation"}``
        with the json's image and category ids (as a COCO submission needs) and compressed RLE
        with str counts.
    """
    image_ids = list(image_ids)
    if not image_ids:
        return []
    if len(image_ids) != 1:
        raise ValueError(
            f"build_coco_results: the detections are of one image, so pass one image id, got "
            f"{len(image_ids)}; call it once per image")
    sources = sorted(dataset.__dict__.get("_coco_sources", ())) or ["coco"]
    internal_id = None
    for source in sources:
        key = f"{source}.{image_ids[0]}"
        if key in dataset.image_from_source_map:
            internal_id = dataset.image_from_source_map[key]
            break
    if internal_id is None:
        raise ValueError(f"build_coco_results: COCO image id {image_ids[0]!r} is not an image "
                         f"of this dataset (sources {sources})")
    prediction = {"rois": rois, "class_ids": class_ids, "scores": scores, "masks": masks}
    return detections_to_coco_results([internal_id], [prediction], dataset=dataset,
                                      use_source_ids=True)


def _has_eval_fields(coco, coco_image_ids):
    """Whether the json's own annotations can serve as COCOeval ground truth."""
    for image_id in coco_image_ids:
        for ann in coco.imgToAnns.get(image_id, ()):
            if "area" not in ann or "bbox" not in ann or not ann.get("segmentation"):
                return False
    return True


def run_cocoeval(coco_gt, results, coco_image_ids, category_ids=None,
                 iou_types=("bbox", "segm")):
    """pycocotools COCOeval of ``results`` against ``coco_gt`` on ``coco_image_ids``.

    A thin wrapper of :func:`mrcnn.eval.coco_eval.evaluate_coco_results`.

    Args:
        coco_gt: ``pycocotools.coco.COCO`` ground truth.
        results: COCO result dicts (``build_coco_results``), ids as in ``coco_gt``.
        coco_image_ids: images evaluated (those without results count their objects as missed).
        category_ids: categories evaluated (default: all of ``coco_gt``).
        iou_types: "bbox" and/or "segm".

    Returns:
        dict ``{iou_type: mrcnn.eval.coco_eval.CocoMetrics}`` (``.summary`` is the table).
    """
    from mrcnn.eval.coco_eval import evaluate_coco_results

    return evaluate_coco_results(coco_gt, results, iou_types=iou_types,
                                 image_ids=coco_image_ids, category_ids=category_ids)


def _coco_id(dataset, image_id, use_source_ids):
    return dataset.to_coco_image_id(image_id) if use_source_ids else int(image_id)


def evaluate(model, dataset, coco=None, limit=0, image_ids=None, iou_types=("bbox", "segm"),
             output=None, verbose=1):
    """Detect on the dataset's images and compute COCO box and mask AP.

    Args:
        model: a ``MaskRCNN`` in inference mode (anything with ``config.BATCH_SIZE`` and
            ``detect(images)``).
        dataset: prepared :class:`CocoDataset`.
        coco: the ``COCO`` object from ``load_coco(..., return_coco=True)``: its own annotations
            are the ground truth (official numbers) if they carry area, bbox and segmentation;
            otherwise, or when None, the ground truth comes from ``dataset.load_mask``.
        limit: evaluate the first ``limit`` images (0: all).
        image_ids: internal image ids (default ``dataset.image_ids``).
        iou_types: "bbox" and/or "segm".
        output: write the result dicts (json ids, COCO submission format) to this json file.
        verbose: print the tables and timings.

    Returns:
        dict ``{iou_type: CocoMetrics}`` ("AP", "AP50", "AP75", "APs", "APm", "APl", AR ...).
    """
    from mrcnn.eval.coco_eval import build_coco_ground_truth

    image_ids = [int(i) for i in (dataset.image_ids if image_ids is None else image_ids)]
    if limit:
        image_ids = image_ids[:int(limit)]
    if not image_ids:
        raise ValueError("evaluate: no image to evaluate (empty dataset or image_ids)")
    batch_size = max(1, int(model.config.BATCH_SIZE))
    # json ids for a COCO json (submissions); other readers (--format) keep internal ids.
    use_source_ids = hasattr(dataset, "to_coco_image_id")
    results, t_prediction, t_start = [], 0.0, time.time()
    for start in range(0, len(image_ids), batch_size):
        chunk = image_ids[start:start + batch_size]
        images = [dataset.load_image(i) for i in chunk]
        t = time.time()
        predictions = model.detect(images, verbose=0)
        t_prediction += time.time() - t
        # Encode each batch right away: full-size masks of many images do not fit in memory.
        results.extend(detections_to_coco_results(
            chunk, predictions, dataset=dataset, use_source_ids=use_source_ids,
            image_shapes=[im.shape[:2] for im in images]))

    coco_image_ids = [_coco_id(dataset, i, use_source_ids) for i in image_ids]
    if coco is not None and _has_eval_fields(coco, coco_image_ids):
        coco_gt, ground_truth = coco, "the json's annotations"
        category_ids = [dataset.to_coco_category_id(c) for c in dataset.class_ids[1:]]
    else:
        coco_gt = build_coco_ground_truth(dataset, image_ids, use_source_ids=use_source_ids)
        ground_truth, category_ids = "dataset.load_mask", None
    metrics = run_cocoeval(coco_gt, results, coco_image_ids, category_ids, iou_types)

    if output:
        with open(output, "w", encoding="utf-8") as f:
            json.dump(results, f)
    if verbose:
        for m in metrics.values():
            print(m.summary, end="")
        print(f"Ground truth: {ground_truth}")
        print(f"Prediction time: {t_prediction:.2f} s. Average {t_prediction / len(image_ids):.4f}"
              f" s/image over {len(image_ids)} images")
        print(f"Total time: {time.time() - t_start:.2f} s")
        if output:
            print(f"Wrote {len(results)} results to {output}")
    return metrics


def evaluate_coco(model, dataset, coco=None, eval_type="bbox", limit=0, image_ids=None):
    """Classic name and signature: :func:`evaluate` for one IoU type; returns its metrics."""
    return evaluate(model, dataset, coco=coco, limit=limit, image_ids=image_ids,
                    iou_types=(eval_type,))[eval_type]


# ------------------------------------------------------------------ Command line

def _parse_classes(text, data, where):
    """``--classes`` "1,3" or "person,car" -> sorted category ids of the json ``data``."""
    if text is None:
        return None
    by_name = {str(c["name"]): c["id"] for c in data["categories"]}
    ids = set(by_name.values())
    chosen = []
    for item in (s.strip() for s in str(text).split(",") if s.strip()):
        if item in by_name:
            chosen.append(by_name[item])
        elif item.lstrip("-").isdigit() and int(item) in ids:
            chosen.append(int(item))
        else:
            known = [f"{c['id']}:{c['name']}" for c in data["categories"]][:40]
            raise ValueError(f"--classes: {item!r} is neither a category id nor a name of "
                             f"{where}; categories (id:name): {known}")
    if not chosen:
        raise ValueError(f"--classes {text!r}: no class given")
    return list(dict.fromkeys(chosen))


def _sources(args, command):
    """[(annotation json path, image folder)] for training and for validation/evaluation."""
    annotations = args.annotations
    if annotations is None and args.dataset and os.path.isfile(args.dataset):
        annotations = args.dataset
    if annotations is not None:
        if args.download:
            raise ValueError("--download fetches MS COCO into the classic layout; it does not "
                             "apply to --annotations / a json --dataset")
        images = args.images or os.path.dirname(os.path.abspath(annotations))
        primary = [(annotations, images)]
        if args.val_annotations:
            val = [(args.val_annotations,
                    args.val_images or os.path.dirname(os.path.abspath(args.val_annotations)))]
        else:
            val = None  # split off from the training json
        return (primary, val) if command == "train" else (None, primary)
    require_dataset_dir(args.dataset, "COCO dataset")
    year = str(args.year)
    if command == "train":
        subsets = ["train", "valminusminival"] if year == "2014" else ["train"]
    else:
        subsets = []
    val_subset = args.subset or ("minival" if year == "2014" else "val")
    for subset in subsets + [val_subset]:
        if args.download:
            download_coco(args.dataset, subset, year)
    train_sources = [coco_paths(args.dataset, s, year) for s in subsets] or None
    return train_sources, [coco_paths(args.dataset, val_subset, year)]


def _read(path, cache):
    """Read and validate a json once; errors name the file (a dict alone could not)."""
    if path not in cache:
        data = read_coco_json(path)
        validate_coco_dict(data, f"COCO annotation file '{path}'")
        cache[path] = data
    return cache[path]


def _load(sources, class_ids, cache, image_ids=None):
    dataset, coco = CocoDataset(), None
    for annotation_file, image_dir in sources:
        data = _read(annotation_file, cache)
        ids = class_ids
        if set(ids) == {c["id"] for c in data["categories"]}:
            ids = None  # all classes: keep the images without objects too
        coco = dataset.load_coco(data, image_dir, class_ids=ids, image_ids=image_ids,
                                 return_coco=True)
    dataset.prepare()
    return dataset, coco


def load_datasets(args, command):
    """Datasets for the command: (train, val, None) for train, (None, dataset, coco) else."""
    if getattr(args, "format", "coco") != "coco":
        from mrcnn.data.formats import load_format_datasets
        return (*load_format_datasets(args, command, args.dataset or args.annotations), None)
    train_sources, val_sources = _sources(args, command)
    first = (train_sources or val_sources)[0][0]
    cache = {}
    data = _read(first, cache)
    class_ids = _parse_classes(args.classes, data, f"'{first}'")
    if class_ids is None:
        class_ids = [c["id"] for c in data["categories"]]
    if command != "train":
        dataset, coco = _load(val_sources, class_ids, cache)
        return None, dataset, coco
    if val_sources is not None:
        dataset_train, _ = _load(train_sources, class_ids, cache)
        dataset_val, _ = _load(val_sources, class_ids, cache)
        return dataset_train, dataset_val, None
    # One json only: hold out the last --val-fraction of its images for validation.
    probe, _ = _load(train_sources, class_ids, cache)
    all_ids = [info["id"] for info in probe.image_info]
    n_val = int(round(len(all_ids) * args.val_fraction))
    n_val = min(max(n_val, 1), len(all_ids) - 1) if len(all_ids) > 1 else 0
    if n_val == 0:
        logger.warning("only one image: validating on the training image")
        return probe, probe, None
    dataset_train, _ = _load(train_sources, class_ids, cache, all_ids[:-n_val])
    dataset_val, _ = _load(train_sources, class_ids, cache, all_ids[-n_val:])
    print(f"Validation: the last {n_val} of {len(all_ids)} images of {first}")
    return dataset_train, dataset_val, None


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m samples.coco.coco",
        description="Train or evaluate Mask R-CNN on MS COCO or any COCO-format json.")
    parser.add_argument("command", choices=["train", "evaluate"])
    parser.add_argument("--dataset", metavar="DIR_OR_JSON",
                        help="COCO folder (classic layout) or a COCO json file")
    parser.add_argument("--annotations", metavar="FILE", help="a COCO instances json")
    parser.add_argument("--images", metavar="DIR",
                        help="folder of the json's images (default: the json's folder)")
    parser.add_argument("--val-annotations", metavar="FILE",
                        help="train: validation json (default: split off --val-fraction)")
    parser.add_argument("--val-images", metavar="DIR")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--subset", help="classic layout: subset to evaluate (default val; "
                                         "minival for 2014)")
    parser.add_argument("--year", default=DEFAULT_DATASET_YEAR, metavar="YEAR",
                        help=f"classic layout: 2014 or 2017 (default {DEFAULT_DATASET_YEAR})")
    add_weights_argument(parser, "--model", "--weights")
    parser.add_argument("--logs", default=DEFAULT_LOGS_DIR, metavar="DIR",
                        help=f"logs and checkpoints folder (default {DEFAULT_LOGS_DIR})")
    parser.add_argument("--limit", type=int, default=500,
                        help="evaluate: number of images (default 500; 0: all)")
    parser.add_argument("--download", action="store_true",
                        help="download MS COCO into --dataset if missing (needs internet)")
    parser.add_argument("--classes", metavar="IDS_OR_NAMES",
                        help="comma-separated category ids or names to use (default: all); "
                             "NUM_CLASSES follows")
    parser.add_argument("--epochs", metavar="E|E1,E2,E3",
                        help="stop epochs: three for the classic schedule (default 40,120,160), "
                             "one with --layers")
    parser.add_argument("--layers", help="train one stage: heads, 3+, 4+, 5+, all or a regex")
    parser.add_argument("--lr", type=float, help="base learning rate (default LEARNING_RATE)")
    parser.add_argument("--steps-per-epoch", type=int, help="override STEPS_PER_EPOCH")
    parser.add_argument("--output", metavar="FILE", help="evaluate: write the results json")
    from mrcnn.data.formats import add_format_arguments
    add_format_arguments(parser, images_option=False)  # --images is defined above
    return parser


def main(argv=None):
    """Command-line entry point; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.weights is None:
        parser.error("--model is required: a .h5 path, last, imagenet, coco or none")
    if not args.dataset and not args.annotations:
        parser.error("give --dataset DIR_OR_JSON or --annotations FILE")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        schedule_args = (args.epochs, args.layers)
        dataset_train, dataset, coco = load_datasets(args, args.command)
        if args.command == "train":
            config = make_config(CocoConfig, NUM_CLASSES=dataset_train.num_classes,
                                 LEARNING_RATE=args.lr, STEPS_PER_EPOCH=args.steps_per_epoch)
            schedule = build_schedule(config.LEARNING_RATE, *schedule_args,
                                      from_scratch=default_layers(args.weights) == "all")
    except (OSError, ValueError) as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")

    from mrcnn.model.maskrcnn import MaskRCNN
    if args.command == "train":
        config.display()
        print(f"Training on {dataset_train.num_images} images, validating on "
              f"{dataset.num_images}; {dataset_train.num_classes - 1} classes")
        train(config, dataset_train, dataset, model_dir=args.logs, weights=args.weights,
              schedule=schedule)
        return 0
    config = make_config(CocoInferenceConfig, NUM_CLASSES=dataset.num_classes)
    config.display()
    model = MaskRCNN(mode="inference", config=config, model_dir=args.logs)
    load_model_weights(model, args.weights)
    count = min(args.limit, dataset.num_images) if args.limit else dataset.num_images
    print(f"Running COCO evaluation on {count} images.")
    evaluate(model, dataset, coco=coco, limit=args.limit, output=args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
