"""Shapes: Mask R-CNN on synthetic images of squares, circles and triangles (classic sample).

Each image is a plain background colour with 1-4 shapes of random colour, position and size, drawn
with OpenCV; nothing is read from disk. Shapes that overlap too much are dropped at generation
(non-maximum suppression at IoU 0.3, as classic) and later shapes occlude earlier ones.

Configs:
    * :class:`ShapesConfig`: the classic values (ResNet-101, 8 images per GPU, 128 x 128 images).
    * :class:`ShapesCPUConfig`: tuned to train from scratch quickly on a small CPU (ResNet-50,
      trainable BatchNorm, fewer proposals and anchors, a larger learning rate).
    * :class:`ShapesInferenceConfig` / :class:`ShapesCPUInferenceConfig`: one image per batch.

Command line (from the repository root)::

    python -m samples.shapes.shapes train    --epochs 10 --logs ./logs
    python -m samples.shapes.shapes evaluate --weights last --limit 50
    python -m samples.shapes.shapes detect   --weights last --output ./shapes_detections
    python -m samples.shapes.shapes demo     # train + evaluate + detect

The same steps are plain functions (:func:`train_shapes`, :func:`load_inference_model`,
:func:`evaluate_shapes`, :func:`write_detection_pictures`) for notebooks and tests.

Datasets are deterministic: :func:`make_dataset` seeds each split from ``(seed, split)`` so that
training, validation and evaluation images never coincide for the same ``--seed``.
"""
import argparse
import math
import os
import time

import cv2
import numpy as np

from mrcnn.config import Config
from mrcnn.data.dataset import Dataset
from mrcnn.ops.boxes import non_max_suppression

__all__ = [
    "SHAPES", "SPLITS", "ShapesConfig", "ShapesCPUConfig", "ShapesInferenceConfig",
    "ShapesCPUInferenceConfig", "ShapesDataset", "make_config", "make_dataset", "train_shapes",
    "load_inference_model", "evaluate_shapes", "write_detection_pictures", "main",
]

# Class names in class-id order (1, 2, 3); id 0 is the background.
SHAPES = ("square", "circle", "triangle")
# Seed offsets of the dataset splits: images of one split never repeat in another.
SPLITS = {"train": 0, "val": 1, "eval": 2}


# ----------------------------------------------------------------------------------- configs
class ShapesConfig(Config):
    """Classic configuration of the shapes sample (128 x 128 images, 3 classes + background)."""
    NAME = "shapes"
    GPU_COUNT = 1
    IMAGES_PER_GPU = 8
    NUM_CLASSES = 1 + len(SHAPES)
    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 128
    # Small images and small objects: anchors one octave smaller than the default.
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    # Few objects per image: few ROIs are enough.
    TRAIN_ROIS_PER_IMAGE = 32
    STEPS_PER_EPOCH = 100
    VALIDATION_STEPS = 5


class ShapesCPUConfig(ShapesConfig):
    """Shapes tuned for training from scratch (random init) on a 2-core CPU.

    Not classic. Every value below is a plain class attribute, meant to be tuned:

    - ResNet-50 instead of ResNet-101: half the backbone compute.
    - ``TRAIN_BN = None``: BatchNorm layers train (there are no pretrained statistics to keep
      frozen).
    - 4 images per batch (classic 8): twice the updates per minute, which matters more than
      batch size when training from scratch for a few minutes.
    - Lighter heads: 14 x 14 mask targets from 7 x 7 RoIAlign (classic 28 from 14: the mask
      head dominated the step time) and a 512-wide classifier (classic 1024). Shapes of 20-60
      pixels need no finer masks.
    - Fewer proposals (``PRE_NMS_LIMIT``, ``POST_NMS_ROIS_*``) and RPN anchor samples: an image
      holds at most 4 objects.
    - ``LEARNING_RATE = 0.01`` (classic 0.001): from scratch with trainable BatchNorm, the small
      classic rate learns too slowly for a short CPU run; gradients are still clipped at
      ``GRADIENT_CLIP_NORM``. Lower it if the losses diverge (NaN).
    - ``DETECTION_MIN_CONFIDENCE = 0.3``: after minutes of training, correct detections often
      score 0.3-0.7; measured on a 15-minute checkpoint, mAP@0.5 went from 0.46 at 0.7 to 0.65
      at 0.3.
    - ``TRAIN_ROIS_INCLUDE_GT = True``: GT boxes join the proposals the head ROIs are sampled
      from, so the heads get positives before the RPN has learned anything.
    - ``BATCH_NORM_MOMENTUM = 0.9`` (Keras 0.99): moving statistics that keep up with weights
      changing fast from scratch (the 5-minute mAP@0.5 went from 0.25 to 0.46 together with the
      next item; docs/benchmarks.md).
    - ``TOP_DOWN_PYRAMID_SIZE = 128`` (classic 256): at 128 x 128 the FPN and RPN convolutions
      over P2 cost as much as the ResNet-50; half the channels: 0.35 s instead of 0.44 s a step.
    """
    BACKBONE = "resnet50"
    TRAIN_BN = None
    IMAGES_PER_GPU = 4
    MASK_POOL_SIZE = 7
    MASK_SHAPE = [14, 14]
    FPN_CLASSIF_FC_LAYERS_SIZE = 512
    PRE_NMS_LIMIT = 2000
    POST_NMS_ROIS_TRAINING = 500
    POST_NMS_ROIS_INFERENCE = 500
    RPN_TRAIN_ANCHORS_PER_IMAGE = 64
    TRAIN_ROIS_PER_IMAGE = 32
    MAX_GT_INSTANCES = 10
    DETECTION_MIN_CONFIDENCE = 0.3
    LEARNING_RATE = 0.01
    TRAIN_ROIS_INCLUDE_GT = True
    BATCH_NORM_MOMENTUM = 0.9
    TOP_DOWN_PYRAMID_SIZE = 128


