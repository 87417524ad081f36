"""Balloon: Mask R-CNN on polygon annotations made with the VGG Image Annotator (classic sample).

Data layout (the classic balloon dataset)::

    <dataset_dir>/train/via_region_data.json   annotations of the images in train/
    <dataset_dir>/train/*.jpg
    <dataset_dir>/val/via_region_data.json
    <dataset_dir>/val/*.jpg

Annotation formats read by :func:`read_via_annotations`:

* VIA 1.x export: ``{key: {"filename", "regions": {"0": region, "1": region, ...}, ...}}``;
* VIA 2.x export: the same with ``"regions": [region, ...]``;
* VIA 2.x project file: ``{"_via_img_metadata": {key: {...}}, "_via_settings": ...}``.

A region is ``{"shape_attributes": {"name": "polygon", "all_points_x": [...], "all_points_y":
[...]}, "region_attributes": {...}}`` in pixel coordinates of the image (x right, y down).
Polygons (any shape with ``all_points_x/y``, as the classic code read them), ``rect``,
``circle`` and ``ellipse`` shapes are rasterised with ``skimage.draw`` and clipped to the image.
Images without regions are skipped (classic). The image size comes from ``width``/``height`` in
the entry when present, else from the image file's header.

Command line (from the repository root)::

    python -m samples.balloon.balloon train  --dataset DIR --weights coco --logs ./logs
    python -m samples.balloon.balloon splash --weights last --image photo.jpg
    python -m samples.balloon.balloon splash --weights last --video clip.mp4

``splash`` writes ``splash_<timestamp>.png`` (or ``.avi``): the image in grayscale except the
detected balloons, which keep their colour (:func:`color_splash`).
"""
import argparse
import datetime
import json
import logging
import os

import numpy as np
import skimage.draw
from PIL import Image, UnidentifiedImageError

from mrcnn.config import Config
from mrcnn.data.dataset import Dataset, ImageLoadError, load_image_file

__all__ = [
    "BalloonConfig", "BalloonInferenceConfig", "BalloonDataset", "read_via_annotations",
    "region_mask", "color_splash", "detect_and_color_splash", "train_balloon", "build_parser",
    "main",
]

logger = logging.getLogger(__name__)

ANNOTATION_FILE = "via_region_data.json"
DEFAULT_LOGS_DIR = "logs"


# ----------------------------------------------------------------------------------- configs
class BalloonConfig(Config):
    """Classic configuration: fine-tune COCO weights on balloons (one class)."""
    NAME = "balloon"
    IMAGES_PER_GPU = 2
    NUM_CLASSES = 1 + 1  # background + balloon
    STEPS_PER_EPOCH = 100
    # Skip detections with < 90% confidence.
    DETECTION_MIN_CONFIDENCE = 0.9


class BalloonInferenceConfig(BalloonConfig):
    """:class:`BalloonConfig` for detection, one image at a time."""
    GPU_COUNT = 1
    IMAGES_PER_GPU = 1


