"""Group the nucleus images by type (modality and size) and hold whole types out.

The DSB2018 stage-1 images come from several microscopes and stainings. A random validation
split puts images of every type in both halves, so it says little about images of a kind the model
never saw. This script sorts every ``<image_id>/images/*.png`` of a DSB2018-layout folder into

* ``fluorescence``: grey (R = G = B) on a dark background (median < 100), bright nuclei;
* ``brightfield``: grey on a bright background (median >= 100), dark nuclei;
* ``stained``: coloured (tissue stained with e.g. H&E: purple nuclei on pink/white);

and, within each modality, by image size (``HxW``). It prints the types with their counts and
sizes, and with ``--holdout`` writes two folders of symbolic links in the same layout, outside
the shared data folder, so the nucleus sample trains on one and evaluates on the other::

    .venv/bin/python scripts/nucleus_holdout.py                        # the table
    .venv/bin/python scripts/nucleus_holdout.py --holdout stained --out /tmp/nuclei_holdout
    .venv/bin/python -m samples.nucleus.nucleus train --dataset /tmp/nuclei_holdout/train \\
        --subset stage1_train --config cpu --weights none
    .venv/bin/python -m samples.nucleus.nucleus evaluate --dataset /tmp/nuclei_holdout/holdout \\
        --subset stage1_train --config cpu --weights last

``--holdout`` takes a modality (``stained``) or a modality and size (``fluorescence:256x320``);
several comma-separated types may be held out together. ``--json`` writes the per-image types.
Nothing is trained here.
"""
import argparse
import collections
import json
import os
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

__all__ = ["classify_image", "image_types", "main"]

MODALITIES = ("fluorescence", "brightfield", "stained")
#: Mean absolute difference between channels (0-255) above which an image counts as coloured.
COLOUR_THRESHOLD = 4.0
#: Median grey level (0-255) that separates dark (fluorescence) from bright backgrounds.
BRIGHT_BACKGROUND = 100


def classify_image(path):
    """(modality, "HxW", stats) of one image file; stats are the numbers the decision used."""
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.float32)
    height, width = rgb.shape[:2]
    colour = float(np.mean(np.abs(rgb[..., 0] - rgb[..., 1]))
                   + np.mean(np.abs(rgb[..., 1] - rgb[..., 2])))
    grey = rgb.mean(axis=-1)
    median = float(np.median(grey))
    if colour > COLOUR_THRESHOLD:
        modality = "stained"
    elif median >= BRIGHT_BACKGROUND:
        modality = "brightfield"
    else:
        modality = "fluorescence"
    return modality, f"{height}x{width}", {"colour": round(colour, 2), "median": round(median, 1)}


def image_types(folder):
    """{image_id: (modality, size, stats)} for every image folder of a DSB2018-layout folder."""
    from samples.nucleus.nucleus import _image_file, list_image_ids
    from pathlib import Path

    folder = Path(folder)
    return {image_id: classify_image(_image_file(folder / image_id, image_id))
            for image_id in list_image_ids(folder)}


def _matches(kind, modality, size):
    name, _, wanted_size = kind.partition(":")
    return name == modality and (not wanted_size or wanted_size == size)


def _link_tree(ids, source, target):
    os.makedirs(target, exist_ok=False)
    for image_id in ids:
        os.symlink(os.path.abspath(os.path.join(source, image_id)), os.path.join(target, image_id))


def main(argv=None):
    from samples.nucleus.nucleus import TRAIN_FOLDER, resolve_subset_dir

    default = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..",
                           "shared", "data", "nucleus")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=default,
                        help="folder holding stage1_train/ (default ../shared/data/nucleus)")
    parser.add_argument("--holdout", metavar="TYPE[,TYPE]",
                        help="modality, or modality:HxW, to hold out (e.g. stained)")
    parser.add_argument("--out", metavar="DIR", help="with --holdout: where to write "
                        "train/stage1_train and holdout/stage1_train (symbolic links)")
    parser.add_argument("--json", metavar="FILE", help="write {image_id: [modality, size]}")
    args = parser.parse_args(argv)

    folder = resolve_subset_dir(args.dataset, "stage1_train")
    types = image_types(folder)
    table = collections.Counter((m, s) for m, s, _ in types.values())
    print(f"{len(types)} images in {folder}")
    print(f"{'modality':<14}{'size HxW':<12}{'images':>7}")
    for modality in MODALITIES:
        rows = sorted(((s, n) for (m, s), n in table.items() if m == modality),
                      key=lambda r: -r[1])
        for size, count in rows:
            print(f"{modality:<14}{size:<12}{count:>7}")
        total = sum(n for _, n in rows)
        print(f"{modality + ' (all)':<26}{total:>7}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({k: [m, s, st] for k, (m, s, st) in types.items()}, f, indent=0)
    if args.holdout:
        kinds = [k.strip() for k in args.holdout.split(",") if k.strip()]
        unknown = [k for k in kinds if k.partition(":")[0] not in MODALITIES]
        if unknown:
            parser.error(f"--holdout {unknown}: modalities are {MODALITIES}")
        held = sorted(i for i, (m, s, _) in types.items()
                      if any(_matches(k, m, s) for k in kinds))
        kept = sorted(set(types) - set(held))
        print(f"hold out {kinds}: {len(held)} images; train on the other {len(kept)}")
        if not held or not kept:
            parser.error("the hold-out would leave one side empty")
        if args.out:
            _link_tree(kept, folder, os.path.join(args.out, "train", TRAIN_FOLDER))
            _link_tree(held, folder, os.path.join(args.out, "holdout", TRAIN_FOLDER))
            print(f"wrote {args.out}/train/{TRAIN_FOLDER} and {args.out}/holdout/{TRAIN_FOLDER}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
