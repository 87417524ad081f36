"""LabelMe annotations: :class:`LabelMeDataset` reads a folder of LabelMe json files.

LabelMe (https://github.com/wkentaro/labelme) writes one json per image::

    {"version": "5.2.1", "flags": {}, "imagePath": "cat_01.jpg", "imageData": "<base64 or null>",
     "imageHeight": 480, "imageWidth": 640,
     "shapes": [{"label": "cat", "points": [[x, y], ...], "group_id": null,
                 "shape_type": "polygon", "flags": {}}, ...]}

Conventions:

* Shapes with an area become instances: ``polygon`` (>= 3 points), ``rectangle`` (two opposite
  corners), ``circle`` (centre, then a point on the circle). ``point``, ``line``, ``linestrip``
  and ``points`` have no area: they are skipped, with one warning per file. Any other
  ``shape_type`` is an error.
* Shapes of the same ``label`` and the same non-null ``group_id`` form ONE instance (LabelMe's
  way to draw an object in several parts); every other shape is its own instance.
* Coordinates are LabelMe's pixel coordinates (x right, y down); a pixel is inside a shape when
  its centre is (``skimage.draw``); parts outside the image are clipped.
* The image is ``imageData`` when embedded (base64 of the encoded file), else ``imagePath``
  relative to the json's folder.
* Classes: the labels in ascending name order, or the ``class_names`` given (then a label that is
  not among them is an error naming the file and shape). Source class ids are 1, 2, ... in that
  order; ``image_info[i]["id"]`` is the json path relative to the folder.

Errors are :class:`LabelMeFormatError` (a ``ValueError``) naming the file, the shape index and the
offending value, raised by ``load_labelme`` before any training starts.
"""
import base64
import binascii
import io
import json
import logging
import os

import numpy as np
import skimage.draw

from mrcnn.data.dataset import Dataset, load_image_file, to_rgb_uint8

__all__ = ["LabelMeDataset", "LabelMeFormatError", "read_labelme_file", "shape_mask"]

logger = logging.getLogger(__name__)

_AREA_SHAPES = ("polygon", "rectangle", "circle")
_NO_AREA_SHAPES = ("point", "points", "line", "linestrip")


class LabelMeFormatError(ValueError):
    """A LabelMe json is malformed: invalid JSON, missing keys, bad points or shape types."""


def _points(shape, where):
    points = shape.get("points")
    try:
        array = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        array = None
    if array is None or array.ndim != 2 or array.shape[1] != 2 or not np.all(np.isfinite(array)):
        raise LabelMeFormatError(f"{where}: 'points' must be a list of [x, y] number pairs, got "
                                 f"{str(points)[:80]}")
    return array


def _check_shape(shape, where):
    """Validate one shape dict; returns (label, group_id, shape_type, points [K, 2]) or None
    for a shape without area."""
    if not isinstance(shape, dict):
        raise LabelMeFormatError(f"{where}: a shape must be an object, got {type(shape).__name__}")
    label = shape.get("label")
    if not isinstance(label, str) or not label:
        raise LabelMeFormatError(f"{where}: 'label' must be a non-empty string, got {label!r}")
    shape_type = shape.get("shape_type") or "polygon"  # old LabelMe files have no shape_type
    if shape_type in _NO_AREA_SHAPES:
        return None
    if shape_type not in _AREA_SHAPES:
        raise LabelMeFormatError(
            f"{where}: unsupported shape_type {shape_type!r}; supported are {_AREA_SHAPES} "
            f"(and {_NO_AREA_SHAPES}, skipped: they have no area)")
    points = _points(shape, where)
    needed = {"polygon": 3, "rectangle": 2, "circle": 2}[shape_type]
    if (shape_type == "polygon" and len(points) < 3) or (
            shape_type != "polygon" and len(points) != needed):
        raise LabelMeFormatError(
            f"{where}: a {shape_type} needs {'at least 3' if shape_type == 'polygon' else 2} "
            f"points, got {len(points)}")
    group_id = shape.get("group_id")
    if group_id is not None and (isinstance(group_id, bool)
                                 or not isinstance(group_id, (int, str))):
        raise LabelMeFormatError(f"{where}: 'group_id' must be an integer, a string or null, got "
                                 f"{group_id!r}")
    return label, group_id, shape_type, points


