"""Batch prediction over many images: ``python -m mrcnn.predict``.

::

    python -m mrcnn.predict --config MODULE:CLASS --weights PATH --images DIR_OR_GLOB \\
        --output results.json [--shard I/N] [--pictures DIR] [--annotations COCO.json]

* Images (JPEG, PNG, BMP, GIF) are read and decoded by ``tf.data`` in parallel with the network
  and batched (``--batch-size``, default the config's IMAGES_PER_GPU).
* ``--shard I/N`` keeps every N-th image of the sorted list starting at the I-th (0 <= I < N): N
  jobs on N machines cover every image once, and their result lists concatenate.
* The output is a COCO results json: ``[{"image_id", "category_id", "bbox": [x, y, w, h],
  "score", "segmentation": compressed RLE with str counts, "file_name"}]``, written whole or
  not at all. Image ids are the annotation file's ids with ``--annotations`` (matched by file
  name), else the file name's number when it is one (``000123.jpg`` -> 123), else the image's
  position in the sorted list of all images (the same in every shard).
* Category ids are the config's class ids, or with ``--annotations`` the file's category ids in
  ascending order (class 1 = the smallest id, as ``CocoDataset.load_coco`` numbers them).
* ``--annotations`` also prints the COCO box and mask AP of this run's images
  (:mod:`mrcnn.eval.coco_eval`); ``--pictures DIR`` writes one PNG of the detections per image.
* A file that cannot be read or decoded is reported by path, skipped, and counted at the end;
  it never stops the run.
"""
import argparse
import glob
import json
import logging
import os
import sys
import time

import numpy as np

from mrcnn.cli import add_weights_argument, load_config, load_weights_spec, parse_config_overrides

__all__ = ["IMAGE_EXTENSIONS", "list_images", "parse_shard", "shard", "image_ids_for",
           "decoded_batches", "Progress", "predict", "main"]

logger = logging.getLogger(__name__)

#: File name endings taken from an --images folder (tf.io.decode_image's formats).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def list_images(spec):
    """Sorted image paths of a folder (by IMAGE_EXTENSIONS, not recursive) or a glob pattern."""
    if os.path.isdir(spec):
        paths = [os.path.join(spec, name) for name in os.listdir(spec)
                 if name.lower().endswith(IMAGE_EXTENSIONS)]
    else:
        paths = [p for p in glob.glob(spec, recursive=True) if os.path.isfile(p)]
    if not paths:
        raise FileNotFoundError(f"--images {spec!r}: no image files found (a folder is searched "
                                f"for {', '.join(IMAGE_EXTENSIONS)}; anything else is a glob)")
    return sorted(paths)


def parse_shard(text):
    """``"I/N"`` -> (I, N) with 0 <= I < N; ValueError naming the value otherwise."""
    try:
        index, count = (int(part) for part in str(text).split("/"))
    except ValueError:
        raise ValueError(f"--shard must be I/N (e.g. 0/4), got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"--shard {text!r}: need 0 <= I < N")
    return index, count


def shard(items, index, count):
    """Every ``count``-th item starting at ``index``, with positions: [(position, item)]."""
    return [(i, item) for i, item in enumerate(items) if i % count == index]


def image_ids_for(paths, annotations=None):
    """{path: COCO image id} for every path (see the module docstring for the rule)."""
    if annotations is not None:
        by_name = {os.path.basename(img["file_name"]): img["id"]
                   for img in annotations["images"]}
        missing = [p for p in paths if os.path.basename(p) not in by_name]
        if missing:
            raise ValueError(f"--annotations: {len(missing)} image(s) are not in the annotation "
                             f"file, e.g. {missing[0]} (images are matched by file name)")
        return {p: by_name[os.path.basename(p)] for p in paths}
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    if all(s.isdigit() for s in stems) and len(set(int(s) for s in stems)) == len(stems):
        return {p: int(s) for p, s in zip(paths, stems)}
    return {p: i for i, p in enumerate(paths)}


def decoded_batches(paths, batch_size, on_corrupt):
    """Yield lists of (position, RGB uint8 image) decoded by tf.data, ``batch_size`` at a time.

    Reading and decoding run in parallel (AUTOTUNE) and ahead of the consumer (prefetch).
    Elements whose file cannot be read or decoded are dropped by ``ignore_errors``; since order is
    kept, every gap in the positions names a corrupt file: ``on_corrupt(path)`` is called for it.
    """
    import tensorflow as tf

    def load(position, path):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, dtype=tf.uint8,
                                   expand_animations=False)
        return position, image

    dataset = tf.data.Dataset.from_tensor_slices((tf.range(len(paths), dtype=tf.int64),
                                                  tf.constant(paths)))
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.ignore_errors()
    dataset = dataset.ragged_batch(batch_size).prefetch(2)
    expected = 0
    for positions, images in dataset:
        batch = []
        for row, position in enumerate(positions.numpy().tolist()):
            for missing in range(expected, position):
                on_corrupt(paths[missing])
            expected = position + 1
            batch.append((position, images[row].to_tensor().numpy()))
        yield batch
    for missing in range(expected, len(paths)):
        on_corrupt(paths[missing])


