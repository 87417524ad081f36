"""Balloon sample: Mask R-CNN on VIA polygon annotations and colour splash (see :mod:`.balloon`)."""
