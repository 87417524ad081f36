"""``python -m mrcnn.export --config MODULE:CLASS --weights PATH --output DIR``.

Builds the inference model of the config class (a sample's, e.g.
``samples.shapes.shapes:ShapesCPUInferenceConfig``, or ``path/to/my_config.py:MyConfig``), loads
the weights and writes a SavedModel with the serving signatures of docs/deploy.md.
"""
import argparse
import logging
import sys
import time

from mrcnn.cli import add_weights_argument, load_config, load_weights_spec, parse_config_overrides

__all__ = ["main"]

logger = logging.getLogger(__name__)


def build_parser():
    ap = argparse.ArgumentParser(prog="python -m mrcnn.export", description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True, metavar="MODULE:CLASS",
                    help="Config subclass, as package.module:Class or path/file.py:Class")
    add_weights_argument(ap)
    ap.add_argument("--output", required=True, metavar="DIR", help="SavedModel folder to write")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=JSON",
                    help="override a config attribute (repeatable), e.g. "
                         "DETECTION_MIN_CONFIDENCE=0.5")
    ap.add_argument("--logs", default="logs", help="model_dir (for --weights last)")
    return ap


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from mrcnn.model.maskrcnn import MaskRCNN

    try:
        config = load_config(args.config, parse_config_overrides(args.set))
    except (ValueError, ImportError, FileNotFoundError) as exc:
        print(f"error: --config/--set: {exc}", file=sys.stderr)
        return 2
    if args.weights is None:
        print("error: --weights is required (a .h5 path, 'last', or 'none' for random weights)",
              file=sys.stderr)
        return 2
    model = MaskRCNN(mode="inference", config=config, model_dir=args.logs)
    load_weights_spec(model, args.weights)
    started = time.monotonic()
    model.export(args.output)
    print(f"wrote SavedModel {args.output} in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
