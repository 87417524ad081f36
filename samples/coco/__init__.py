"""The COCO sample: train and evaluate Mask R-CNN on MS COCO or any COCO-format json.

Run ``python -m samples.coco.coco --help``; see :mod:`samples.coco.coco`.
"""
__all__ = []