# --------------------------------------------------------------------------------- VIA files
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
        list of dicts ``{"filename": str, "shapes": [shape_attributes, ...], "width": int or None,
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
        shapes = []
        for index, region in enumerate(regions):
            region_where = f"{where} ({entry['filename']}), region {index}"
            if not isinstance(region, dict) or "shape_attributes" not in region:
                raise ValueError(f"{region_where}: missing 'shape_attributes'")
            shapes.append(_check_shape(region["shape_attributes"], region_where))
        if not shapes:
            continue
        size = [entry.get("height"), entry.get("width")]
        size = [int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
                else None for v in size]
        images.append({"filename": str(entry["filename"]), "shapes": shapes,
                       "height": size[0], "width": size[1]})
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


# ----------------------------------------------------------------------------------- dataset
class BalloonDataset(Dataset):
    """Balloons annotated with VIA polygons; one class ``"balloon"``.

    ``image_info[i]``: ``id`` (the file name), ``path``, ``width``, ``height`` and ``polygons``
    (the VIA ``shape_attributes`` dicts, classic key name).
    """

    def load_balloon(self, dataset_dir, subset, annotation_file=ANNOTATION_FILE):
        """Register the annotated images of ``<dataset_dir>/<subset>/``.

        Args:
            dataset_dir: the folder holding ``train/`` and ``val/``.
            subset: "train", "val" (classic) or another subfolder name.
            annotation_file: the VIA json inside the subset folder.

        Raises:
            FileNotFoundError: missing folder, json or image file (names it).
            ValueError: malformed json (see :func:`read_via_annotations`) or unreadable image.
        """
        self.add_class("balloon", 1, "balloon")
        if dataset_dir is None or not os.path.isdir(dataset_dir):
            raise FileNotFoundError(f"balloon dataset folder not found: {dataset_dir!r}")
        folder = os.path.join(os.fspath(dataset_dir), subset)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"subset {subset!r}: folder {folder} not found")
        json_path = os.path.join(folder, annotation_file)
        for entry in read_via_annotations(json_path):
            path = os.path.join(folder, entry["filename"])
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{json_path}: image {entry['filename']!r} not found at "
                                        f"{path}")
            height, width = entry["height"], entry["width"]
            if height is None or width is None:
                try:
                    with Image.open(path) as im:
                        width, height = im.size
                except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
                    raise ImageLoadError(f"{json_path}: cannot read image {path}: {exc}") from exc
            self.add_image("balloon", image_id=entry["filename"], path=path, width=width,
                           height=height, polygons=entry["shapes"])

    def load_mask(self, image_id):
        """Instance masks of image ``image_id`` from its VIA regions.

        Returns:
            masks: ``[height, width, N]`` bool, one channel per region that covers at least one
                pixel inside the image (regions entirely outside are dropped with a warning).
            class_ids: ``[N]`` int32, all 1 (balloon).
        """
        info = self._image_info_for(image_id, "load_mask")
        if info["source"] != "balloon":
            return super().load_mask(image_id)
        height, width = int(info["height"]), int(info["width"])
        masks = []
        for index, shape in enumerate(info["polygons"]):
            mask = region_mask(shape, height, width)
            if mask.any():
                masks.append(mask)
            else:
                logger.warning("image %r: region %d lies outside the image; dropped",
                               info["id"], index)
        if not masks:
            return np.zeros((height, width, 0), dtype=bool), np.zeros([0], dtype=np.int32)
        return np.stack(masks, axis=-1), np.ones([len(masks)], dtype=np.int32)

    def image_reference(self, image_id):
        """The path of the image."""
        info = self._image_info_for(image_id, "image_reference")
        if info["source"] == "balloon":
            return info["path"]
        return super().image_reference(image_id)


# ---------------------------------------------------------------------------------- training
def train_balloon(model, dataset_dir, epochs=30, layers="heads", learning_rate=None):
    """Classic schedule: train the heads (``layers``) of a training ``MaskRCNN`` for ``epochs``.

    Starting from COCO weights, the heads alone are enough for balloons (classic comment).
    Returns the Keras ``History``.
    """
    train_set = BalloonDataset()
    train_set.load_balloon(dataset_dir, "train")
    train_set.prepare()
    val_set = BalloonDataset()
    val_set.load_balloon(dataset_dir, "val")
    val_set.prepare()
    lr = model.config.LEARNING_RATE if learning_rate is None else float(learning_rate)
    print(f"Training {layers!r} on {train_set.num_images} images up to epoch {epochs}")
    return model.train(train_set, val_set, learning_rate=lr, epochs=epochs, layers=layers)


# ------------------------------------------------------------------------------ colour splash
def color_splash(image, mask):
    """Grayscale copy of ``image`` in which the pixels of any instance keep their colour.

    Args:
        image: ``[H, W, 3]`` RGB uint8.
        mask: ``[H, W, N]`` bool instance masks (``detect``'s ``"masks"``); N may be 0.

    Returns:
        ``[H, W, 3]`` uint8: inside the union of the masks the original pixels; elsewhere the
        luminance ``0.2125 R + 0.7154 G + 0.0721 B`` (``skimage.color.rgb2gray``), rounded, in all
        three channels. With no instance the whole image is gray.
    """
    image = np.asarray(image)
    mask = np.asarray(mask)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"color_splash: image must be [H, W, 3] RGB, got shape {image.shape}")
    if mask.ndim != 3 or mask.shape[:2] != image.shape[:2]:
        raise ValueError(f"color_splash: mask must be [H, W, N] with H, W = {image.shape[:2]}, "
                         f"got shape {mask.shape}")
    weights = np.array([0.2125, 0.7154, 0.0721])
    gray = np.clip(np.rint(image[..., :3].astype(np.float64) @ weights), 0, 255).astype(np.uint8)
    splash = np.repeat(gray[..., None], 3, axis=-1)
    if mask.shape[-1] > 0:
        keep = mask.astype(bool).any(axis=-1)
        splash[keep] = image[keep]
    return splash


def _timestamp():
    return f"{datetime.datetime.now():%Y%m%dT%H%M%S}"