def read_labelme_file(path):
    """Read and validate one LabelMe json.

    Returns:
        dict ``{"path", "image_path" (absolute or None), "image_data" (base64 str or None),
        "height", "width" (int or None), "instances": [{"label", "parts": [(shape_type,
        points [K, 2] float64 x, y), ...]}, ...], "skipped": number of shapes without area}``.

    Raises:
        FileNotFoundError: no such file.
        LabelMeFormatError: invalid JSON, no ``shapes`` list, neither ``imageData`` nor
            ``imagePath``, or a bad shape (message: file, shape index and value).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"LabelMe annotation file not found: '{path}'")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as exc:
        raise LabelMeFormatError(f"LabelMe file '{path}' is not valid JSON: {exc.msg} at line "
                                 f"{exc.lineno}, column {exc.colno}") from exc
    except UnicodeDecodeError as exc:
        raise LabelMeFormatError(f"LabelMe file '{path}' is not UTF-8 text: {exc}") from exc
    where = f"LabelMe file '{path}'"
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise LabelMeFormatError(f"{where}: expected an object with a 'shapes' list, got {keys}")
    image_data = data.get("imageData") or None
    image_path = data.get("imagePath") or None
    if image_data is None and image_path is None:
        raise LabelMeFormatError(f"{where}: neither 'imageData' nor 'imagePath' is set; the image "
                                 "cannot be found")
    if image_data is not None and not isinstance(image_data, str):
        raise LabelMeFormatError(f"{where}: 'imageData' must be a base64 string, got "
                                 f"{type(image_data).__name__}")
    if image_path is not None:
        if not isinstance(image_path, str):
            raise LabelMeFormatError(f"{where}: 'imagePath' must be a string, got {image_path!r}")
        # LabelMe on Windows writes backslashes.
        image_path = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(path)),
                                                   image_path.replace("\\", "/")))
    size = []
    for key in ("imageHeight", "imageWidth"):
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value <= 0):
            raise LabelMeFormatError(f"{where}: '{key}' must be a positive integer, got {value!r}")
        size.append(value)

    instances, groups, skipped = [], {}, 0
    for index, shape in enumerate(data["shapes"]):
        checked = _check_shape(shape, f"{where}, shape {index}")
        if checked is None:
            skipped += 1
            continue
        label, group_id, shape_type, points = checked
        key = (label, group_id)
        if group_id is not None and key in groups:
            groups[key]["parts"].append((shape_type, points))
            continue
        instance = {"label": label, "parts": [(shape_type, points)]}
        if group_id is not None:
            groups[key] = instance
        instances.append(instance)
    if skipped:
        logger.warning("%s: %d shape(s) without area (point/line/linestrip) skipped", where,
                       skipped)
    return {"path": path, "image_path": image_path, "image_data": image_data,
            "height": size[0], "width": size[1], "instances": instances, "skipped": skipped}


def shape_mask(shape_type, points, height, width):
    """Rasterise one LabelMe shape into a ``[height, width]`` bool mask.

    ``points`` ``[K, 2]`` (x, y) pixels: a polygon's vertices, a rectangle's two opposite
    corners, a circle's centre and a point on it. Pixel centres inside the shape are set; parts
    outside the image are clipped.
    """
    mask = np.zeros((height, width), dtype=bool)
    points = np.asarray(points, dtype=np.float64)
    if shape_type == "polygon":
        rr, cc = skimage.draw.polygon(points[:, 1], points[:, 0], shape=(height, width))
    elif shape_type == "rectangle":
        (x1, y1), (x2, y2) = np.sort(points, axis=0)
        # Pixel (x, y) covers [x, x + 1): the corners are continuous coordinates.
        mask[max(int(np.floor(y1 + 0.5)), 0):max(int(np.floor(y2 + 0.5)), 0),
             max(int(np.floor(x1 + 0.5)), 0):max(int(np.floor(x2 + 0.5)), 0)] = True
        return mask
    elif shape_type == "circle":
        (cx, cy), (px, py) = points
        radius = float(np.hypot(px - cx, py - cy))
        rr, cc = skimage.draw.disk((cy, cx), radius, shape=(height, width))
    else:
        raise ValueError(f"shape_mask: unsupported shape_type {shape_type!r}; allowed are "
                         f"{_AREA_SHAPES}")
    mask[rr, cc] = True
    return mask


def _decode_image_data(image_data, where):
    from PIL import Image, UnidentifiedImageError
    try:
        raw = base64.b64decode(image_data, validate=False)
        with Image.open(io.BytesIO(raw)) as image:
            array = np.asarray(image.convert("RGB") if image.mode not in ("L", "RGB", "RGBA",
                                                                           "I;16", "I")
                               else image)
    except (binascii.Error, UnidentifiedImageError, OSError, ValueError) as exc:
        raise LabelMeFormatError(f"{where}: 'imageData' is not a base64-encoded image: "
                                 f"{exc}") from exc
    return to_rgb_uint8(array, source=where)


class LabelMeDataset(Dataset):
    """A :class:`~mrcnn.data.dataset.Dataset` over LabelMe json files.

    Example::

        dataset = LabelMeDataset()
        dataset.load_labelme("annotations/")          # every *.json below the folder
        dataset.prepare()
        masks, class_ids = dataset.load_mask(0)       # [H, W, N] bool, [N] int32
    """

    def load_labelme(self, folder_or_files, class_names=None, source="labelme"):
        """Register the classes and images of LabelMe json files.

        Args:
            folder_or_files: a folder (every ``*.json`` in it and its sub-folders, sorted) or a
                list of json paths.
            class_names: the classes, in this order (default: every label found, sorted). A
                label not in the list is an error.
            source: source name of the classes and images.

        Every file is read and validated here (so a broken file fails now, naming the file and
        shape), and its image file, when not embedded, must exist.

        Raises:
            FileNotFoundError: the folder, a json or a referenced image does not exist.
            LabelMeFormatError: see :func:`read_labelme_file`; a label outside ``class_names``.
        """
        if isinstance(folder_or_files, (str, os.PathLike)):
            root = os.fspath(folder_or_files)
            if not os.path.isdir(root):
                raise FileNotFoundError(f"LabelMe folder not found: '{root}'")
            files = sorted(os.path.join(d, f) for d, _, names in os.walk(root) for f in names
                           if f.lower().endswith(".json"))
            if not files:
                raise FileNotFoundError(f"LabelMe folder '{root}' holds no .json file")
        else:
            files = [os.fspath(f) for f in folder_or_files]
            root = os.path.commonpath([os.path.dirname(os.path.abspath(f)) for f in files]) \
                if files else "."
        records = [read_labelme_file(f) for f in files]
        for record in records:
            if record["image_data"] is None and not os.path.isfile(record["image_path"]):
                raise FileNotFoundError(
                    f"LabelMe file '{record['path']}': image '{record['image_path']}' "
                    "(imagePath) does not exist and no imageData is embedded")
        labels = sorted({inst["label"] for r in records for inst in r["instances"]})
        if class_names is None:
            class_names = labels
        else:
            class_names = list(class_names)
            allowed = set(class_names)
            for record in records:
                for inst in record["instances"]:
                    if inst["label"] not in allowed:
                        raise LabelMeFormatError(
                            f"LabelMe file '{record['path']}': label {inst['label']!r} is not one "
                            f"of class_names {class_names}")
        for k, name in enumerate(class_names, start=1):
            self.add_class(source, k, name)
        class_of = {name: k for k, name in enumerate(class_names, start=1)}
        for record in records:
            self.add_image(source, image_id=os.path.relpath(os.path.abspath(record["path"]),
                                                            os.path.abspath(root)),
                           path=record["image_path"] or record["path"],
                           json_path=record["path"], image_data=record["image_data"],
                           height=record["height"], width=record["width"],
                           labelme_instances=record["instances"], labelme_class_of=class_of)
        logger.info("LabelMe: %d images, %d classes, %d instances", len(records),
                    len(class_names), sum(len(r["instances"]) for r in records))

    def load_image(self, image_id):
        """``[H, W, 3]`` uint8 RGB: the embedded ``imageData`` if any, else ``imagePath``."""
        info = self._image_info_for(image_id, "load_image")
        if info.get("image_data") is None:
            return super().load_image(image_id)
        return _decode_image_data(info["image_data"], f"LabelMe file '{info['json_path']}'")

    def _size(self, image_id, info):
        if info.get("height") and info.get("width"):
            return int(info["height"]), int(info["width"])
        image = self.load_image(image_id)
        return int(image.shape[0]), int(image.shape[1])

    def load_mask(self, image_id):
        """``[H, W, N]`` bool masks and ``[N]`` int32 class ids; instances whose mask lies outside
        the image are dropped (logged)."""
        info = self._image_info_for(image_id, "load_mask")
        if "labelme_instances" not in info:
            return super().load_mask(image_id)
        height, width = self._size(image_id, info)
        masks, class_ids = [], []
        for inst in info["labelme_instances"]:
            mask = np.zeros((height, width), dtype=bool)
            for shape_type, points in inst["parts"]:
                mask |= shape_mask(shape_type, points, height, width)
            if not mask.any():
                logger.warning("LabelMe file '%s': a %r instance lies outside the %dx%d image; "
                               "skipped", info["json_path"], inst["label"], height, width)
                continue
            masks.append(mask)
            class_ids.append(self.map_source_class_id(
                f"{info['source']}.{info['labelme_class_of'][inst['label']]}"))
        if not masks:
            return np.zeros((height, width, 0), dtype=bool), np.zeros([0], dtype=np.int32)
        return np.stack(masks, axis=-1), np.asarray(class_ids, dtype=np.int32)

    def image_reference(self, image_id):
        info = self.image_info[image_id]
        return info.get("json_path", info.get("path"))