class Progress:
    """One status line on a stream: done/total, images/s and the time left."""

    def __init__(self, total, stream=None, min_interval=0.5):
        self.total, self.done, self.corrupt = total, 0, 0
        self.stream = stream if stream is not None else sys.stderr
        self.started = time.monotonic()
        self.min_interval, self._last = min_interval, 0.0

    def update(self, done=0, corrupt=0, force=False):
        self.done += done
        self.corrupt += corrupt
        now = time.monotonic()
        if not force and now - self._last < self.min_interval:
            return
        self._last = now
        elapsed = max(now - self.started, 1e-9)
        handled = self.done + self.corrupt
        rate = self.done / elapsed
        left = (self.total - handled) * elapsed / handled if handled else float("nan")
        width = 30
        filled = int(width * handled / max(self.total, 1))
        eta = "?" if left != left else f"{int(left // 60)}m{int(left % 60):02d}s"
        self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {handled}/{self.total} "
                          f"images  {rate:.2f} images/s  {eta} left  ({self.corrupt} corrupt)")
        self.stream.flush()

    def close(self):
        self.update(force=True)
        self.stream.write("\n")
        self.stream.flush()


def _write_json_atomic(path, data):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def _detect(model, images):
    """detect() on a batch; modes other than "square" mold to the image size, so sizes that
    differ are detected one by one."""
    if model.config.IMAGE_RESIZE_MODE != "square" and len({i.shape for i in images}) > 1:
        return [model.detect([image])[0] for image in images]
    return model.detect(images)


def predict(model, paths, output, image_ids=None, annotations=None, pictures=None,
            stream=None):
    """Detect on ``paths`` and write the COCO results json ``output``.

    Args:
        model: inference MaskRCNN (its BATCH_SIZE is the batch size).
        paths: all image paths of the run (after sharding).
        image_ids: {path: COCO image id} (default :func:`image_ids_for` of ``paths``).
        annotations: parsed COCO json or None (ids, category ids, class names, evaluation).
        pictures: folder for PNGs of the detections, or None.
    Returns:
        dict ``{"results": [...], "images": n, "corrupt": [paths], "metrics": {...} or None}``.
    """
    from mrcnn.eval.coco_eval import detections_to_coco_results

    ids = image_ids if image_ids is not None else image_ids_for(paths, annotations)
    categories = sorted(c["id"] for c in annotations["categories"]) if annotations else None
    class_names = ["BG"] + [f"class {i}" for i in range(1, model.config.NUM_CLASSES)]
    if annotations:
        names = {c["id"]: c.get("name", str(c["id"])) for c in annotations["categories"]}
        class_names = ["BG"] + [names[c] for c in categories]
    if pictures:
        os.makedirs(pictures, exist_ok=True)
    progress = Progress(len(paths), stream=stream)
    corrupt, results, done_ids = [], [], []

    def on_corrupt(path):
        corrupt.append(path)
        progress.stream.write(f"\ncorrupt image skipped: {path}\n")
        progress.update(corrupt=1, force=True)

    for batch in decoded_batches(list(paths), model.config.BATCH_SIZE, on_corrupt):
        detections = _detect(model, [image for _, image in batch])
        for (position, image), r in zip(batch, detections):
            path = paths[position]
            entries = detections_to_coco_results([ids[path]], [r],
                                                 image_shapes=[image.shape[:2]])
            for entry in entries:
                if categories is not None:
                    entry["category_id"] = categories[entry["category_id"] - 1]
                entry["file_name"] = os.path.basename(path)
            results.extend(entries)
            done_ids.append(ids[path])
            if pictures:
                from mrcnn.visualize import save_instances_figure
                name = os.path.splitext(os.path.basename(path))[0] + ".png"
                save_instances_figure(os.path.join(pictures, name), image, r["rois"], r["masks"],
                                      r["class_ids"], class_names, r["scores"],
                                      title=os.path.basename(path))
        progress.update(done=len(batch))
    progress.close()
    _write_json_atomic(output, results)
    metrics = None
    if annotations is not None and done_ids:
        metrics = _evaluate(annotations, results, done_ids)
    return {"results": results, "images": len(done_ids), "corrupt": corrupt, "metrics": metrics}