class ShapesInferenceConfig(ShapesConfig):
    """:class:`ShapesConfig` for detection, one image at a time (classic notebook)."""
    GPU_COUNT = 1
    IMAGES_PER_GPU = 1


class ShapesCPUInferenceConfig(ShapesCPUConfig):
    """:class:`ShapesCPUConfig` for detection, one image at a time."""
    GPU_COUNT = 1
    IMAGES_PER_GPU = 1


_CONFIGS = {
    ("cpu", "training"): ShapesCPUConfig, ("cpu", "inference"): ShapesCPUInferenceConfig,
    ("classic", "training"): ShapesConfig, ("classic", "inference"): ShapesInferenceConfig,
}


def make_config(kind="cpu", mode="training"):
    """A config instance: ``kind`` "cpu" or "classic", ``mode`` "training" or "inference"."""
    try:
        return _CONFIGS[(kind, mode)]()
    except KeyError:
        raise ValueError(f"make_config: kind must be 'cpu' or 'classic' and mode 'training' or "
                         f"'inference', got kind={kind!r}, mode={mode!r}") from None


# ----------------------------------------------------------------------------------- dataset
class ShapesDataset(Dataset):
    """Synthetic shapes, generated on the fly from stored specs.

    ``image_info[i]`` holds ``height``, ``width``, ``bg_color`` (r, g, b) and ``shapes``: a list of
    ``(name, (r, g, b), (x, y, s))`` in drawing order, with ``(x, y)`` the centre and ``s`` the
    half size in pixels (all Python ints). Class ids: 1 square, 2 circle, 3 triangle.
    """

    # Distance of a shape's centre from the border and its smallest half size (classic).
    BUFFER = 20

    def __init__(self, class_map=None):
        super().__init__(class_map)
        self.rng = np.random.default_rng()

    def load_shapes(self, count, height, width, seed=None):
        """Generate ``count`` image specs of ``height`` x ``width`` pixels.

        Args:
            seed: anything ``np.random.default_rng`` accepts (int, sequence of ints, None); the
                same seed gives the same images. The generator is kept in ``self.rng``.
        """
        if int(count) != count or count < 0:
            raise ValueError(f"load_shapes: count must be a non-negative integer, got {count!r}")
        self.rng = np.random.default_rng(seed)
        for class_id, name in enumerate(SHAPES, start=1):
            self.add_class("shapes", class_id, name)
        for i in range(int(count)):
            bg_color, shapes = self.random_image(height, width)
            self.add_image("shapes", image_id=i, path=None, width=int(width), height=int(height),
                           bg_color=bg_color, shapes=shapes)

    def random_shape(self, height, width, rng=None):
        """One random shape spec ``(name, (r, g, b), (x, y, s))`` that fits a height x width image.

        The centre lies at least ``BUFFER`` pixels from each border; the half size ``s`` is in
        ``[BUFFER, height // 4]`` (classic ranges).
        """
        rng = self.rng if rng is None else rng
        buffer = self.BUFFER
        if height // 4 < buffer or width < 2 * buffer + 1:
            raise ValueError(f"random_shape: images must be at least {4 * buffer} pixels high and "
                             f"{2 * buffer + 1} wide, got height={height}, width={width}")
        name = SHAPES[int(rng.integers(len(SHAPES)))]
        color = tuple(int(c) for c in rng.integers(0, 256, size=3))
        y = int(rng.integers(buffer, height - buffer))
        x = int(rng.integers(buffer, width - buffer))
        s = int(rng.integers(buffer, height // 4 + 1))
        return name, color, (x, y, s)

    def random_image(self, height, width, rng=None):
        """Background colour and 1-4 shape specs of one image.

        Shapes whose boxes overlap by IoU > 0.3 are thinned out by non-maximum suppression with
        later shapes preferred (classic), and shapes hidden completely by later ones are dropped,
        so every kept shape has a non-empty mask.

        Returns:
            ``((r, g, b), [shape spec, ...])`` in drawing order.
        """
        rng = self.rng if rng is None else rng
        bg_color = tuple(int(c) for c in rng.integers(0, 256, size=3))
        count = int(rng.integers(1, 5))
        shapes = [self.random_shape(height, width, rng) for _ in range(count)]
        boxes = np.array([[y - s, x - s, y + s, x + s] for _, _, (x, y, s) in shapes])
        keep = np.sort(non_max_suppression(boxes, np.arange(count), 0.3))
        shapes = [shapes[i] for i in keep]
        visible = self._visible_masks(shapes, height, width).any(axis=(0, 1))
        return bg_color, [shape for shape, seen in zip(shapes, visible) if seen]

    @staticmethod
    def draw_shape(image, shape, dims, color):
        """Draw one filled shape into ``image`` (in place, also returned) with OpenCV.

        Args:
            image: ``[H, W]`` or ``[H, W, C]`` contiguous uint8 array.
            shape: "square", "circle" or "triangle".
            dims: ``(x, y, s)`` centre and half size in pixels.
            color: scalar or ``(r, g, b)`` ints.
        """
        x, y, s = dims
        if shape == "square":
            cv2.rectangle(image, (x - s, y - s), (x + s, y + s), color, -1)
        elif shape == "circle":
            cv2.circle(image, (x, y), s, color, -1)
        elif shape == "triangle":
            half_base = s / math.sin(math.radians(60))
            points = np.array([[(x, y - s), (x - half_base, y + s), (x + half_base, y + s)]],
                              dtype=np.int32)
            cv2.fillPoly(image, points, color)
        else:
            raise ValueError(f"draw_shape: unknown shape {shape!r}; expected one of {SHAPES}")
        return image

    @classmethod
    def _visible_masks(cls, shapes, height, width):
        """``[H, W, N]`` bool: the pixels of each shape that no later shape covers."""
        masks = np.zeros([height, width, len(shapes)], dtype=bool)
        for i, (name, _, dims) in enumerate(shapes):
            canvas = np.zeros([height, width], dtype=np.uint8)
            masks[:, :, i] = cls.draw_shape(canvas, name, dims, 1).astype(bool)
        if shapes:
            # Walk backwards: each shape loses what the shapes drawn after it cover.
            occlusion = np.logical_not(masks[:, :, -1])
            for i in range(len(shapes) - 2, -1, -1):
                masks[:, :, i] &= occlusion
                occlusion &= np.logical_not(masks[:, :, i])
        return masks

    def load_image(self, image_id):
        """``[H, W, 3]`` uint8 RGB: the background colour, then each shape in order."""
        info = self._image_info_for(image_id, "load_image")
        image = np.empty([info["height"], info["width"], 3], dtype=np.uint8)
        image[:] = info["bg_color"]
        for name, color, dims in info["shapes"]:
            self.draw_shape(image, name, dims, color)
        return image

    def load_mask(self, image_id):
        """Instance masks ``[H, W, N]`` bool (visible pixels only; later shapes occlude earlier
        ones) and class ids ``[N]`` int32 in 1..3, one per shape."""
        info = self._image_info_for(image_id, "load_mask")
        if info["source"] != "shapes":
            return super().load_mask(image_id)
        shapes = info["shapes"]
        masks = self._visible_masks(shapes, info["height"], info["width"])
        class_ids = np.array([self.map_source_class_id(f"shapes.{SHAPES.index(name) + 1}")
                              for name, _, _ in shapes], dtype=np.int32)
        return masks, class_ids

    def image_reference(self, image_id):
        """The shape specs of the image (classic)."""
        info = self._image_info_for(image_id, "image_reference")
        if info["source"] == "shapes":
            return info["shapes"]
        return super().image_reference(image_id)


def make_dataset(count, split="train", seed=0, height=128, width=128):
    """A prepared :class:`ShapesDataset` of ``count`` images for ``split`` ("train", "val",
    "eval"); the generator is seeded with ``(seed, SPLITS[split])``."""
    if split not in SPLITS:
        raise ValueError(f"make_dataset: split must be one of {list(SPLITS)}, got {split!r}")
    dataset = ShapesDataset()
    dataset.load_shapes(count, height, width, seed=[int(seed), SPLITS[split]])
    dataset.prepare()
    return dataset


# ------------------------------------------------------------------------- train / evaluate
def _resolve_weights(model, weights):
    """Path of ``weights`` ("last", "imagenet" or a file path) for ``model``."""
    if weights == "last":
        return model.find_last()
    if weights == "imagenet":
        return model.get_imagenet_weights()
    return weights


def train_shapes(config=None, logs="./logs", epochs=10, steps=None, train_images=500,
                 val_images=50, seed=0, weights=None, layers="all", minutes=None,
                 callbacks=None, total_steps=None):
    """Train Mask R-CNN on generated shapes; returns the training ``MaskRCNN``.

    Args:
        config: a training config (default :class:`ShapesCPUConfig`).
        logs: model_dir; checkpoints go to ``<logs>/shapes<timestamp>/``.
        epochs: epoch number to stop at (training resumes from a checkpoint's epoch).
        steps: overrides ``config.STEPS_PER_EPOCH``.
        train_images, val_images: sizes of the generated splits.
        seed: seed of the generated data (see :func:`make_dataset`).
        weights: None (random init), "last", "imagenet" or a ``.h5`` path (loaded by name).
        layers: regex or preset passed to ``MaskRCNN.train``.
        minutes: stop training after this many minutes (the last checkpoint is still written).
        callbacks: extra Keras callbacks.
        total_steps: train exactly this many steps (``epochs`` becomes enough epochs for them),
            printing the expected time after the first steps and the time left at each epoch
            (:class:`mrcnn.model.progress.StepBudget`); ``minutes`` then only caps it.
    """
    from mrcnn.model.maskrcnn import MaskRCNN

    config = config if config is not None else ShapesCPUConfig()
    if steps is not None:
        config.STEPS_PER_EPOCH = int(steps)
    height, width = (int(d) for d in config.IMAGE_SHAPE[:2])
    train_set = make_dataset(train_images, "train", seed, height, width)
    val_set = make_dataset(val_images, "val", seed, height, width)
    model = MaskRCNN(mode="training", config=config, model_dir=logs)
    if weights:
        path = _resolve_weights(model, weights)
        print(f"Loading weights {path}")
        model.load_weights(path, by_name=True)
    callbacks = list(callbacks or [])
    if total_steps:
        from mrcnn.model.progress import StepBudget
        epochs = model.epoch + -(-int(total_steps) // int(config.STEPS_PER_EPOCH))
        callbacks.append(StepBudget(int(total_steps), minutes=minutes or None))
    elif minutes:
        from mrcnn.model.training import TimeLimit
        callbacks.append(TimeLimit(minutes))
    print(f"Training on {train_images} images ({config.STEPS_PER_EPOCH} steps of "
          f"{config.BATCH_SIZE}) up to epoch {epochs}"
          + (f", {total_steps} steps in all" if total_steps else "")
          + f"; logs in {model.log_dir}")
    model.train(train_set, val_set, learning_rate=config.LEARNING_RATE, epochs=epochs,
                layers=layers, custom_callbacks=callbacks, seed=seed)
    return model


def load_inference_model(config=None, logs="./logs", weights="last"):
    """An inference ``MaskRCNN`` with ``weights`` ("last" or a path) loaded."""
    from mrcnn.model.maskrcnn import MaskRCNN

    config = config if config is not None else ShapesCPUInferenceConfig()
    model = MaskRCNN(mode="inference", config=config, model_dir=logs)
    path = _resolve_weights(model, weights)
    print(f"Loading weights {path}")
    model.load_weights(path, by_name=True)
    return model


def _detect_all(model, images):
    """Detections of every image; the first batch runs twice so graph tracing is not timed."""
    batch = max(1, int(model.config.BATCH_SIZE))
    model.detect(images[:batch])
    start = time.perf_counter()
    results = model.detect(images)
    return results, (time.perf_counter() - start) / max(1, len(images))


def evaluate_shapes(model, dataset, limit=None):
    """Classic mAP@0.5 and COCO box/mask AP of an inference model on a prepared dataset.

    Args:
        model: ``MaskRCNN`` in inference mode.
        dataset: prepared :class:`ShapesDataset` (use held-out images: ``make_dataset(n, "eval")``).
        limit: evaluate the first ``limit`` images (None: all).

    Returns:
        dict: ``mAP50`` (mean over images of the classic per-image mask AP at IoU 0.5),
        ``coco_bbox_AP``, ``coco_segm_AP``, ``coco_bbox_AP50``, ``coco_segm_AP50`` (COCO AP via
        pycocotools), ``seconds_per_image`` (detection only, after a warm-up batch),
        ``num_images``, ``num_detections``, ``per_image_AP`` (list), ``coco`` (the
        ``{iou_type: CocoMetrics}`` of :func:`mrcnn.eval.coco_eval.evaluate_coco`),
        ``image_ids`` and ``predictions`` (the ``detect`` dicts, aligned with ``image_ids``).
    """
    from mrcnn.eval.coco_eval import evaluate_coco
    from mrcnn.eval.metrics import compute_ap
    from mrcnn.ops.masks import extract_bboxes

    image_ids = [int(i) for i in dataset.image_ids]
    if limit is not None:
        image_ids = image_ids[:int(limit)]
    if not image_ids:
        raise ValueError("evaluate_shapes: no images to evaluate (empty dataset or limit=0)")
    images = [dataset.load_image(i) for i in image_ids]
    predictions, seconds = _detect_all(model, images)

    aps = []
    for image_id, r in zip(image_ids, predictions):
        gt_masks, gt_class_ids = dataset.load_mask(image_id)
        ap, _, _, _ = compute_ap(extract_bboxes(gt_masks), gt_class_ids, gt_masks,
                                 r["rois"], r["class_ids"], r["scores"], r["masks"])
        aps.append(float(ap))
    coco = evaluate_coco(dataset, predictions, image_ids=image_ids)
    return {
        "mAP50": float(np.mean(aps)),
        "coco_bbox_AP": float(coco["bbox"]["AP"]), "coco_segm_AP": float(coco["segm"]["AP"]),
        "coco_bbox_AP50": float(coco["bbox"]["AP50"]),
        "coco_segm_AP50": float(coco["segm"]["AP50"]),
        "seconds_per_image": seconds, "num_images": len(image_ids),
        "num_detections": int(sum(len(r["class_ids"]) for r in predictions)),
        "per_image_AP": aps, "coco": coco, "image_ids": image_ids, "predictions": predictions,
    }


def write_detection_pictures(model, dataset, output_dir, limit=10, image_ids=None,
                             predictions=None):
    """Write ``detection_<id>.png`` (ground truth left, detections right) for some images.

    Args:
        model: inference ``MaskRCNN`` (unused when ``predictions`` are given).
        dataset: prepared :class:`ShapesDataset`.
        output_dir: folder, created if needed.
        limit: number of images (the first ones of ``image_ids`` / the dataset).
        predictions: optional ``detect`` dicts aligned with ``image_ids`` (e.g. from
            :func:`evaluate_shapes`), to avoid running detection again.

    Returns:
        list of the written paths.
    """
    from mrcnn import visualize
    from mrcnn.ops.masks import extract_bboxes

    if image_ids is None:
        image_ids = [int(i) for i in dataset.image_ids]
    image_ids = list(image_ids)[:int(limit)]
    images = [dataset.load_image(i) for i in image_ids]
    if predictions is None:
        predictions = model.detect(images)
    predictions = list(predictions)[:len(image_ids)]
    if len(predictions) != len(image_ids):
        raise ValueError(f"write_detection_pictures: {len(predictions)} predictions for "
                         f"{len(image_ids)} images")
    os.makedirs(output_dir, exist_ok=True)
    paths = []
    for image_id, image, r in zip(image_ids, images, predictions):
        gt_masks, gt_class_ids = dataset.load_mask(image_id)
        path = os.path.join(output_dir, f"detection_{image_id:04d}.png")
        visualize.save_comparison_figure(
            path, image, gt=(extract_bboxes(gt_masks), gt_masks, gt_class_ids),
            pred=(r["rois"], r["masks"], r["class_ids"], r["scores"]),
            class_names=dataset.class_names, title=f"shapes image {image_id}")
        paths.append(path)
    return paths


def _print_metrics(metrics):
    print(f"Evaluated {metrics['num_images']} held-out images, "
          f"{metrics['num_detections']} detections")
    print(f"  classic mAP@0.5 (per-image mask AP, mean): {metrics['mAP50']:.3f}")
    print(f"  COCO box AP:  {metrics['coco_bbox_AP']:.3f} (AP50 {metrics['coco_bbox_AP50']:.3f})")
    print(f"  COCO mask AP: {metrics['coco_segm_AP']:.3f} (AP50 {metrics['coco_segm_AP50']:.3f})")
    print(f"  seconds per image (detect): {metrics['seconds_per_image']:.3f}")


# ------------------------------------------------------------------------------ command line
def build_parser():
    """The argparse parser of ``python -m samples.shapes.shapes``."""
    parser = argparse.ArgumentParser(
        prog="python -m samples.shapes.shapes",
        description="Train and evaluate Mask R-CNN on synthetic shapes.")
    parser.add_argument("command", choices=["train", "evaluate", "detect", "demo"],
                        help="train; evaluate (mAP@0.5, COCO AP); detect (write PNGs); "
                             "demo (train, then evaluate and detect)")
    parser.add_argument("--logs", default="./logs", help="logs and checkpoints folder")
    parser.add_argument("--weights", default=None,
                        help="'last', 'imagenet' or a .h5 path; train: default random init; "
                             "evaluate/detect: default 'last'")
    parser.add_argument("--epochs", type=int, default=10, help="epoch to stop training at")
    parser.add_argument("--steps", type=int, default=None,
                        help="steps per epoch (default: the config's STEPS_PER_EPOCH)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="stop training after this many minutes (checkpoint kept)")
    parser.add_argument("--total-steps", type=int, default=None,
                        help="train exactly this many steps (epochs follow), with the time left")
    parser.add_argument("--train-images", type=int, default=500)
    parser.add_argument("--val-images", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated images")
    parser.add_argument("--limit", type=int, default=50,
                        help="held-out images to evaluate (evaluate, demo)")
    parser.add_argument("--pictures", type=int, default=8,
                        help="number of PNGs written (detect, demo)")
    parser.add_argument("--output", default="./shapes_detections", help="folder for the PNGs")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--cpu-config", dest="config", action="store_const", const="cpu",
                      help="ShapesCPUConfig: ResNet-50, trainable BN, from scratch (default)")
    kind.add_argument("--classic-config", dest="config", action="store_const", const="classic",
                      help="ShapesConfig: the classic values (ResNet-101)")
    parser.set_defaults(config="cpu")
    return parser


def main(argv=None):
    """Run the command line; returns the metrics dict for evaluate/demo, else None."""
    args = build_parser().parse_args(argv)
    print(f"Command: {args.command}  config: {args.config}  logs: {args.logs}")
    if args.command in ("train", "demo"):
        config = make_config(args.config, "training")
        if args.steps is not None:
            config.STEPS_PER_EPOCH = args.steps
        config.display()
        train_shapes(config, logs=args.logs, epochs=args.epochs, train_images=args.train_images,
                     val_images=args.val_images, seed=args.seed, weights=args.weights,
                     minutes=args.minutes, total_steps=args.total_steps)
        if args.command == "train":
            return None
    # After training in demo, "last" is the checkpoint just written.
    weights = "last" if args.command == "demo" else (args.weights or "last")
    model = load_inference_model(make_config(args.config, "inference"), args.logs, weights)
    count = max(args.limit, args.pictures) if args.command == "demo" else (
        args.limit if args.command == "evaluate" else args.pictures)
    dataset = make_dataset(count, "eval", args.seed)
    metrics = None
    predictions, image_ids = None, None
    if args.command in ("evaluate", "demo"):
        metrics = evaluate_shapes(model, dataset, limit=args.limit)
        _print_metrics(metrics)
        predictions, image_ids = metrics["predictions"], metrics["image_ids"]
        if len(image_ids) < args.pictures:
            predictions, image_ids = None, None
    if args.command in ("detect", "demo"):
        paths = write_detection_pictures(model, dataset, args.output, limit=args.pictures,
                                         image_ids=image_ids, predictions=predictions)
        print(f"Wrote {len(paths)} pictures to {args.output}")
    return metrics


if __name__ == "__main__":
    main()
