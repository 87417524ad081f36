"""Deployment: a self-contained SavedModel with serving signatures (see docs/deploy.md).

``MaskRCNN.export(export_dir)`` calls :func:`export_model`; ``python -m mrcnn.export`` is the
command line.
"""
from mrcnn.export.saved_model import SIGNATURES, export_saved_model

__all__ = ["FORMATS", "SIGNATURES", "export_model", "export_saved_model"]

#: Export formats ``MaskRCNN.export`` writes.
FORMATS = ("tf_saved_model",)


def export_model(model, export_dir, format="tf_saved_model"):
    """Export an inference MaskRCNN; ``format`` must be one of :data:`FORMATS`."""
    if format not in FORMATS:
        raise ValueError(f"export format {format!r} is not supported; use one of {FORMATS} "
                         "(LiteRT and ONNX convert the SavedModel: docs/deploy.md)")
    return export_saved_model(model, export_dir)
