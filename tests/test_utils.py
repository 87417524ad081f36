"""The classic ``mrcnn.utils`` surface: every classic name is importable and is the real code."""
import importlib
import subprocess
import sys

CLASSIC_UTILS_NAMES = [
    "Dataset", "extract_bboxes", "compute_iou", "compute_overlaps", "compute_overlaps_masks",
    "non_max_suppression", "apply_box_deltas", "box_refinement", "resize_image", "resize_mask",
    "minimize_mask", "expand_mask", "unmold_mask", "generate_anchors", "generate_pyramid_anchors",
    "trim_zeros", "compute_matches", "compute_ap", "compute_ap_range", "compute_recall",
    "batch_slice", "download_trained_weights", "norm_boxes", "denorm_boxes", "resize",
]


def test_every_classic_utils_name_is_exported():
    utils = importlib.import_module("mrcnn.utils")
    missing = [name for name in CLASSIC_UTILS_NAMES if not hasattr(utils, name)]
    assert missing == []
    assert set(CLASSIC_UTILS_NAMES) <= set(utils.__all__)


def test_utils_names_are_the_implementations():
    from mrcnn import utils
    from mrcnn.eval import metrics
    from mrcnn.ops import boxes, masks
    assert utils.compute_overlaps is boxes.compute_overlaps
    assert utils.compute_overlaps_masks is masks.compute_overlaps_masks
    assert utils.compute_ap is metrics.compute_ap


def test_importing_utils_does_not_import_tensorflow():
    code = "import sys, mrcnn.utils; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_batch_slice_stacks_per_image_results():
    import numpy as np
    from mrcnn.utils import batch_slice
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    y = np.ones((2, 3), dtype=np.float32)
    total, doubled = batch_slice([x, y], lambda a, b: [a + b, a * 2], 2)
    np.testing.assert_allclose(total.numpy(), x + 1)
    np.testing.assert_allclose(doubled.numpy(), x * 2)
