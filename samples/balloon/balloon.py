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
import logging
import os

import numpy as np
from PIL import Image

from mrcnn.config import Config
from mrcnn.data.dataset import Dataset, load_image_file
from mrcnn.data.via import entry_image, read_via_annotations, region_mask

__all__ = [
    "BalloonConfig", "BalloonInferenceConfig", "BalloonDataset", "read_via_annotations",
    "region_mask", "color_splash", "detect_and_color_splash", "load_balloon_datasets",
    "balloon_config", "train_balloon", "build_parser", "main",
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


def balloon_config(num_classes=None, base=None):
    """A ``base`` (default :class:`BalloonConfig`) instance, with ``NUM_CLASSES = num_classes``
    (background included) when given: data of another ``--format`` may have several classes."""
    from mrcnn.cli import config_with
    base = base or BalloonConfig
    if num_classes is None or int(num_classes) == base.NUM_CLASSES:
        return base()
    return config_with(base, NUM_CLASSES=int(num_classes))


class BalloonInferenceConfig(BalloonConfig):
    """:class:`BalloonConfig` for detection, one image at a time."""
    GPU_COUNT = 1
    IMAGES_PER_GPU = 1


# VIA parsing lives in the package (mrcnn.data.via): read_via_annotations, region_mask.

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
            path, height, width = entry_image(json_path, folder, entry)
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
def load_balloon_datasets(dataset_dir):
    """The classic layout's prepared ``(train, val)`` :class:`BalloonDataset` pair."""
    datasets = []
    for subset in ("train", "val"):
        dataset = BalloonDataset()
        dataset.load_balloon(dataset_dir, subset)
        dataset.prepare()
        datasets.append(dataset)
    return tuple(datasets)


def train_balloon(model, dataset_dir, epochs=30, layers="heads", learning_rate=None,
                  datasets=None):
    """Classic schedule: train the heads (``layers``) of a training ``MaskRCNN`` for ``epochs``.

    Starting from COCO weights, the heads alone are enough for balloons (classic comment).
    ``datasets``: a prepared ``(train, val)`` pair (any format) instead of ``dataset_dir``'s
    ``train/`` and ``val/`` folders. Returns the Keras ``History``.
    """
    train_set, val_set = datasets if datasets is not None else load_balloon_datasets(dataset_dir)
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
    parser.add_argument("--num-classes", type=int, default=None,
                        help="splash: classes of the model, background included (a model "
                             "trained with another --format; default 2)")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="train with another --format: fraction of the images held out for "
                             "validation (without --val-dataset)")
    from mrcnn.data.formats import add_format_arguments
    add_format_arguments(parser, native="balloon",
                         native_help=f"--dataset holding train/ and val/, each with "
                                     f"{ANNOTATION_FILE}")
    return parser


def main(argv=None):
    """Run the command line; returns the History (train) or the written file (splash)."""
    from mrcnn.cli import default_layers, load_weights_spec, require_dataset_dir
    from mrcnn.model.maskrcnn import MaskRCNN

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.weights is None:
        parser.error("--weights is required (a .h5 path, last, imagenet, coco or none)")
    datasets = None
    if args.command == "train" and args.format == "balloon":
        require_dataset_dir(args.dataset)
    elif args.command == "train":
        from mrcnn.data.formats import load_format_datasets
        if args.dataset is None:
            parser.error(f"--format {args.format} needs --dataset (its json or folder)")
        datasets = load_format_datasets(args, "train")
    elif bool(args.image) == bool(args.video):
        parser.error("splash needs exactly one of --image or --video")
    print(f"Command: {args.command}  weights: {args.weights}  dataset: {args.dataset}  "
          f"logs: {args.logs}")
    if args.command == "train":
        config = balloon_config(datasets[0].num_classes if datasets else None)
        config.display()
        model = MaskRCNN(mode="training", config=config, model_dir=args.logs)
        load_weights_spec(model, args.weights)
        return train_balloon(model, args.dataset, epochs=args.epochs,
                             layers=args.layers or default_layers(args.weights),
                             datasets=datasets)
    config = balloon_config(args.num_classes, BalloonInferenceConfig)
    config.display()
    model = MaskRCNN(mode="inference", config=config, model_dir=args.logs)
    load_weights_spec(model, args.weights)
    return detect_and_color_splash(model, image_path=args.image, video_path=args.video,
                                   output_dir=args.output)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
