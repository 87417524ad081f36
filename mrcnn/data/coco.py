"""COCO-format instance segmentation data: :class:`CocoDataset` reads any COCO "instances" json.

The json may come from MS COCO itself or from an annotation tool's COCO export (CVAT, Label
Studio, labelme2coco, Roboflow ...). It is validated before use, so that a broken file fails at
load time with a message naming the file and the offending entry, not later inside a training
step.

Conventions (classic ``samples/coco/coco.py``):

* Classes: each json category becomes a class of source ``source`` (default ``"coco"``) with its
  own category id; ``prepare()`` numbers them contiguously in ascending category-id order
  (internal id 1 = smallest category id, 0 = background). Category ids 3 and 7 become internal
  ids 1 and 2. :meth:`CocoDataset.to_coco_category_id` / ``get_source_class_id`` map back.
* Images: internal image ids are positions in ``image_info``; the json's image id is
  ``image_info[i]["id"]`` (:meth:`CocoDataset.to_coco_image_id`).
* ``load_mask`` returns ``[H, W, N]`` bool masks and ``[N]`` int32 internal class ids; a crowd
  region (``iscrowd=1``) has the *negative* class id, so that the RPN/ROI targets exclude it and
  the COCO evaluator ignores it.
* Segmentations: polygons (a list of ``[x1, y1, x2, y2, ...]`` in continuous pixel coordinates:
  a pixel ``(x, y)`` covers ``[x, x + 1) x [y, y + 1)``), uncompressed RLE (``counts`` a list)
  and compressed RLE (``counts`` a str), all decoded with ``pycocotools.mask``.
"""
import contextlib
import io
import json
import logging
import os
from collections.abc import Mapping

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from mrcnn.data.dataset import Dataset
from mrcnn.data.validation import check_coco_annotation_fields

__all__ = ["CocoDataset", "CocoFormatError", "read_coco_json", "validate_coco_dict"]

logger = logging.getLogger(__name__)

_REQUIRED_TOP_LEVEL = ("images", "annotations", "categories")


class CocoFormatError(ValueError):
    """A COCO json is malformed: invalid JSON, missing keys, dangling ids, bad segmentations."""


def read_coco_json(path):
    """Read a COCO json file into a dict, with errors that name the file.

    Args:
        path: path of the json file (str or os.PathLike).

    Returns:
        The parsed top-level dict (not validated; see :func:`validate_coco_dict`).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        IsADirectoryError: ``path`` is a folder.
        CocoFormatError: the file is not valid JSON (message: file, line, column and the parser's
            reason), not UTF-8, or its top level is not an object.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"COCO annotation file not found: '{path}'")
    if os.path.isdir(path):
        raise IsADirectoryError(
            f"COCO annotation file '{path}' is a folder; pass the json file (e.g. "
            f"'{os.path.join(path, 'annotations', 'instances_val2017.json')}')")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise CocoFormatError(
            f"COCO annotation file '{path}' is not valid JSON: {err.msg} at line {err.lineno}, "
            f"column {err.colno} (character {err.pos})") from err
    except UnicodeDecodeError as err:
        raise CocoFormatError(
            f"COCO annotation file '{path}' is not UTF-8 text ({err.reason} at byte "
            f"{err.start})") from err
    if not isinstance(data, dict):
        raise CocoFormatError(
            f"COCO annotation file '{path}': the top level must be a JSON object with keys "
            f"{list(_REQUIRED_TOP_LEVEL)}, got a {type(data).__name__}")
    return data


def _first_and_count(problems):
    first = problems[0]
    more = len(problems) - 1
    return first + (f" ({more} more like it)" if more else "")


def _check_segmentation(segm, ann, height, width, where):
    """Structural check of one annotation's ``segmentation`` (cheap: no decoding)."""
    ann_id = ann.get("id")
    if segm is None or (isinstance(segm, list) and not segm):
        return  # bbox-only annotation: skipped by load_mask, nothing to decode
    if isinstance(segm, list):
        for polygon in segm:
            if not isinstance(polygon, (list, tuple)) or len(polygon) % 2:
                length = len(polygon) if isinstance(polygon, (list, tuple)) else type(polygon)
                raise CocoFormatError(
                    f"{where}: annotation id {ann_id} (image_id {ann.get('image_id')}): polygon "
                    f"must be a flat list [x1, y1, x2, y2, ...] with an even number of values, "
                    f"got {length}")
        return
    if isinstance(segm, Mapping):
        size = segm.get("size")
        if "counts" not in segm or not isinstance(size, (list, tuple)) or len(size) != 2:
            raise CocoFormatError(
                f"{where}: annotation id {ann_id} (image_id {ann.get('image_id')}): RLE "
                f"segmentation needs 'counts' and 'size' [height, width], got keys "
                f"{sorted(segm)}")
        if (height is not None and width is not None
                and (int(size[0]), int(size[1])) != (int(height), int(width))
                and not ann.get("iscrowd", 0)):
            # Crowd regions of the wrong size are replaced by the whole image (classic);
            # a wrong-sized object mask has no sensible repair.
            raise CocoFormatError(
                f"{where}: annotation id {ann_id}: RLE size {list(size)} (height, width) differs "
                f"from image {ann.get('image_id')}'s size [{height}, {width}]")
        return
    raise CocoFormatError(
        f"{where}: annotation id {ann_id}: 'segmentation' must be a list of polygons or an RLE "
        f"dict, got {type(segm).__name__}")


