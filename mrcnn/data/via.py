"""VGG Image Annotator (VIA) json: parsing, rasterising and :class:`ViaDataset`.

Formats read by :func:`read_via_annotations`:

* VIA 1.x export: ``{key: {"filename", "regions": {"0": region, "1": region, ...}, ...}}``;
* VIA 2.x export: the same with ``"regions": [region, ...]``;
* VIA 2.x project file: ``{"_via_img_metadata": {key: {...}}, "_via_settings": ...}``.

A region is ``{"shape_attributes": {"name": "polygon", "all_points_x": [...], "all_points_y":
[...]}, "region_attributes": {...}}`` in pixel coordinates of the image (x right, y down).
Polygons (any shape with ``all_points_x/y``), ``rect``, ``circle`` and ``ellipse`` shapes are
rasterised with ``skimage.draw`` and clipped to the image. Images without regions are skipped
(classic). The image size comes from ``width``/``height`` in the entry when present, else from
the image file's header. The balloon sample uses these functions.
"""
import json
import logging
import os

import numpy as np
import skimage.draw
from PIL import Image, UnidentifiedImageError

from mrcnn.data.dataset import Dataset, ImageLoadError

__all__ = ["ViaDataset", "entry_image", "read_via_annotations", "region_mask"]

logger = logging.getLogger(__name__)


def _entries(data, json_path):
    """The per-image dicts of a VIA 1.x/2.x export or a VIA 2.x project."""
    if not isinstance(data, dict):
        raise ValueError(f"{json_path}: expected a JSON object of VIA image entries, got "
                         f"{type(data).__name__}")
    if "_via_img_metadata" in data:
        data = data["_via_img_metadata"]
        if not isinstance(data, dict):
            raise ValueError(f"{json_path}: '_via_img_metadata' must be an object, got "
                             f"{type(data).__name__}")
    return data


def _check_shape(shape, where):
    """Validate one region's shape_attributes; returns it."""
    if not isinstance(shape, dict):
        raise ValueError(f"{where}: 'shape_attributes' must be an object, got {shape!r}")
    name = shape.get("name", "polygon")
    if "all_points_x" in shape or "all_points_y" in shape or name in ("polygon", "polyline"):
        xs, ys = shape.get("all_points_x"), shape.get("all_points_y")
        if not isinstance(xs, list) or not isinstance(ys, list):
            raise ValueError(f"{where}: a {name!r} needs the lists 'all_points_x' and "
                             f"'all_points_y', got {sorted(shape)}")
        if len(xs) != len(ys):
            raise ValueError(f"{where}: 'all_points_x' has {len(xs)} points but "
                             f"'all_points_y' has {len(ys)}")
        required = ()
    else:
        required = {"rect": ("x", "y", "width", "height"), "circle": ("cx", "cy", "r"),
                    "ellipse": ("cx", "cy", "rx", "ry")}.get(name)
        if required is None:
            raise ValueError(f"{where}: unsupported region shape {name!r}; supported are "
                             "polygon (all_points_x/y), rect, circle and ellipse")
    values = [shape[k] for k in required if k in shape]
    if len(values) != len(required):
        raise ValueError(f"{where}: a {name!r} needs the keys {list(required)}, got "
                         f"{sorted(shape)}")
    numbers = values + list(shape.get("all_points_x") or []) + list(
        shape.get("all_points_y") or [])
    bad = [v for v in numbers if isinstance(v, bool) or not isinstance(v, (int, float))]
    if bad:
        raise ValueError(f"{where}: coordinates must be numbers, got {bad[:3]}")
    return shape


