"""Instance masks stored as image files: :class:`MaskFolderDataset`.

Two layouts:

1. **One PNG per object** (the DSB2018 nuclei layout, generalised)::

       root/<image_id>/images/<image_id>.png       (or the only file in images/)
       root/<image_id>/masks/*.png                 one object per file, class ``default_class``
       root/<image_id>/masks/<class name>/*.png    or one sub-folder per class

   or a ``class_map`` ``{"<image_id>/<mask file name>": class name}`` (a dict or a json file) for
   files directly in ``masks/``; a file missing from the map gets ``default_class`` (an error if
   that is None). Any non-zero pixel of a mask PNG is the object (alpha ignored); empty masks
   are skipped. Method :meth:`MaskFolderDataset.load_mask_folders`.

2. **One instance-id label image per picture**: ``label_dir/<stem>.png`` with 0 = background
   and k > 0 = instance k (8 or 16 bit, or an RGB image encoding id ``R * 65536 + G * 256 + B``),
   for each image ``image_dir/<stem>.<ext>``, plus a class table
   ``{"<stem>": {"<k>": class name}}`` (a dict or a json file); instances missing from the table
   get ``default_class``. Method :meth:`MaskFolderDataset.load_label_images`.

Classes are ``class_names`` in that order when given (a name outside it is an error), else every
name found, sorted. ``image_info[i]["id"]`` is the image id (folder name or file stem).

Errors (:class:`MaskFolderError`, a ``ValueError``, or ``FileNotFoundError``) name the folder or
file, the image id and the value, and are raised when the data is registered (sizes and class
names of every file are checked then; pixels are read in ``load_mask``).
"""
import json
import logging
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from mrcnn.data.dataset import Dataset, ImageLoadError

__all__ = ["MaskFolderDataset", "MaskFolderError", "read_image_size"]

logger = logging.getLogger(__name__)

_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


class MaskFolderError(ValueError):
    """A mask folder or label image is inconsistent: sizes, class names, unknown ids."""


def _visible_files(folder, extensions):
    return sorted(f for f in os.listdir(folder) if not f.startswith(".")
                  and os.path.isfile(os.path.join(folder, f))
                  and f.lower().endswith(extensions))


def read_image_size(path, what):
    """(height, width) of an image file, read from its header.

    Raises ImageLoadError naming ``what`` and the path when the file cannot be read.
    """
    try:
        with Image.open(path) as im:
            return im.size[1], im.size[0]
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageLoadError(f"cannot read {what} '{path}': {type(exc).__name__}: {exc}") from exc


def _read_array(path, what):
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode == "P":
                return np.asarray(im)  # palette indices are the ids, not the colours
            if im.mode in ("1", "L", "I", "I;16", "I;16B", "F"):
                return np.asarray(im)
            if im.mode in ("RGB", "RGBA"):
                rgb = np.asarray(im.convert("RGB")).astype(np.int64)
                return rgb[..., 0] * 65536 + rgb[..., 1] * 256 + rgb[..., 2]
            return np.asarray(im.convert("L"))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageLoadError(f"cannot read {what} '{path}': {type(exc).__name__}: {exc}") from exc


def _read_table(table, what):
    """A dict, or the path of a json object -> dict."""
    if table is None or isinstance(table, dict):
        return table
    path = os.fspath(table)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} file not found: '{path}'")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as exc:
        raise MaskFolderError(f"{what} '{path}' is not valid JSON: {exc.msg} at line "
                              f"{exc.lineno}") from exc
    if not isinstance(data, dict):
        raise MaskFolderError(f"{what} '{path}' must hold a JSON object, got "
                              f"{type(data).__name__}")
    return data