def validate_coco_dict(data, where="COCO annotations"):
    """Check a COCO instances dict; raise :class:`CocoFormatError` naming ``where`` on a problem.

    Checked: the top-level keys ``images``, ``annotations``, ``categories`` (lists); every image
    has ``id`` and ``file_name`` (``width``/``height`` optional), ids unique; every category has
    ``id`` and ``name``, ids unique; every annotation has ``id``, ``image_id`` and
    ``category_id`` that exist in ``images`` / ``categories``, and a structurally valid
    ``segmentation`` (polygons with an even number of values; RLE with ``counts`` and ``size``,
    the size equal to the image's for non-crowd regions). The first problem of each kind is
    reported with the number of further ones.
    """
    if not isinstance(data, Mapping):
        raise CocoFormatError(f"{where}: expected a dict (JSON object), got {type(data).__name__}")
    missing = [key for key in _REQUIRED_TOP_LEVEL if key not in data]
    if missing:
        raise CocoFormatError(
            f"{where}: missing top-level key(s) {missing}; a COCO instances file has "
            f"{list(_REQUIRED_TOP_LEVEL)} (found {sorted(data)[:10]})")
    for key in _REQUIRED_TOP_LEVEL:
        if not isinstance(data[key], list):
            raise CocoFormatError(
                f"{where}: '{key}' must be a list, got {type(data[key]).__name__}")

    image_sizes = {}
    for index, image in enumerate(data["images"]):
        if not isinstance(image, Mapping) or "id" not in image or "file_name" not in image:
            raise CocoFormatError(
                f"{where}: images[{index}] must be an object with 'id' and 'file_name', got "
                f"{image!r:.200}")
        if image["id"] in image_sizes:
            raise CocoFormatError(f"{where}: image id {image['id']!r} appears twice in 'images'")
        image_sizes[image["id"]] = (image.get("height"), image.get("width"))

    category_ids = set()
    for index, category in enumerate(data["categories"]):
        if not isinstance(category, Mapping) or "id" not in category or "name" not in category:
            raise CocoFormatError(
                f"{where}: categories[{index}] must be an object with 'id' and 'name', got "
                f"{category!r:.200}")
        if category["id"] in category_ids:
            raise CocoFormatError(
                f"{where}: category id {category['id']!r} appears twice in 'categories'")
        category_ids.add(category["id"])

    bad_image, bad_category = [], []
    for index, ann in enumerate(data["annotations"]):
        if not isinstance(ann, Mapping) or any(k not in ann for k in
                                               ("id", "image_id", "category_id")):
            raise CocoFormatError(
                f"{where}: annotations[{index}] must be an object with 'id', 'image_id' and "
                f"'category_id', got {ann!r:.200}")
        if ann["image_id"] not in image_sizes:
            bad_image.append(f"annotation id {ann['id']!r} (annotations[{index}]) refers to "
                             f"image_id {ann['image_id']!r}, which is not in 'images'")
            continue
        if ann["category_id"] not in category_ids:
            bad_category.append(
                f"annotation id {ann['id']!r} (annotations[{index}]) refers to category_id "
                f"{ann['category_id']!r}, which is not in 'categories' (ids "
                f"{sorted(category_ids, key=str)[:20]})")
            continue
        height, width = image_sizes[ann["image_id"]]
        _check_segmentation(ann.get("segmentation"), ann, height, width, where)
        check_coco_annotation_fields(ann, height, width, where)
    if bad_image:
        raise CocoFormatError(f"{where}: {_first_and_count(bad_image)}")
    if bad_category:
        raise CocoFormatError(f"{where}: {_first_and_count(bad_category)}")