def read_via_annotations(json_path):
    """Parse a VIA 1.x/2.x annotation file.

    Returns:
        list of dicts ``{"filename": str, "shapes": [shape_attributes, ...], "attributes":
        [region_attributes dict, ...] (aligned with shapes), "width": int or None,
        "height": int or None}`` in file order, one per image that has at least one region.

    Raises:
        FileNotFoundError: no such file.
        ValueError: invalid JSON, or an entry/region without the keys described in the module
            docstring; the message names the file, the entry and the region.
    """
    json_path = os.fspath(json_path)
    if not os.path.isfile(json_path):
        raise FileNotFoundError(f"VIA annotation file not found: {json_path}")
    try:
        with open(json_path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{json_path}: not valid JSON: {exc}") from exc
    images = []
    for key, entry in _entries(data, json_path).items():
        where = f"{json_path}: entry {key!r}"
        if not isinstance(entry, dict) or "filename" not in entry or "regions" not in entry:
            keys = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
            raise ValueError(f"{where}: each image entry needs 'filename' and 'regions', got "
                             f"{keys}")
        regions = entry["regions"]
        if isinstance(regions, dict):  # VIA 1.x: {"0": region, ...}
            regions = list(regions.values())
        if not isinstance(regions, list):
            raise ValueError(f"{where}: 'regions' must be a list (VIA 2) or an object (VIA 1), "
                             f"got {type(regions).__name__}")
        shapes, attributes = [], []
        for index, region in enumerate(regions):
            region_where = f"{where} ({entry['filename']}), region {index}"
            if not isinstance(region, dict) or "shape_attributes" not in region:
                raise ValueError(f"{region_where}: missing 'shape_attributes'")
            shapes.append(_check_shape(region["shape_attributes"], region_where))
            region_attributes = region.get("region_attributes") or {}
            attributes.append(region_attributes if isinstance(region_attributes, dict) else {})
        if not shapes:
            continue
        size = [entry.get("height"), entry.get("width")]
        size = [int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
                else None for v in size]
        images.append({"filename": str(entry["filename"]), "shapes": shapes,
                       "attributes": attributes, "height": size[0], "width": size[1]})
    return images


def region_mask(shape, height, width):
    """Rasterise one VIA ``shape_attributes`` dict into a ``[height, width]`` bool mask.

    Coordinates are pixels (x right, y down); pixels whose centre lies inside the shape are set
    (``skimage.draw``); parts outside the image are clipped.
    """
    mask = np.zeros((height, width), dtype=bool)
    name = shape.get("name", "polygon")
    if "all_points_x" in shape:
        rr, cc = skimage.draw.polygon(np.asarray(shape["all_points_y"], dtype=np.float64),
                                      np.asarray(shape["all_points_x"], dtype=np.float64),
                                      shape=(height, width))
    elif name == "rect":
        # VIA rects are [x, x + width) x [y, y + height) in pixels; slicing clips to the image.
        x, y, w, h = (int(round(float(shape[k]))) for k in ("x", "y", "width", "height"))
        mask[max(y, 0):max(y + h, 0), max(x, 0):max(x + w, 0)] = True
        return mask
    elif name == "circle":
        rr, cc = skimage.draw.disk((float(shape["cy"]), float(shape["cx"])), float(shape["r"]),
                                   shape=(height, width))
    else:  # ellipse
        rr, cc = skimage.draw.ellipse(float(shape["cy"]), float(shape["cx"]), float(shape["ry"]),
                                      float(shape["rx"]), shape=(height, width))
    mask[rr, cc] = True
    return mask




def entry_image(json_path, image_dir, entry):
    """(path, height, width) of one :func:`read_via_annotations` entry's image in ``image_dir``;
    the size from the entry, else from the file's header. Errors name the json and the image."""
    path = os.path.join(image_dir, entry["filename"])
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{json_path}: image {entry['filename']!r} not found at {path}")
    height, width = entry["height"], entry["width"]
    if height is None or width is None:
        try:
            with Image.open(path) as im:
                width, height = im.size
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise ImageLoadError(f"{json_path}: cannot read image {path}: {exc}") from exc
    return path, height, width


class ViaDataset(Dataset):
    """Any VIA json (module doc) as a :class:`~mrcnn.data.dataset.Dataset`.

    Classes: ``region_attributes[class_attribute]`` of each region when ``class_attribute`` is
    given (a region without it gets ``default_class``; an error if that is None), else every
    region is ``default_class``. Class names are sorted unless ``class_names`` fixes the order.
    ``image_info[i]["id"]`` is the file name.
    """

    def load_via(self, json_path, image_dir=None, class_attribute=None, default_class="object",
                 class_names=None, source="via"):
        """Register the annotated images of ``json_path`` (images in ``image_dir``, default the
        json's folder).

        Raises:
            FileNotFoundError: the json or an image is missing (names both).
            ValueError: malformed json (names file, entry and region), a region without class,
                a class outside ``class_names``.
        """
        json_path = os.fspath(json_path)
        entries = read_via_annotations(json_path)
        image_dir = os.path.dirname(os.path.abspath(json_path)) if image_dir is None \
            else os.fspath(image_dir)
        labels = []
        for entry in entries:
            entry_labels = []
            for index, attributes in enumerate(entry["attributes"]):
                label = attributes.get(class_attribute) if class_attribute else None
                if isinstance(label, dict):  # VIA checkbox attributes: {"name": true}
                    label = next((k for k, v in label.items() if v), None)
                label = default_class if label in (None, "") else label
                if label is None:
                    raise ValueError(f"{json_path}: image {entry['filename']!r}, region {index}: "
                                     f"no region attribute {class_attribute!r} and "
                                     "default_class=None")
                entry_labels.append(str(label))
            labels.append(entry_labels)
        found = sorted({label for entry_labels in labels for label in entry_labels})
        names = found if class_names is None else list(class_names)
        unknown = [n for n in found if n not in set(names)]
        if unknown:
            raise ValueError(f"{json_path}: class(es) {unknown[:5]} are not in class_names "
                             f"{names}")
        for k, name in enumerate(names, start=1):
            self.add_class(source, k, name)
        class_of = {name: k for k, name in enumerate(names, start=1)}
        for entry, entry_labels in zip(entries, labels):
            path, height, width = entry_image(json_path, image_dir, entry)
            self.add_image(source, image_id=entry["filename"], path=path, width=width,
                           height=height, via_shapes=entry["shapes"],
                           via_classes=[class_of[label] for label in entry_labels])

    def load_mask(self, image_id):
        """``[H, W, N]`` bool masks, ``[N]`` int32 class ids; regions outside the image dropped."""
        info = self._image_info_for(image_id, "load_mask")
        if "via_shapes" not in info:
            return super().load_mask(image_id)
        height, width = int(info["height"]), int(info["width"])
        masks, class_ids = [], []
        for index, (shape, class_id) in enumerate(zip(info["via_shapes"], info["via_classes"])):
            mask = region_mask(shape, height, width)
            if not mask.any():
                logger.warning("image %r: region %d lies outside the image; dropped",
                               info["id"], index)
                continue
            masks.append(mask)
            class_ids.append(self.map_source_class_id(f"{info['source']}.{class_id}"))
        if not masks:
            return np.zeros((height, width, 0), dtype=bool), np.zeros([0], dtype=np.int32)
        return np.stack(masks, axis=-1), np.asarray(class_ids, dtype=np.int32)
