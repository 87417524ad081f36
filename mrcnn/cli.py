"""Command-line helpers shared by the samples: ``--weights`` resolution and dataset checks.

Every sample accepts ``--weights`` (or ``--model``) as a path, ``last``, ``imagenet``, ``coco`` or
``none``; :func:`load_weights_spec` turns that into a loaded model with the classic rules (COCO
weights skip the class-dependent layers, ImageNet weights load by name).
"""
import json
import logging
import os

from mrcnn.model.pretrained import resolve_coco_weights

__all__ = ["CLASS_SPECIFIC_LAYERS", "add_weights_argument", "resolve_weights_path",
           "load_weights_spec", "require_dataset_dir"]

logger = logging.getLogger(__name__)

#: Layers whose shapes depend on NUM_CLASSES: skipped when starting from COCO weights.
CLASS_SPECIFIC_LAYERS = ["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask"]


def add_weights_argument(parser, *names, default=None):
    """Add the classic ``--weights``/``--model`` option to an argparse parser."""
    names = names or ("--weights",)
    parser.add_argument(*names, dest="weights", default=default, metavar="PATH|last|imagenet|coco|none",
                        help="weights to start from: a .h5 path, 'last' (newest checkpoint under "
                             "--logs), 'imagenet', 'coco' (a local file, else the classic "
                             "download) or 'none' (random initialisation)")
    return parser


def resolve_weights_path(model, spec):
    """The file that ``spec`` names for ``model`` (a MaskRCNN); None for 'none'/None."""
    if spec is None or str(spec).lower() in ("none", ""):
        return None
    key = str(spec).lower()
    if key == "last":
        return model.find_last()
    if key == "imagenet":
        return model.get_imagenet_weights()
    if key == "coco":
        return resolve_coco_weights(search_dirs=[model.model_dir, os.getcwd()])
    if not os.path.isfile(spec):
        raise FileNotFoundError(f"--weights: no such file: {spec}")
    return os.fspath(spec)


def load_weights_spec(model, spec):
    """Load the weights ``spec`` names into ``model``; returns the path (None if nothing loaded).

    COCO weights skip the class-dependent layers (the classic fine-tuning recipe), ImageNet
    weights load by name (only the backbone matches), anything else loads by name too.
    """
    path = resolve_weights_path(model, spec)
    if path is None:
        logger.info("Starting from random initialisation")
        return None
    exclude = CLASS_SPECIFIC_LAYERS if str(spec).lower() == "coco" else None
    logger.info("Loading weights %s", path)
    model.load_weights(path, by_name=True, exclude=exclude)
    return path


def require_dataset_dir(path, what="dataset"):
    """Fail early, naming the folder, when a dataset folder is missing."""
    if path is None or not os.path.isdir(path):
        raise FileNotFoundError(f"{what} folder not found: {path!r} (pass it with --dataset)")
    return os.fspath(path)


def parse_config_overrides(items):
    """``["NAME=JSON", ...]`` (repeated ``--set`` options) -> ``{NAME: value}``.

    ``NAME`` must be an upper-case config attribute; the value is JSON (``128``, ``0.9``,
    ``true``, ``[8, 16]``). Raises ValueError naming the malformed item.
    """
    overrides = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.isupper():
            raise ValueError(f"expected NAME=JSON with an upper-case config name, got {item!r}")
        try:
            overrides[name] = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{item!r}: the value is not JSON ({exc.msg}); strings need "
                             f"quotes, e.g. NAME='\"value\"'") from None
    return overrides
