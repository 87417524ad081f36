"""COCO AP (box and mask) through pycocotools, over a whole dataset.

COCO AP is the **mean over the ten IoU thresholds 0.50:0.05:0.95 of the 101-point interpolated
precision, computed per category over all detections of the whole dataset, then averaged over
categories**. It is the number papers and the COCO leaderboard quote ("box AP", "mask AP"). It is
*not* the classic per-image mask AP of :mod:`mrcnn.eval.metrics` (one image, one IoU threshold,
all-point interpolation, classes pooled); see ``docs/evaluation.md``.

Entry point: :func:`evaluate_coco` (a :class:`~mrcnn.data.dataset.Dataset` plus one
``MaskRCNN.detect`` result per image). It builds the pycocotools objects with
:func:`build_coco_ground_truth` and :func:`detections_to_coco_results` and scores them
with
:func:`evaluate_coco_results`; all three are public, for users who want the pycocotools objects
themselves (e.g. to dump a results json) or who evaluate against another ground truth (e.g. an
official COCO annotation json).

Conventions:
    * Predictions are ``MaskRCNN.detect`` dicts: ``rois`` ``[N, (y1, x1, y2, x2)]`` pixels
      (y2, x2 exclusive), ``class_ids`` ``[N]`` internal class ids, ``scores`` ``[N]``,
      ``masks`` ``[H, W, N]`` bool at the original image size. No padding.
    * COCO boxes are ``[x, y, width, height]`` in pixels; masks are compressed RLE with
      ``counts`` as ``str`` (json-serializable).
    * Ground truth: ``Dataset.load_mask`` masks; a negative class id marks a crowd region of class
      ``abs(id)`` (classic convention), written with ``iscrowd=1`` so that COCOeval ignores it
      (a detection on it is neither a true nor a false positive).
    * Ids: COCO image ids are the dataset's internal image ids and category ids its internal class
      ids, unless ``use_source_ids=True`` (then ``image_info[i]["id"]`` and the source class ids,
      e.g. to compare with an official COCO annotation file).
"""
import contextlib
import io
import logging
from collections.abc import Mapping

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mrcnn.ops.masks import extract_bboxes

__all__ = [
    "COCO_AP_DESCRIPTION",
    "COCO_METRIC_NAMES",
    "CocoMetrics",
    "build_coco_ground_truth",
    "detections_to_coco_results",
    "evaluate_coco",
    "evaluate_coco_results",
]

logger = logging.getLogger(__name__)

COCO_AP_DESCRIPTION = ("COCO AP (mean over IoU 0.50:0.95, 101-point interpolation, "
                       "over the whole dataset)")

# Order of COCOeval.stats for the default (bbox/segm) parameters.
COCO_METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl",
                     "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")

_IOU_TYPES = ("bbox", "segm")
_PREDICTION_KEYS = ("rois", "class_ids", "scores", "masks")


class CocoMetrics(dict):
    """COCO metrics of one IoU type ("bbox" or "segm") over the whole evaluated set of images.

    A dict of float metrics, in the order of ``COCOeval.stats``:

    * ``"AP"``: COCO AP, mean over IoU 0.50:0.95, 101-point interpolation, whole dataset.
    * ``"AP50"``, ``"AP75"``: the same at IoU 0.50 / 0.75 only (still dataset-wide, 101-point).
    * ``"APs"``, ``"APm"``, ``"APl"``: AP for small (area < 32**2), medium and large
      (area > 96**2) objects.
    * ``"AR1"``, ``"AR10"``, ``"AR100"``, ``"ARs"``, ``"ARm"``, ``"ARl"``: average recall with at
      most 1/10/100 detections per image, and per object size.

    A value of -1.0 is pycocotools' "undefined": no ground truth in that category/area range
    (e.g. ``APl`` on small images).

    Attributes:
        iou_type: "bbox" or "segm".
        stats: ``[12]`` float64 array, ``COCOeval.stats``.
        summary: str, a header line and the text ``COCOeval.summarize()`` prints.
        description: :data:`COCO_AP_DESCRIPTION`.
        coco_eval: the ``COCOeval`` object (per-category precision in ``coco_eval.eval``), or None.
    """

    description = COCO_AP_DESCRIPTION

    def __init__(self, iou_type, stats, summary, coco_eval=None):
        stats = np.asarray(stats, dtype=np.float64).reshape(-1)
        if stats.shape[0] != len(COCO_METRIC_NAMES):
            raise ValueError(
                f"stats must hold {len(COCO_METRIC_NAMES)} values (COCOeval.stats), got "
                f"{stats.shape[0]}")
        super().__init__(zip(COCO_METRIC_NAMES, (float(s) for s in stats)))
        self.iou_type = iou_type
        self.stats = stats
        self.summary = summary
        self.coco_eval = coco_eval

    def __repr__(self):
        values = ", ".join(f"{k}={v:.4f}" for k, v in self.items())
        return f"CocoMetrics(iou_type={self.iou_type!r}, {values})"


