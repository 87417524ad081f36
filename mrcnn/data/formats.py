"""One entry point for every annotation format the package reads, for command lines.

``load_annotated_dataset(format, path, ...)`` returns a prepared Dataset of one of:

============ ============================================ ==========================================
format        ``path``                                     reader
============ ============================================ ==========================================
``coco``      a COCO instances json (images: ``images``    :class:`mrcnn.data.coco.CocoDataset`
              or the json's folder)
``via``       a VIA json (images: ``images`` or the json's :class:`mrcnn.data.via.ViaDataset`
              folder); classes from ``class_attribute``
``labelme``   a folder of LabelMe json files               :class:`mrcnn.data.labelme.
                                                           LabelMeDataset`
``masks``     ``<image_id>/images/ + masks/`` folders, or, :class:`mrcnn.data.mask_folder.
              with ``labels``, a folder of pictures and    MaskFolderDataset`
              ``labels`` one of instance-id label images
============ ============================================ ==========================================

``class_map`` is the masks layout's class map (one PNG per object) or class table (label images).
:func:`split_dataset` holds out the last fraction of the images (deterministic, file order) for
validation, sharing the class list, as the COCO sample does with one json.

For the samples' command lines, :func:`add_format_arguments` adds ``--format`` and the readers'
options to an argparse parser and :func:`load_format_datasets` turns the parsed arguments into
(train, val) datasets, so every sample reads every format the same way.
"""
import copy
import logging
import os

__all__ = ["FORMATS", "load_annotated_dataset", "split_dataset", "subset_dataset",
           "add_format_arguments", "load_format_datasets"]

logger = logging.getLogger(__name__)

FORMATS = ("coco", "via", "labelme", "masks")


def load_annotated_dataset(fmt, path, images=None, labels=None, class_map=None,
                           default_class="object", class_names=None, class_attribute=None):
    """A prepared Dataset of ``path`` in format ``fmt`` (see the module table).

    Raises:
        ValueError: unknown format (names the allowed ones); the readers' errors otherwise
            (FileNotFoundError, CocoFormatError, LabelMeFormatError, MaskFolderError ...).
    """
    if fmt not in FORMATS:
        raise ValueError(f"annotation format {fmt!r} is not one of {FORMATS}")
    if path is None:
        kind = "json" if fmt in ("coco", "via") else "folder"
        raise ValueError(f"format {fmt!r} needs a path (a {kind})")
    path = os.fspath(path)
    if fmt == "coco":
        from mrcnn.data.coco import CocoDataset
        dataset = CocoDataset()
        dataset.load_coco(path, images or os.path.dirname(os.path.abspath(path)))
    elif fmt == "via":
        from mrcnn.data.via import ViaDataset
        dataset = ViaDataset()
        dataset.load_via(path, image_dir=images, class_attribute=class_attribute,
                         default_class=default_class, class_names=class_names)
    elif fmt == "labelme":
        from mrcnn.data.labelme import LabelMeDataset
        dataset = LabelMeDataset()
        dataset.load_labelme(path, class_names=class_names)
    else:
        from mrcnn.data.mask_folder import MaskFolderDataset
        dataset = MaskFolderDataset()
        if labels is not None:
            dataset.load_label_images(path, labels, class_table=class_map,
                                      default_class=default_class, class_names=class_names)
        else:
            dataset.load_mask_folders(path, default_class=default_class, class_map=class_map,
                                      class_names=class_names)
    dataset.prepare()
    return dataset


def subset_dataset(dataset, image_ids):
    """A prepared dataset of the same class with the same classes and only ``image_ids``
    (internal ids, in this order). Readers keep everything per image in ``image_info``, so the
    copy is shallow: the image dicts are shared, not duplicated."""
    subset = copy.copy(dataset)
    subset.image_info = [dataset.image_info[int(i)] for i in image_ids]
    subset.class_info = list(dataset.class_info)
    subset.prepare()
    return subset


def split_dataset(dataset, val_fraction=0.1):
    """``(train, val)``: the last ``round(n * val_fraction)`` images (at least 1, at most n - 1)
    are validation; with one image both are that image (logged)."""
    if not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    n = dataset.num_images
    if n < 2:
        logger.warning("only %d image: validating on the training image", n)
        return dataset, dataset
    n_val = min(max(int(round(n * float(val_fraction))), 1), n - 1)
    ids = list(range(n))
    return subset_dataset(dataset, ids[:-n_val]), subset_dataset(dataset, ids[-n_val:])


def add_format_arguments(parser, native=None, native_help=None, images_option=True):
    """Add ``--format`` and the options of the non-native readers to an argparse ``parser``.

    ``native`` names a sample's own layout (e.g. ``"dsb"`` for the nucleus folders), which
    becomes the default and the first choice; without it the default is ``coco``. The data path
    itself is the sample's ``--dataset`` (or the coco sample's ``--annotations``).
    ``images_option=False`` for a parser that defines ``--images`` itself (the coco sample).
    """
    choices = ((native,) if native else ()) + FORMATS
    default = native or "coco"
    described = {"coco": "a COCO instances json", "via": "a VIA json",
                 "labelme": "a folder of LabelMe json files",
                 "masks": "<id>/images + <id>/masks folders, or with --labels a folder of "
                          "pictures"}
    text = "; ".join(f"{k}: {described[k]}" for k in FORMATS)
    if native:
        own = native_help or "the sample's own layout"
        text = f"{native}: {own} (default); " + text
    group = parser.add_argument_group("annotation format (mrcnn.data.formats)")
    group.add_argument("--format", choices=choices, default=default,
                       help=text + " (given with --dataset)")
    group.add_argument("--labels", metavar="DIR",
                       help="masks: folder of instance-id label images (same stems, .png)")
    group.add_argument("--class-map", metavar="JSON",
                       help="masks: class map {'<id>/<file>': class} or, with --labels, class "
                            "table {'<stem>': {'<k>': class}}")
    group.add_argument("--default-class", default="object", metavar="NAME",
                       help="via/masks: class of objects without one (default 'object')")
    group.add_argument("--class-attribute", metavar="KEY",
                       help="via: the region_attributes key holding the class name")
    group.add_argument("--val-dataset", metavar="PATH",
                       help="train: validation data of the same format (default: split off "
                            "--val-fraction)")
    if images_option:
        group.add_argument("--images", metavar="DIR",
                           help="coco/via: folder of the json's images (default: its folder)")
    return group


def load_format_datasets(args, command, path=None):
    """Datasets for a sample's ``command`` from arguments of :func:`add_format_arguments`.

    Returns ``(train, val)`` for ``command == "train"`` (``--val-dataset`` read with the
    training set's class list, else the last ``args.val_fraction`` of the images) and
    ``(None, dataset)`` for any other command. ``path`` defaults to ``args.dataset``.
    """
    def load(where, class_names=None):
        return load_annotated_dataset(
            args.format, where, images=getattr(args, "images", None), labels=args.labels,
            class_map=args.class_map, default_class=args.default_class,
            class_names=class_names, class_attribute=args.class_attribute)

    dataset = load(path if path is not None else args.dataset)
    if command != "train":
        return None, dataset
    if args.val_dataset:
        # The validation set must number its classes as the training set does.
        return dataset, load(args.val_dataset, class_names=dataset.class_names[1:])
    train_set, val_set = split_dataset(dataset, getattr(args, "val_fraction", 0.1))
    print(f"Validation: the last {val_set.num_images} of {dataset.num_images} images")
    return train_set, val_set
