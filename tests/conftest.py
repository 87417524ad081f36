"""Shared pytest set-up: quiet TensorFlow, two threads, GPU marker, the nucleus data path."""
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def nucleus_data_dir():
    """Folder of the DSB2018-layout nuclei: $MRCNN_NUCLEUS_DIR, else ../shared/data/nucleus."""
    env = os.environ.get("MRCNN_NUCLEUS_DIR")
    if env:
        return Path(env)
    return REPO_ROOT.parent / "shared" / "data" / "nucleus"


def _gpu_available():
    try:
        import tensorflow as tf
    except ImportError:
        return False
    return bool(tf.config.list_physical_devices("GPU"))


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if gpu_items and not _gpu_available():
        skip = pytest.mark.skip(reason="needs a GPU; TensorFlow sees none")
        for item in gpu_items:
            item.add_marker(skip)