def _evaluate(annotations, results, image_ids):
    import contextlib
    import io

    from pycocotools.coco import COCO

    from mrcnn.eval.coco_eval import evaluate_coco_results

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = annotations
        coco_gt.createIndex()
    return evaluate_coco_results(coco_gt, results, image_ids=image_ids)


def build_parser():
    ap = argparse.ArgumentParser(prog="python -m mrcnn.predict",
                                 description="Mask R-CNN over many images -> COCO results json")
    ap.add_argument("--config", required=True, metavar="MODULE:CLASS",
                    help="Config subclass, as package.module:Class or path/file.py:Class")
    add_weights_argument(ap)
    ap.add_argument("--images", required=True, metavar="DIR_OR_GLOB")
    ap.add_argument("--output", required=True, metavar="results.json")
    ap.add_argument("--shard", default="0/1", metavar="I/N",
                    help="take every N-th image starting at the I-th (0-based)")
    ap.add_argument("--pictures", metavar="DIR", help="write a PNG of the detections per image")
    ap.add_argument("--annotations", metavar="COCO.json",
                    help="ground truth: image/category ids, and print COCO box and mask AP")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="images per network call (default: the config's IMAGES_PER_GPU)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=JSON",
                    help="override a config attribute (repeatable)")
    ap.add_argument("--logs", default="logs", help="model_dir (for --weights last)")
    return ap


def main(argv=None, stream=None):
    ap = build_parser()
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    stream = stream if stream is not None else sys.stderr
    try:
        index, count = parse_shard(args.shard)
        overrides = parse_config_overrides(args.set)
        batch = args.batch_size or getattr(load_config(args.config, overrides), "IMAGES_PER_GPU")
        config = load_config(args.config, overrides, images_per_batch=batch)
        all_paths = list_images(args.images)
        annotations = None
        if args.annotations:
            with open(args.annotations) as fh:
                annotations = json.load(fh)
        ids = image_ids_for(all_paths, annotations)
    except (ValueError, ImportError, FileNotFoundError, json.JSONDecodeError) as exc:
        ap.error(str(exc))
    if args.weights is None:
        ap.error("--weights is required (a .h5 path, 'last', or 'none' for random weights)")
    from mrcnn.model.maskrcnn import MaskRCNN

    paths = [p for _, p in shard(all_paths, index, count)]
    model = MaskRCNN(mode="inference", config=config, model_dir=args.logs)
    load_weights_spec(model, args.weights)
    stream.write(f"shard {index}/{count}: {len(paths)} of {len(all_paths)} images, batch "
                 f"{config.BATCH_SIZE}\n")
    report = predict(model, paths, args.output, image_ids=ids, annotations=annotations,
                     pictures=args.pictures, stream=stream)
    stream.write(f"{report['images']} images, {len(report['results'])} detections -> "
                 f"{args.output}; {len(report['corrupt'])} corrupt image(s) skipped\n")
    for path in report["corrupt"]:
        stream.write(f"  corrupt: {path}\n")
    if report["metrics"]:
        for metrics in report["metrics"].values():
            stream.write(metrics.summary)
        stream.write("COCO box AP {:.4f}  mask AP {:.4f}\n".format(
            report["metrics"]["bbox"]["AP"], report["metrics"]["segm"]["AP"]))
    stream.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
