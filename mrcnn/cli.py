"""Command-line helpers shared by the samples: ``--weights`` resolution and dataset checks.

Every sample accepts ``--weights`` (or ``--model``) as a path, ``last``, ``imagenet``, ``coco`` or
``none``; :func:`load_weights_spec` turns that into a loaded model with one rule for every sample:
COCO weights skip the class-dependent layers only when the class count differs from COCO's 81,
everything else loads by name. :func:`default_layers` picks what to train: all layers when there
are no pretrained weights (``none``), else the sample's preset.
"""
import json
import logging
import os

from mrcnn.model.pretrained import resolve_coco_weights

__all__ = ["CLASS_SPECIFIC_LAYERS", "COCO_NUM_CLASSES", "add_weights_argument",
           "resolve_weights_path", "load_weights_spec", "require_dataset_dir",
           "parse_config_overrides", "load_object", "load_config", "starts_from_scratch",
           "default_layers", "weights_exclude", "config_with"]

logger = logging.getLogger(__name__)

#: Layers whose shapes depend on NUM_CLASSES: skipped when starting from COCO weights.
CLASS_SPECIFIC_LAYERS = ["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask"]
#: Classes of the classic ``mask_rcnn_coco.h5`` (80 + background).
COCO_NUM_CLASSES = 81


def starts_from_scratch(spec):
    """True for ``--weights none`` (or no weights): nothing pretrained is loaded."""
    return spec is None or str(spec).lower() in ("none", "")


def default_layers(spec, preset="heads"):
    """What to train: ``"all"`` without pretrained weights (a random frozen backbone learns
    nothing), else ``preset`` (the sample's classic choice)."""
    return "all" if starts_from_scratch(spec) else preset


def weights_exclude(spec, num_classes):
    """Layers to skip when loading ``spec``: the class-specific heads for ``coco`` weights when
    ``num_classes`` differs from COCO's 81 (they would not fit), else none."""
    if str(spec).lower() == "coco" and int(num_classes) != COCO_NUM_CLASSES:
        return list(CLASS_SPECIFIC_LAYERS)
    return None


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

    COCO weights skip the class-dependent layers when the class count differs from COCO's
    (:func:`weights_exclude`), ImageNet weights load by name (only the backbone matches),
    anything else loads by name too.
    """
    path = resolve_weights_path(model, spec)
    if path is None:
        logger.info("Starting from random initialisation: all layers train")
        return None
    exclude = weights_exclude(spec, model.config.NUM_CLASSES)
    if exclude and model.mode == "inference":
        logger.warning("COCO weights have %d classes, the config %d: the class-dependent heads "
                       "stay untrained", COCO_NUM_CLASSES, model.config.NUM_CLASSES)
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


def load_object(spec):
    """The object ``spec`` names: ``"package.module:NAME"`` or ``"path/to/file.py:NAME"``.

    Raises ValueError (malformed spec, missing name) or ImportError/FileNotFoundError naming it.
    """
    import importlib
    import importlib.util

    module_name, sep, name = str(spec).rpartition(":")
    if not sep or not module_name or not name.isidentifier():
        raise ValueError(f"expected MODULE:NAME or FILE.py:NAME, got {spec!r} "
                         "(e.g. samples.shapes.shapes:ShapesCPUInferenceConfig)")
    if module_name.endswith(".py"):
        if not os.path.isfile(module_name):
            raise FileNotFoundError(f"{spec!r}: no such file: {module_name}")
        key = "_mrcnn_cli_" + os.path.splitext(os.path.basename(module_name))[0]
        module_spec = importlib.util.spec_from_file_location(key, module_name)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    if not hasattr(module, name):
        raise ValueError(f"{spec!r}: module {module_name} has no attribute {name!r}")
    return getattr(module, name)


def config_with(base, **overrides):
    """An instance of a subclass of the Config class ``base`` with ``overrides`` (None values
    ignored) as class attributes, so that the derived values (``IMAGE_META_SIZE`` from
    ``NUM_CLASSES``, ``BATCH_SIZE`` ...) follow them and are validated.

    Raises ValueError for attribute names that are not upper case.
    """
    attributes = {k: v for k, v in overrides.items() if v is not None}
    lower = [k for k in attributes if not k.isupper()]
    if lower:
        raise ValueError(f"config attributes are UPPERCASE, got {lower}")
    return type(base.__name__, (base,), attributes)()


def load_config(spec, overrides=None, images_per_batch=1):
    """An inference Config instance from a ``"MODULE:CLASS"`` spec (see :func:`load_object`).

    The class is subclassed with ``overrides`` (``{NAME: value}``, e.g. from
    :func:`parse_config_overrides`) and ``GPU_COUNT = 1``, ``IMAGES_PER_GPU =
    images_per_batch``, so that the derived values (BATCH_SIZE, IMAGE_SHAPE) follow them.
    """
    from mrcnn.config import Config

    cls = load_object(spec)
    if not (isinstance(cls, type) and issubclass(cls, Config)):
        raise ValueError(f"{spec!r} is not a subclass of mrcnn.config.Config: {cls!r}")
    attrs = dict(overrides or {})
    attrs.update(GPU_COUNT=1, IMAGES_PER_GPU=int(images_per_batch))
    return type(cls.__name__, (cls,), attrs)()