class MaskFolderDataset(Dataset):
    """A :class:`~mrcnn.data.dataset.Dataset` over masks stored as image files (module doc).

    Example::

        dataset = MaskFolderDataset()
        dataset.load_mask_folders("cells/", default_class="cell")
        dataset.prepare()
    """

    def _register_classes(self, names, class_names, source, where):
        found = sorted(set(names))
        if class_names is None:
            class_names = found
        else:
            class_names = list(class_names)
            unknown = [n for n in found if n not in set(class_names)]
            if unknown:
                raise MaskFolderError(f"{where}: class name(s) {unknown[:5]} are not in "
                                      f"class_names {class_names}")
        if not class_names:
            raise MaskFolderError(f"{where}: no object found (no class to register)")
        for k, name in enumerate(class_names, start=1):
            self.add_class(source, k, name)
        return {name: k for k, name in enumerate(class_names, start=1)}

    # ------------------------------------------------------- one PNG per object
    def load_mask_folders(self, root, default_class="object", class_map=None, class_names=None,
                          image_ids=None, source="masks"):
        """Register ``root/<image_id>/images/`` + ``masks/`` folders (layout 1 of the module doc).

        Args:
            root: the folder of ``<image_id>/`` folders.
            default_class: class of mask files directly in ``masks/`` without a ``class_map``
                entry; None makes such a file an error.
            class_map: ``{"<image_id>/<file name>": class name}``, a dict or a json path.
            class_names: the classes in order (default: the names found, sorted).
            image_ids: folder names to load, in this order (default: all, sorted).
            source: source name of classes and images.

        Raises:
            FileNotFoundError: ``root``, an ``images/`` or ``masks/`` folder is missing.
            MaskFolderError: a mask of another size than its image, a file without class, an
                unknown image id or class name.
        """
        root = os.fspath(root)
        if not os.path.isdir(root):
            raise FileNotFoundError(f"mask folder dataset not found: '{root}'")
        class_map = _read_table(class_map, "class_map") or {}
        all_ids = sorted(d for d in os.listdir(root) if not d.startswith(".")
                         and os.path.isdir(os.path.join(root, d)))
        if image_ids is None:
            ids = all_ids
        else:
            ids = [str(i) for i in image_ids]
            unknown = [i for i in ids if i not in set(all_ids)]
            if unknown:
                raise MaskFolderError(f"image_ids {unknown[:5]} are not folders of '{root}'")
        if not ids:
            raise MaskFolderError(f"'{root}' holds no <image_id>/images/ folder")
        entries, names = [], []
        for image_id in ids:
            folder = os.path.join(root, image_id)
            images_dir, masks_dir = os.path.join(folder, "images"), os.path.join(folder, "masks")
            for needed in (images_dir, masks_dir):
                if not os.path.isdir(needed):
                    raise FileNotFoundError(f"image {image_id!r}: folder '{needed}' not found "
                                            f"(layout: <image_id>/images/ and <image_id>/masks/)")
            candidates = _visible_files(images_dir, _IMAGE_EXTENSIONS)
            preferred = [c for c in candidates if os.path.splitext(c)[0] == image_id]
            if len(preferred) != 1 and len(candidates) != 1:
                raise MaskFolderError(f"image {image_id!r}: expected images/{image_id}.png or a "
                                      f"single image in '{images_dir}', found {candidates}")
            path = os.path.join(images_dir, (preferred or candidates)[0])
            size = read_image_size(path, f"image {image_id!r}")
            masks = []
            for name in _visible_files(masks_dir, (".png",)):
                key = f"{image_id}/{name}"
                label = class_map.get(key, default_class)
                if label is None:
                    raise MaskFolderError(f"image {image_id!r}: mask '{masks_dir}/{name}' has no "
                                          f"class: no class_map entry {key!r} and "
                                          "default_class=None")
                masks.append((os.path.join(masks_dir, name), str(label)))
            for sub in sorted(d for d in os.listdir(masks_dir) if not d.startswith(".")
                              and os.path.isdir(os.path.join(masks_dir, d))):
                for name in _visible_files(os.path.join(masks_dir, sub), (".png",)):
                    masks.append((os.path.join(masks_dir, sub, name), sub))
            for mask_path, _ in masks:
                mask_size = read_image_size(mask_path, f"image {image_id!r} mask")
                if mask_size != size:
                    raise MaskFolderError(
                        f"image {image_id!r}: mask '{mask_path}' is {mask_size[1]}x{mask_size[0]} "
                        f"(WxH) but the image '{path}' is {size[1]}x{size[0]}")
            names += [label for _, label in masks]
            entries.append((image_id, path, size, masks))
        class_of = self._register_classes(names, class_names, source, f"'{root}'")
        for image_id, path, size, masks in entries:
            self.add_image(source, image_id=image_id, path=path, height=size[0], width=size[1],
                           mask_files=[(p, class_of[label]) for p, label in masks])

    # ---------------------------------------------------- instance-id label images
    def load_label_images(self, image_dir, label_dir, class_table=None, default_class="object",
                          class_names=None, source="labels"):
        """Register ``image_dir/<stem>.*`` with ``label_dir/<stem>.png`` (layout 2).

        Args:
            image_dir: folder of the pictures.
            label_dir: folder of the label images (same stem, ``.png``): 0 background, k > 0
                instance k.
            class_table: ``{"<stem>": {"<k>": class name}}``, a dict or a json path.
            default_class: class of instances missing from the table; None makes them an error
                (checked in ``load_mask``, where the ids are read).
            class_names: the classes in order (default: the table's names and default_class).

        Raises:
            FileNotFoundError: a folder or a picture's label image is missing.
            MaskFolderError: a label image of another size, a table entry for an unknown image,
                a bad class name.
        """
        for folder, what in ((image_dir, "image folder"), (label_dir, "label folder")):
            if not os.path.isdir(os.fspath(folder)):
                raise FileNotFoundError(f"{what} not found: '{os.fspath(folder)}'")
        image_dir, label_dir = os.fspath(image_dir), os.fspath(label_dir)
        table = _read_table(class_table, "class_table") or {}
        pictures = _visible_files(image_dir, _IMAGE_EXTENSIONS)
        if not pictures:
            raise MaskFolderError(f"image folder '{image_dir}' holds no image")
        stems = [os.path.splitext(p)[0] for p in pictures]
        unknown = [s for s in table if s not in set(stems)]
        if unknown:
            raise MaskFolderError(f"class_table names image(s) {unknown[:5]} that are not in "
                                  f"'{image_dir}'")
        names = [] if default_class is None else [str(default_class)]
        for stem, instances in table.items():
            if not isinstance(instances, dict):
                raise MaskFolderError(f"class_table entry {stem!r} must map instance ids to class "
                                      f"names, got {type(instances).__name__}")
            for k, name in instances.items():
                if not str(k).isdigit() or int(k) <= 0:
                    raise MaskFolderError(f"class_table entry {stem!r}: instance id {k!r} must be "
                                          "a positive integer")
                names.append(str(name))
        class_of = self._register_classes(names, class_names, source, f"'{label_dir}'")
        for picture, stem in zip(pictures, stems):
            path = os.path.join(image_dir, picture)
            label_path = os.path.join(label_dir, stem + ".png")
            if not os.path.isfile(label_path):
                raise FileNotFoundError(f"image {stem!r}: label image '{label_path}' not found")
            size = read_image_size(path, f"image {stem!r}")
            label_size = read_image_size(label_path, f"image {stem!r} label image")
            if label_size != size:
                raise MaskFolderError(
                    f"image {stem!r}: label image '{label_path}' is {label_size[1]}x"
                    f"{label_size[0]} (WxH) but the image is {size[1]}x{size[0]}")
            classes = {int(k): class_of[str(v)] for k, v in table.get(stem, {}).items()}
            self.add_image(source, image_id=stem, path=path, height=size[0], width=size[1],
                           label_path=label_path, instance_classes=classes,
                           default_class_id=None if default_class is None
                           else class_of[str(default_class)])

    # --------------------------------------------------------------------- masks
    def load_mask(self, image_id):
        """``[H, W, N]`` bool masks and ``[N]`` int32 internal class ids (empty masks skipped).

        Raises:
            ImageLoadError: a mask or label file cannot be decoded (names it).
            MaskFolderError: a label id without class (no table entry, default_class None).
        """
        info = self._image_info_for(image_id, "load_mask")
        height, width = int(info["height"]), int(info["width"])
        masks, class_ids = [], []
        if "mask_files" in info:
            for path, class_id in info["mask_files"]:
                mask = _read_array(path, f"image {info['id']!r} mask") > 0
                if mask.any():
                    masks.append(mask)
                    class_ids.append(self.map_source_class_id(f"{info['source']}.{class_id}"))
        elif "label_path" in info:
            labels = _read_array(info["label_path"], f"image {info['id']!r} label image")
            for k in np.unique(labels):
                if k <= 0:
                    continue
                class_id = info["instance_classes"].get(int(k), info["default_class_id"])
                if class_id is None:
                    raise MaskFolderError(
                        f"image {info['id']!r}: instance {int(k)} of '{info['label_path']}' has "
                        "no class_table entry and default_class is None")
                masks.append(labels == k)
                class_ids.append(self.map_source_class_id(f"{info['source']}.{class_id}"))
        else:
            return super().load_mask(image_id)
        if not masks:
            return np.zeros((height, width, 0), dtype=bool), np.zeros([0], dtype=np.int32)
        return np.stack(masks, axis=-1), np.asarray(class_ids, dtype=np.int32)