def _make_coco(data):
    """A pycocotools ``COCO`` over an already validated dict (its index prints; keep it quiet)."""
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


class CocoDataset(Dataset):
    """A :class:`~mrcnn.data.dataset.Dataset` over one or more COCO-format instance files.

    Example::

        dataset = CocoDataset()
        dataset.load_coco("annotations/instances_val2017.json", "val2017")
        dataset.prepare()
        masks, class_ids = dataset.load_mask(0)   # [H, W, N] bool, [N] int32 (crowd < 0)

    ``load_coco`` may be called several times (e.g. two subsets) before ``prepare()``; classes of
    the same source and id are registered once.
    """

    def __init__(self, class_map=None):
        super().__init__(class_map)
        self._coco_sources = set()  # sources whose images load_mask decodes itself

    def load_coco(self, annotation_file, image_dir, class_ids=None, source="coco",
                  image_ids=None, limit=None, return_coco=False):
        """Register the classes and images of a COCO instances json.

        Args:
            annotation_file: path of the json, or the already loaded dict (not copied; not
                modified).
            image_dir: folder that ``file_name`` of each image is relative to (a URL prefix is
                accepted too: it is joined with '/').
            class_ids: json category ids to load (default: all). Only images with at least one
                annotation of these categories are loaded (classic), unless ``image_ids`` is
                given; annotations of other categories are dropped.
            source: source name of the classes and images (no '.').
            image_ids: json image ids to load, in this order (default: all, in json order).
            limit: load at most this many images (the first ones).
            return_coco: also return the ``pycocotools.coco.COCO`` object (e.g. for evaluation
                against the json itself).

        Each image is added with ``id`` (json id), ``path`` (``image_dir/file_name``),
        ``width``, ``height`` (None when the json lacks them: then read from the file),
        ``annotations`` (its annotation dicts of the loaded categories) and ``coco_url``.

        Returns:
            the ``COCO`` object if ``return_coco``, else None.

        Raises:
            FileNotFoundError: the json or ``image_dir`` does not exist.
            CocoFormatError (a ValueError): the json is invalid (see :func:`read_coco_json` and
                :func:`validate_coco_dict`), or ``class_ids`` / ``image_ids`` name ids that are
                not in it.
        """
        if isinstance(annotation_file, Mapping):
            data, where = annotation_file, "COCO annotations (dict)"
        else:
            where = f"COCO annotation file '{os.fspath(annotation_file)}'"
            data = read_coco_json(annotation_file)
        image_dir = os.fspath(image_dir)
        if "://" not in image_dir and not os.path.isdir(image_dir):
            raise FileNotFoundError(
                f"image folder not found: '{image_dir}' (images of {where} are read from it)")
        validate_coco_dict(data, where)
        coco = _make_coco(data)

        all_category_ids = [c["id"] for c in data["categories"]]
        if class_ids is None:
            selected = sorted(all_category_ids, key=_sort_key)
        else:
            unknown = [c for c in class_ids if c not in coco.cats]
            if unknown:
                raise CocoFormatError(
                    f"class_ids {unknown} are not categories of {where}; categories are "
                    f"{sorted(all_category_ids, key=_sort_key)[:40]}")
            selected = sorted(set(class_ids), key=_sort_key)
        selected_set = set(selected)

        if image_ids is not None:
            unknown = [i for i in image_ids if i not in coco.imgs]
            if unknown:
                raise CocoFormatError(
                    f"image_ids {unknown[:10]} are not images of {where}")
            chosen = list(image_ids)
        elif class_ids is not None:
            with_class = set()
            for category_id in selected:
                with_class.update(coco.catToImgs.get(category_id, ()))
            chosen = [i for i in coco.imgs if i in with_class]
        else:
            chosen = list(coco.imgs)
        if limit is not None:
            if int(limit) < 0:
                raise ValueError(f"limit must be >= 0 or None, got {limit}")
            chosen = chosen[:int(limit)]

        for category_id in selected:
            self.add_class(source, category_id, coco.cats[category_id]["name"])
        self._coco_sources.add(source)

        no_segmentation = 0
        for coco_image_id in chosen:
            image = coco.imgs[coco_image_id]
            annotations = [a for a in coco.imgToAnns.get(coco_image_id, ())
                           if a["category_id"] in selected_set]
            no_segmentation += sum(1 for a in annotations if not a.get("segmentation"))
            if "://" in image_dir:
                path = image_dir.rstrip("/") + "/" + image["file_name"]
            else:
                path = os.path.join(image_dir, image["file_name"])
            self.add_image(source, image_id=coco_image_id, path=path,
                           width=image.get("width"), height=image.get("height"),
                           annotations=annotations, coco_url=image.get("coco_url"))
        if no_segmentation:
            logger.warning("%s: %d annotation(s) of the loaded images have no segmentation "
                           "(bbox only); load_mask skips them", where, no_segmentation)
        logger.info("%s: loaded %d images, %d classes", where, len(chosen), len(selected))
        return coco if return_coco else None

    # ------------------------------------------------------------------ masks
    def _is_coco_image(self, info):
        return info.get("source") in self._coco_sources and "annotations" in info

    def image_size(self, image_id):
        """(height, width) of image ``image_id``: from the json, else from the file's header."""
        info = self._image_info_for(image_id, "image_size")
        if info.get("height") is not None and info.get("width") is not None:
            return int(info["height"]), int(info["width"])
        from PIL import Image  # the header only; no full decode
        with Image.open(info["path"]) as im:
            width, height = im.size
        info["height"], info["width"] = height, width
        return height, width

    @staticmethod
    def ann_to_rle(annotation, height, width):
        """Compressed RLE of one annotation (classic ``annToRLE``), or None without segmentation.

        Polygons are rasterized at ``height`` x ``width`` and merged; an uncompressed RLE is
        compressed (at its own ``size``); a compressed RLE is returned as is. Polygons with fewer
        than three points are dropped (pycocotools would read a 4-value list as a box).
        """
        segm = annotation.get("segmentation")
        if not segm:
            return None
        if isinstance(segm, list):
            polygons = [list(map(float, p)) for p in segm if len(p) >= 6]
            if not polygons:
                return None
            return mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
        if isinstance(segm["counts"], list):
            size = segm["size"]
            return mask_utils.frPyObjects(segm, int(size[0]), int(size[1]))
        return segm

    def ann_to_mask(self, annotation, height, width):
        """``[h, w]`` uint8 mask of one annotation (classic ``annToMask``), or None.

        ``h, w`` are ``height, width`` except for an RLE whose ``size`` differs.
        """
        rle = self.ann_to_rle(annotation, height, width)
        if rle is None:
            return None
        return mask_utils.decode(rle)

    def load_mask(self, image_id):
        """Instance masks of image ``image_id`` (internal id).

        Returns:
            masks: ``[H, W, N]`` bool, H, W the image size from the json.
            class_ids: ``[N]`` int32 internal class ids; crowd regions (``iscrowd=1``) negative.

        Annotations without segmentation or whose mask has no pixel are skipped. A crowd RLE
        whose size differs from the image is replaced by a mask of the whole image (classic).
        An image without instances gives ``[H, W, 0]`` masks and ``[0]`` class ids. Images of
        non-COCO sources go to the base class.

        Raises:
            RuntimeError: ``prepare()`` was not called.
            CocoFormatError: a non-crowd mask whose size differs from the image (only possible
                for annotations added or edited after ``load_coco``).
        """
        info = self._image_info_for(image_id, "load_mask")
        if not self._is_coco_image(info):
            return super().load_mask(image_id)
        self._require_prepared("load_mask")
        height, width = self.image_size(image_id)
        masks, class_ids = [], []
        for annotation in info["annotations"]:
            class_id = self.map_source_class_id(f"{info['source']}.{annotation['category_id']}")
            mask = self.ann_to_mask(annotation, height, width)
            if mask is None:
                continue
            crowd = bool(annotation.get("iscrowd", 0))
            if mask.shape != (height, width):
                if not crowd:
                    raise CocoFormatError(
                        f"image {image_id} (COCO id {info['id']!r}): annotation id "
                        f"{annotation.get('id')!r} has a mask of size {mask.shape}, the image is "
                        f"{(height, width)}")
                mask = np.ones([height, width], dtype=np.uint8)
            # Objects under one pixel are rounded away by rasterization: nothing to learn.
            if mask.max() < 1:
                continue
            masks.append(mask.astype(bool))
            class_ids.append(-class_id if crowd else class_id)
        if not masks:
            return np.zeros([height, width, 0], dtype=bool), np.zeros([0], dtype=np.int32)
        return np.stack(masks, axis=2), np.asarray(class_ids, dtype=np.int32)

    def load_image(self, image_id):
        """``[H, W, 3]`` uint8 RGB, as :meth:`Dataset.load_image`, checked against the json's size.

        Raises:
            ValueError: the file's size differs from the json's ``height``/``width`` (the masks
                would not line up; e.g. an image rotated or resized after annotation).
        """
        image = super().load_image(image_id)
        info = self.image_info[int(image_id)]
        if self._is_coco_image(info) and info.get("height") is not None \
                and info.get("width") is not None \
                and tuple(image.shape[:2]) != (int(info["height"]), int(info["width"])):
            raise ValueError(
                f"image {image_id} (COCO id {info['id']!r}, file '{info['path']}') is "
                f"{image.shape[0]}x{image.shape[1]} (height x width) but the json says "
                f"{info['height']}x{info['width']}; its masks would not line up")
        return image

    # ------------------------------------------------------------------ ids and links
    def image_reference(self, image_id):
        """The image's ``coco_url`` if the json has one, else its path."""
        info = self._image_info_for(image_id, "image_reference")
        if not self._is_coco_image(info):
            return super().image_reference(image_id)
        return info.get("coco_url") or info["path"]

    def to_coco_category_id(self, class_id):
        """json category id of internal class ``class_id`` (1..num_classes-1; sign ignored so a
        crowd id maps too)."""
        class_id = abs(int(class_id))
        n = len(self.class_info)
        if not 0 < class_id < n:
            raise ValueError(
                f"to_coco_category_id: class_id {class_id} is not a foreground class; allowed "
                f"are 1..{n - 1}")
        return self.get_source_class_id(class_id, self.class_info[class_id]["source"])

    def from_coco_category_id(self, category_id, source="coco"):
        """Internal class id of json category ``category_id`` (needs ``prepare()``)."""
        return self.map_source_class_id(f"{source}.{category_id}")

    def to_coco_image_id(self, image_id):
        """json image id of internal image ``image_id``."""
        return self._image_info_for(image_id, "to_coco_image_id")["id"]

    def from_coco_image_id(self, coco_image_id, source="coco"):
        """Internal image id of json image ``coco_image_id`` (needs ``prepare()``)."""
        self._require_prepared("from_coco_image_id")
        key = f"{source}.{coco_image_id}"
        if key not in self.image_from_source_map:
            raise KeyError(f"from_coco_image_id: no image with COCO id {coco_image_id!r} "
                           f"(source {source!r}) in this dataset")
        return self.image_from_source_map[key]


def _sort_key(value):
    # Category ids are ints in COCO; tolerate strings from odd exports without a TypeError.
    return (0, value, "") if isinstance(value, (int, np.integer)) else (1, 0, str(value))
