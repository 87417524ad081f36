"""Small annotated folders in every format of mrcnn.data.formats, for the samples' tests.

``write_format_folders(root)`` writes, under ``root``:

* ``labelme/``: 5 LabelMe files (``im0.json`` ...), each a polygon of class "a" and a rectangle of
  class "b";
* ``masks/``: 4 ``id<k>/images`` + ``id<k>/masks/<class>/0.png`` folders, classes "cell", "dirt";
* ``via/``: 3 images and a ``via_region_data.json``, a rectangle with ``kind = "box"`` and a
  circle without a class.

Images are ``H x W`` random RGB pictures; masks are drawn squares, so the expected pixels are known.
"""
import json

import numpy as np
from PIL import Image

H, W = 48, 64


def picture(seed):
    return np.random.default_rng(seed).integers(0, 255, (H, W, 3), dtype=np.uint8)


def square(y, x, size=10):
    mask = np.zeros((H, W), np.uint8)
    mask[y:y + size, x:x + size] = 255
    return mask


def write_format_folders(root):
    # LabelMe: 5 files, classes a/b
    (root / "labelme").mkdir()
    for k in range(5):
        Image.fromarray(picture(k)).save(root / "labelme" / f"im{k}.png")
        shapes = [{"label": "a", "points": [[2, 2], [12, 2], [12, 12], [2, 12]],
                   "shape_type": "polygon"},
                  {"label": "b", "points": [[30, 20], [45, 35]], "shape_type": "rectangle"}]
        (root / "labelme" / f"im{k}.json").write_text(json.dumps(
            {"shapes": shapes, "imagePath": f"im{k}.png", "imageHeight": H, "imageWidth": W}))
    # masks, one PNG per object, a class per folder
    for k in range(4):
        folder = root / "masks" / f"id{k}"
        (folder / "images").mkdir(parents=True)
        Image.fromarray(picture(k)).save(folder / "images" / f"id{k}.png")
        for name, (y, x) in (("cell", (3, 3)), ("dirt", (30, 40))):
            (folder / "masks" / name).mkdir(parents=True)
            Image.fromarray(square(y, x)).save(folder / "masks" / name / "0.png")
    # VIA with a class attribute
    (root / "via").mkdir()
    entries = {}
    for k in range(3):
        Image.fromarray(picture(k)).save(root / "via" / f"v{k}.jpg")
        entries[f"v{k}.jpg123"] = {"filename": f"v{k}.jpg", "regions": [
            {"shape_attributes": {"name": "rect", "x": 5, "y": 5, "width": 10, "height": 8},
             "region_attributes": {"kind": "box"}},
            {"shape_attributes": {"name": "circle", "cx": 40, "cy": 30, "r": 6},
             "region_attributes": {}}]}
    (root / "via" / "via_region_data.json").write_text(json.dumps(entries))
    return root