@contextlib.contextmanager
def _captured_stdout():
    """pycocotools prints progress on stdout; collect it instead of spamming the caller."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        yield buffer


def _encode_masks(masks):
    """``[H, W, N]`` masks -> N compressed RLE dicts with ``counts`` decoded to str."""
    rles = mask_utils.encode(np.asfortranarray(masks.astype(np.uint8)))
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return rles


def _coco_image_id(dataset, image_id, use_source_ids):
    if use_source_ids:
        source_id = dataset.image_info[int(image_id)]["id"]
        return source_id.item() if isinstance(source_id, np.generic) else source_id
    return int(image_id)


def _coco_category_id(dataset, class_id, use_source_ids, num_classes, where):
    class_id = int(class_id)
    if not 0 < class_id < num_classes:
        raise ValueError(
            f"{where}: class id {class_id} is not a foreground class; allowed are 1.."
            f"{num_classes - 1} (0 is background)")
    if not use_source_ids:
        return class_id
    source = dataset.class_info[class_id]["source"]
    source_id = dataset.get_source_class_id(class_id, source)
    return source_id.item() if isinstance(source_id, np.generic) else source_id


def _check_image_ids(image_ids, name="image_ids"):
    image_ids = [int(i) for i in np.asarray(image_ids).reshape(-1)]
    if len(set(image_ids)) != len(image_ids):
        seen, duplicates = set(), []
        for i in image_ids:
            if i in seen:
                duplicates.append(i)
            seen.add(i)
        raise ValueError(f"{name} contains duplicate image ids: {sorted(set(duplicates))[:10]}")
    return image_ids


def _image_size(dataset, image_id, masks):
    """(height, width) of an image: from its masks, else image_info, else the loaded image.

    Images without instances often come back from ``load_mask`` as a ``[0, 0, 0]`` array (the
    base-class default), which carries no size.
    """
    if masks.shape[0] > 0 and masks.shape[1] > 0:
        return int(masks.shape[0]), int(masks.shape[1])
    info = dataset.image_info[int(image_id)]
    if "height" in info and "width" in info:
        return int(info["height"]), int(info["width"])
    image = dataset.load_image(image_id)
    return int(image.shape[0]), int(image.shape[1])


def build_coco_ground_truth(dataset, image_ids=None, use_source_ids=False):
    """A pycocotools ``COCO`` ground truth built from ``dataset.load_mask``.

    Args:
        dataset: a prepared :class:`~mrcnn.data.dataset.Dataset`.
        image_ids: internal image ids to include (default: all ``dataset.image_ids``), no
            duplicates.
        use_source_ids: use ``image_info[i]["id"]`` as COCO image ids and the source class ids as
            category ids, instead of the internal ids.

    Each instance of ``load_mask`` (``[H, W, N]`` bool, class ids ``[N]``) becomes an annotation:
    ``segmentation`` compressed RLE of the mask, ``bbox`` ``[x, y, w, h]`` of the mask's extent,
    ``area`` the mask's pixel count, ``iscrowd`` 1 for a negative class id (category
    ``abs(id)``), else 0. Annotation ids start at 1 (COCOeval treats id 0 as "no match").
    Empty masks are skipped (logged): they could never be matched. Images are ``{"id", "height",
    "width"}`` with the size of the masks (for an instance-less ``[0, 0, 0]`` mask:
    ``image_info`` ``height``/``width``, else the loaded image). Categories are all dataset
    classes but BG, ``{"id", "name"}``.

    Returns:
        ``pycocotools.coco.COCO`` with its index built.

    Raises:
        ValueError: masks that are not ``[H, W, N]``, a class id count that differs from N, a class
            id 0 or out of range, duplicate image ids.
    """
    if image_ids is None:
        image_ids = dataset.image_ids
    image_ids = _check_image_ids(image_ids)
    num_classes = int(dataset.num_classes)

    categories = []
    for class_id in dataset.class_ids:
        if int(class_id) == 0:
            continue
        categories.append({
            "id": _coco_category_id(dataset, class_id, use_source_ids, num_classes, "categories"),
            "name": dataset.class_names[int(class_id)],
        })

    images, annotations, seen_coco_ids = [], [], {}
    for image_id in image_ids:
        masks, class_ids = dataset.load_mask(image_id)
        masks = np.asarray(masks)
        class_ids = np.asarray(class_ids).reshape(-1)
        if masks.ndim != 3:
            raise ValueError(
                f"load_mask({image_id}) returned masks of shape {masks.shape}; expected [H, W, N]")
        if masks.shape[-1] != class_ids.shape[0]:
            raise ValueError(
                f"load_mask({image_id}) returned {masks.shape[-1]} masks (shape {masks.shape}) but "
                f"{class_ids.shape[0]} class ids")
        height, width = _image_size(dataset, image_id, masks)
        coco_image_id = _coco_image_id(dataset, image_id, use_source_ids)
        if coco_image_id in seen_coco_ids:
            raise ValueError(
                f"image {image_id}: COCO image id {coco_image_id!r} is already used by image "
                f"{seen_coco_ids[coco_image_id]} (use_source_ids={use_source_ids}); COCO image ids "
                f"must be unique")
        seen_coco_ids[coco_image_id] = image_id
        images.append({"id": coco_image_id, "height": height, "width": width})
        if class_ids.shape[0] == 0:
            continue

        masks = masks.astype(bool)
        areas = masks.sum(axis=(0, 1))
        keep = areas > 0
        if not np.all(keep):
            logger.warning("build_coco_ground_truth: image %s has %d empty instance mask(s); "
                           "skipped", image_id, int(np.sum(~keep)))
        masks, class_ids, areas = masks[..., keep], class_ids[keep], areas[keep]
        if class_ids.shape[0] == 0:
            continue
        boxes = extract_bboxes(masks)
        rles = _encode_masks(masks)
        for k, class_id in enumerate(class_ids):
            y1, x1, y2, x2 = (int(v) for v in boxes[k])
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": coco_image_id,
                "category_id": _coco_category_id(dataset, abs(int(class_id)), use_source_ids,
                                                 num_classes, f"load_mask({image_id})"),
                "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                "area": float(areas[k]),
                "iscrowd": int(class_id < 0),
                "segmentation": rles[k],
            })

    coco = COCO()
    coco.dataset = {"info": {}, "images": images, "annotations": annotations,
                    "categories": categories}
    with _captured_stdout():
        coco.createIndex()
    return coco


def detections_to_coco_results(image_ids, predictions, dataset=None, use_source_ids=False,
                       image_shapes=None):
    """COCO result dicts from ``MaskRCNN.detect`` outputs.

    Args:
        image_ids: ``[K]`` internal image ids, aligned with ``predictions``.
        predictions: K dicts ``{"rois": [N, (y1, x1, y2, x2)] pixels, "class_ids": [N] int,
            "scores": [N] float, "masks": [H, W, N] bool}`` (the ``MaskRCNN.detect`` format, no
            padding). Non-bool masks are binarized with ``!= 0``. An image with N = 0 contributes
            nothing.
        dataset: needed only with ``use_source_ids`` (to map image and class ids); when given,
            class ids are also checked against ``dataset.num_classes``.
        use_source_ids: as in :func:`build_coco_ground_truth`; use the same value for both.
        image_shapes: optional K ``(height, width)`` pairs; the masks must have this size.

    Returns:
        list of ``{"image_id", "category_id", "bbox": [x, y, w, h] (from rois), "score",
        "segmentation": compressed RLE with str counts}`` (json-serializable).

    Raises:
        ValueError: K mismatch, a missing key, inconsistent N, masks not ``[H, W, N]``, masks of a
            size other than ``image_shapes`` (the message names the image id and both shapes),
            a class id <= 0, ``use_source_ids`` without ``dataset``.
    """
    image_ids = _check_image_ids(image_ids)
    predictions = list(predictions)
    if len(predictions) != len(image_ids):
        raise ValueError(
            f"predictions has {len(predictions)} entries but image_ids has {len(image_ids)}; give "
            f"one MaskRCNN.detect result per image id")
    if image_shapes is not None and len(image_shapes) != len(image_ids):
        raise ValueError(
            f"image_shapes has {len(image_shapes)} entries but image_ids has {len(image_ids)}")
    if use_source_ids and dataset is None:
        raise ValueError("use_source_ids=True needs the dataset to map ids; pass dataset=...")
    num_classes = int(dataset.num_classes) if dataset is not None else None

    results = []
    for k, (image_id, prediction) in enumerate(zip(image_ids, predictions)):
        where = f"predictions for image {image_id}"
        if not isinstance(prediction, Mapping):
            raise ValueError(f"{where}: expected a dict with keys {_PREDICTION_KEYS}, got "
                             f"{type(prediction).__name__}")
        missing = [key for key in _PREDICTION_KEYS if key not in prediction]
        if missing:
            raise ValueError(f"{where}: missing key(s) {missing}; expected {_PREDICTION_KEYS}")
        rois = np.asarray(prediction["rois"], dtype=np.float64)
        rois = rois.reshape(0, 4) if rois.size == 0 else rois
        class_ids = np.asarray(prediction["class_ids"]).reshape(-1)
        scores = np.asarray(prediction["scores"], dtype=np.float64).reshape(-1)
        masks = np.asarray(prediction["masks"])
        if rois.ndim != 2 or rois.shape[1] != 4:
            raise ValueError(f"{where}: rois must be [N, (y1, x1, y2, x2)], got shape {rois.shape}")
        n = rois.shape[0]
        if class_ids.shape[0] != n or scores.shape[0] != n:
            raise ValueError(
                f"{where}: {n} rois but {class_ids.shape[0]} class_ids and {scores.shape[0]} "
                f"scores")
        if n > 0 and (masks.ndim != 3 or masks.shape[-1] != n):
            raise ValueError(f"{where}: masks must be [H, W, {n}] to match the rois, got shape "
                             f"{masks.shape}")
        if image_shapes is not None and masks.ndim == 3:
            expected = tuple(int(v) for v in image_shapes[k])
            if tuple(masks.shape[:2]) != expected:
                raise ValueError(
                    f"{where}: masks have shape {masks.shape} (height, width {masks.shape[:2]}) "
                    f"but the image is {expected} (height, width); detect() masks must be at the "
                    f"original image size")
        if n == 0:
            continue

        coco_image_id = _coco_image_id(dataset, image_id, use_source_ids)
        rles = _encode_masks(masks != 0)
        for i in range(n):
            class_id = int(class_ids[i])
            if num_classes is not None:
                category_id = _coco_category_id(dataset, class_id, use_source_ids, num_classes,
                                                where)
            elif class_id <= 0:
                raise ValueError(f"{where}: class id {class_id} is not a foreground class "
                                 f"(must be >= 1; 0 is background)")
            else:
                category_id = class_id
            y1, x1, y2, x2 = (float(v) for v in rois[i])
            results.append({
                "image_id": coco_image_id,
                "category_id": category_id,
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "score": float(scores[i]),
                "segmentation": rles[i],
            })
    return results


def _results_for(results, iou_type):
    """Fresh copies of the result dicts for one IoU type (loadRes writes into them).

    For "segm" the boxes are dropped: when a result has a bbox, pycocotools sets its area to the
    box area, which would sort detections into the small/medium/large ranges by box instead of
    mask area (the official segm result format has no bbox).
    """
    if iou_type == "segm":
        return [{key: value for key, value in r.items() if key != "bbox"} for r in results]
    return [dict(r) for r in results]


def _empty_detections(coco_gt):
    """A results ``COCO`` without detections (``COCO.loadRes`` rejects an empty list)."""
    coco_dt = COCO()
    coco_dt.dataset = {"info": {}, "images": list(coco_gt.dataset["images"]),
                       "annotations": [], "categories": list(coco_gt.dataset["categories"])}
    with _captured_stdout():
        coco_dt.createIndex()
    return coco_dt


def _check_iou_types(iou_types):
    """``"bbox"``, ``"segm"`` or a sequence of them -> a non-empty tuple."""
    if isinstance(iou_types, str):
        iou_types = (iou_types,)
    iou_types = tuple(iou_types)
    unknown = [t for t in iou_types if t not in _IOU_TYPES]
    if unknown or not iou_types:
        raise ValueError(f"iou_types {iou_types!r}: allowed are {_IOU_TYPES}")
    return iou_types


def evaluate_coco_results(coco_gt, results, iou_types=("bbox", "segm"), image_ids=None,
                          verbose=False, category_ids=None):
    """pycocotools COCOeval of COCO result dicts against a ``COCO`` ground truth.

    The lower-level half of :func:`evaluate_coco`, for ground truth that is not a
    :class:`~mrcnn.data.dataset.Dataset` (e.g. an official annotation json loaded with
    ``pycocotools.coco.COCO``) or results already in COCO format (e.g. a results json).

    Args:
        coco_gt: ``pycocotools.coco.COCO`` ground truth with its index built (from
            :func:`build_coco_ground_truth` or a COCO json). Annotations need ``area``, ``bbox``
            and ``segmentation`` for both IoU types; ``iscrowd=1`` ones are ignored regions.
        results: list of COCO result dicts ``{"image_id", "category_id", "score", "bbox":
            [x, y, w, h] pixels, "segmentation": RLE}``
            (:func:`detections_to_coco_results`), with the
            ids of ``coco_gt``. Not modified (pycocotools writes into copies). May be empty.
        iou_types: "bbox", "segm" or a sequence of them.
        image_ids: COCO image ids evaluated (default: all images of ``coco_gt``); their ground
            truth without results counts as missed, results on other images are ignored.
        verbose: print each summary table (``CocoMetrics.summary``).
        category_ids: COCO category ids evaluated (default: all categories of ``coco_gt``).

    For "segm" the results' boxes are dropped before ``loadRes``: with a bbox pycocotools sets a
    result's area to the box area and would sort it into small/medium/large by box, not mask.
    With no result at all (``loadRes`` rejects an empty list) the evaluation runs on an empty
    detection set: metrics with ground truth are 0.0, those without are -1.0.

    Returns:
        dict ``{iou_type: CocoMetrics}``; ``CocoMetrics.summary`` starts with a header line
        naming the IoU type, the number of images and of detections.

    Raises:
        ValueError: unknown or no iou type, empty ``image_ids``.
    """
    iou_types = _check_iou_types(iou_types)
    if image_ids is None:
        image_ids = [image["id"] for image in coco_gt.dataset["images"]]
    image_ids = list(image_ids)
    if not image_ids:
        raise ValueError("image_ids is empty (or coco_gt has no image); nothing to evaluate")
    results = list(results)

    metrics = {}
    for iou_type in iou_types:
        with _captured_stdout():
            if results:
                coco_dt = coco_gt.loadRes(_results_for(results, iou_type))
            else:
                coco_dt = _empty_detections(coco_gt)
            coco_eval = COCOeval(coco_gt, coco_dt, iou_type)
            coco_eval.params.imgIds = list(image_ids)
            if category_ids is not None:
                coco_eval.params.catIds = list(category_ids)
            coco_eval.evaluate()
            coco_eval.accumulate()
        with _captured_stdout() as text:
            coco_eval.summarize()
        header = (f"COCO {iou_type} AP over {len(image_ids)} images, {len(results)} "
                  f"detections ({COCO_AP_DESCRIPTION}):\n")
        metrics[iou_type] = CocoMetrics(iou_type, coco_eval.stats, header + text.getvalue(),
                                        coco_eval=coco_eval)
        if verbose:
            print(metrics[iou_type].summary, end="")
    return metrics


def evaluate_coco(dataset, predictions, image_ids=None, iou_types=("bbox", "segm"),
                  verbose=False, use_source_ids=False):
    """COCO box and/or mask AP of ``MaskRCNN.detect`` results over a dataset, via pycocotools.

    The result is COCO AP (mean over IoU 0.50:0.95, 101-point interpolation, over the whole
    dataset) and its companions AP50, AP75, APs/m/l and AR; not the classic per-image mAP of
    :mod:`mrcnn.eval.metrics`.

    Args:
        dataset: a prepared :class:`~mrcnn.data.dataset.Dataset`; ground truth from ``load_mask``
            (negative class id = crowd region of class ``abs(id)``, ignored by the evaluation).
        predictions: one ``MaskRCNN.detect`` dict per image, aligned with ``image_ids``:
            ``rois`` ``[N, (y1, x1, y2, x2)]`` pixels, ``class_ids`` ``[N]``, ``scores`` ``[N]``,
            ``masks`` ``[H, W, N]`` bool at the original image size.
        image_ids: internal image ids evaluated (default ``dataset.image_ids``).
        iou_types: "bbox", "segm" or a sequence of them.
        verbose: print each summary table (``CocoMetrics.summary``).
        use_source_ids: evaluate with source image/class ids (see
            :func:`build_coco_ground_truth`); the metrics do not depend on it.

    Images without predictions count their ground truth as missed; images without ground truth
    make every prediction on them a false positive. With no prediction at all (pycocotools'
    ``loadRes`` fails on an empty list) the evaluation runs on an empty detection set: every
    metric whose category/area range has ground truth is 0.0, and those without any ground truth
    are -1.0 as in any pycocotools run.

    Returns:
        dict ``{iou_type: CocoMetrics}`` (keys "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1",
        "AR10", "AR100", "ARs", "ARm", "ARl", plus ``.summary`` text).

    Raises:
        ValueError: unknown iou type, no image, predictions not aligned with image_ids, masks whose
            size differs from the image (names the image id and both shapes), and the errors of
            the builders.
    """
    iou_types = _check_iou_types(iou_types)
    if image_ids is None:
        image_ids = dataset.image_ids
    image_ids = _check_image_ids(image_ids)
    if not image_ids:
        raise ValueError("image_ids is empty; nothing to evaluate")
    predictions = list(predictions)
    if len(predictions) != len(image_ids):
        raise ValueError(
            f"predictions has {len(predictions)} entries but {len(image_ids)} images are "
            f"evaluated; give one MaskRCNN.detect result per image id (image_ids={image_ids[:5]}"
            f"{'...' if len(image_ids) > 5 else ''})")

    coco_gt = build_coco_ground_truth(dataset, image_ids, use_source_ids=use_source_ids)
    coco_image_ids = [image["id"] for image in coco_gt.dataset["images"]]
    image_shapes = [(image["height"], image["width"]) for image in coco_gt.dataset["images"]]
    results = detections_to_coco_results(image_ids, predictions, dataset=dataset,
                                 use_source_ids=use_source_ids, image_shapes=image_shapes)

    return evaluate_coco_results(coco_gt, results, iou_types=iou_types,
                                 image_ids=coco_image_ids, verbose=verbose)