def detect_and_color_splash(model, image_path=None, video_path=None, output_dir="."):
    """Run ``model.detect`` and write a colour splash of an image (PNG) or a video (AVI).

    Args:
        model: anything with ``detect(images) -> [{"masks": [H, W, N] bool, ...}]`` (an inference
            ``MaskRCNN``).
        image_path: an image file; the result is ``<output_dir>/splash_<timestamp>.png``.
        video_path: a video OpenCV can read; every frame is splashed and written to
            ``<output_dir>/splash_<timestamp>.avi`` (Motion-JPEG, the input's frame rate).
        output_dir: created if needed.

    Returns:
        str: the written file.

    Raises:
        ValueError: not exactly one of ``image_path`` / ``video_path``, or the video cannot be
            opened or written.
        FileNotFoundError: the input file does not exist.
    """
    if (image_path is None) == (video_path is None):
        raise ValueError("detect_and_color_splash: give exactly one of image_path or video_path")
    source = image_path if image_path is not None else video_path
    if not os.path.isfile(source):
        raise FileNotFoundError(f"detect_and_color_splash: no such file: {source}")
    os.makedirs(output_dir, exist_ok=True)
    if image_path is not None:
        image = load_image_file(image_path)
        r = model.detect([image], verbose=0)[0]
        path = os.path.join(output_dir, f"splash_{_timestamp()}.png")
        Image.fromarray(color_splash(image, r["masks"])).save(path)
        print(f"Saved to {path}")
        return path

    import cv2

    capture = cv2.VideoCapture(os.fspath(video_path))
    if not capture.isOpened():
        raise ValueError(f"detect_and_color_splash: OpenCV cannot open the video {video_path}")
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    fps = capture.get(cv2.CAP_PROP_FPS)
    fps = fps if fps and fps > 0 else 25.0  # some containers do not store a frame rate
    path = os.path.join(output_dir, f"splash_{_timestamp()}.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    if not writer.isOpened():
        capture.release()
        raise ValueError(f"detect_and_color_splash: OpenCV cannot write {path}")
    count = 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            rgb = np.ascontiguousarray(frame[..., ::-1])  # OpenCV frames are BGR
            r = model.detect([rgb], verbose=0)[0]
            splash = color_splash(rgb, r["masks"])
            writer.write(np.ascontiguousarray(splash[..., ::-1]))
            count += 1
    finally:
        capture.release()
        writer.release()
    print(f"Saved {count} frames to {path}")
    return path


# ------------------------------------------------------------------------------ command line
def build_parser():
    """The argparse parser of ``python -m samples.balloon.balloon``."""
    from mrcnn.cli import add_weights_argument

    parser = argparse.ArgumentParser(prog="python -m samples.balloon.balloon",
                                     description="Train Mask R-CNN to detect balloons.")
    parser.add_argument("command", choices=["train", "splash"])
    parser.add_argument("--dataset", metavar="DIR", help="folder holding train/ and val/")
    add_weights_argument(parser)
    parser.add_argument("--logs", default=DEFAULT_LOGS_DIR, metavar="DIR",
                        help="logs and checkpoints folder")
    parser.add_argument("--image", metavar="PATH", help="splash: image to colour-splash")
    parser.add_argument("--video", metavar="PATH", help="splash: video to colour-splash")
    parser.add_argument("--epochs", type=int, default=30, help="train: epoch to stop at")
    parser.add_argument("--layers", default=None,
                        help="train: heads, 3+, 4+, 5+, all or a regex (default: 'all' with "
                             "--weights none, else 'heads')")
    parser.add_argument("--output", default=".", metavar="DIR", help="splash: output folder")
    return parser


def main(argv=None):
    """Run the command line; returns the History (train) or the written file (splash)."""
    from mrcnn.cli import default_layers, load_weights_spec, require_dataset_dir
    from mrcnn.model.maskrcnn import MaskRCNN

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.weights is None:
        parser.error("--weights is required (a .h5 path, last, imagenet, coco or none)")
    if args.command == "train":
        require_dataset_dir(args.dataset)
    elif bool(args.image) == bool(args.video):
        parser.error("splash needs exactly one of --image or --video")
    print(f"Command: {args.command}  weights: {args.weights}  dataset: {args.dataset}  "
          f"logs: {args.logs}")
    if args.command == "train":
        config = BalloonConfig()
        config.display()
        model = MaskRCNN(mode="training", config=config, model_dir=args.logs)
        load_weights_spec(model, args.weights)
        return train_balloon(model, args.dataset, epochs=args.epochs,
                             layers=args.layers or default_layers(args.weights))
    config = BalloonInferenceConfig()
    config.display()
    model = MaskRCNN(mode="inference", config=config, model_dir=args.logs)
    load_weights_spec(model, args.weights)
    return detect_and_color_splash(model, image_path=args.image, video_path=args.video,
                                   output_dir=args.output)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
