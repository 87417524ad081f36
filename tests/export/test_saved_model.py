"""The exported SavedModel, loaded in a fresh process without mrcnn, against detect()."""
import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from mrcnn.export import SIGNATURES, export_model
from mrcnn.export.molding import check_resize_mode
from mrcnn.ops.masks import paste_masks

# Runs with `python -I` (no cwd, no PYTHONPATH, no user site) from a folder outside the repo; the
# meta-path blocker also stops the editable install of mrcnn in the virtualenv.
SERVE_SCRIPT = r"""
import importlib.abc, json, sys
class BlockMrcnn(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "mrcnn" or name.startswith("mrcnn."):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, BlockMrcnn())
try:
    import mrcnn
    blocked = False
except ImportError:
    blocked = True
import numpy as np, tensorflow as tf
export_dir, inputs, outputs = sys.argv[1:4]
model = tf.saved_model.load(export_dir)
data = np.load(inputs)
out = {}
for i in range(int(data["count"])):
    image = data[f"image{i}"]
    for name, kwargs in (
            ("serving_default", {"images": tf.constant(image[None])}),
            ("mask_probabilities", {"images": tf.constant(image[None])}),
            ("image_bytes", {"image_bytes": tf.constant([data[f"png{i}"].tobytes()])})):
        for key, value in model.signatures[name](**kwargs).items():
            out[f"{name}/{i}/{key}"] = value.numpy()
np.savez(outputs, **out)
print(json.dumps({"blocked": blocked, "mrcnn_loaded": any(m.split(".")[0] == "mrcnn"
                  for m in sys.modules), "signatures": sorted(model.signatures)}))
"""


@pytest.fixture(scope="module")
def served(exported, images, tmp_path_factory):
    _, export_dir = exported
    work = tmp_path_factory.mktemp("outside_repo")
    arrays = {"count": len(images)}
    for i, image in enumerate(images):
        arrays[f"image{i}"] = image
        arrays[f"png{i}"] = np.frombuffer(tf.io.encode_png(image).numpy(), np.uint8)
    np.savez(work / "inputs.npz", **arrays)
    proc = subprocess.run([sys.executable, "-I", "-c", SERVE_SCRIPT, str(export_dir),
                           str(work / "inputs.npz"), str(work / "outputs.npz")],
                          cwd=work, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    return report, dict(np.load(work / "outputs.npz"))


def test_savedmodel_loads_without_mrcnn(served):
    report, _ = served
    assert report["blocked"] and not report["mrcnn_loaded"]
    assert set(report["signatures"]) == set(SIGNATURES)


def _cut(outputs, name, i):
    n = int(outputs[f"{name}/{i}/num_detections"][0])
    get = lambda key: outputs[f"{name}/{i}/{key}"][0]  # noqa: E731
    return n, get


@pytest.mark.parametrize("name", ["serving_default", "image_bytes"])
def test_full_mask_signatures_match_detect(served, images, detect_results, same_detections,
                                           name):
    _, outputs = served
    for i, (image, result) in enumerate(zip(images, detect_results)):
        n, get = _cut(outputs, name, i)
        assert get("detection_masks").dtype == np.uint8
        assert get("detection_masks").shape[1:] == image.shape[:2]
        same_detections(result, get("detection_boxes")[:n], get("detection_classes")[:n],
                        get("detection_scores")[:n],
                        get("detection_masks")[:n].transpose(1, 2, 0).astype(bool))


def test_mask_probabilities_paste_to_detect_masks(served, images, detect_results,
                                                   same_detections, tiny_model):
    _, outputs = served
    mask_shape = tuple(tiny_model.config.MASK_SHAPE)
    for i, (image, result) in enumerate(zip(images, detect_results)):
        n, get = _cut(outputs, "mask_probabilities", i)
        probs = get("detection_mask_probabilities")
        assert probs.dtype == np.float32 and probs.shape[1:] == mask_shape
        boxes = get("detection_boxes")[:n]
        masks = paste_masks(probs[:n], boxes, image.shape)
        same_detections(result, boxes, get("detection_classes")[:n],
                        get("detection_scores")[:n], masks)


def test_outputs_are_padded_to_max_instances(served, tiny_model):
    _, outputs = served
    max_n = tiny_model.config.DETECTION_MAX_INSTANCES
    for name in SIGNATURES:
        n, get = _cut(outputs, name, 1)
        assert outputs[f"{name}/1/num_detections"].dtype == np.int32
        assert get("detection_boxes").shape == (max_n, 4)
        assert get("detection_boxes").dtype == np.float32
        assert get("detection_classes").dtype == np.int32
        assert get("detection_scores").dtype == np.float32
        assert not get("detection_classes")[n:].any() and not get("detection_scores")[n:].any()


def test_batch_of_two_matches_single_images(loaded, images):
    """B > 1: the same image twice gives the single-image result twice (oneDNN's float32 sums
    depend on the batch size, so masks are compared by IoU)."""
    image = images[0]
    one = loaded.signatures["serving_default"](images=tf.constant(image[None]))
    two = loaded.signatures["serving_default"](images=tf.constant(np.stack([image, image])))
    n = int(one["num_detections"][0])
    assert two["num_detections"].numpy().tolist() == [n, n]
    for b in range(2):
        np.testing.assert_array_equal(two["detection_classes"][b], one["detection_classes"][0])
        a = two["detection_masks"][b, :n].numpy().astype(bool)
        e = one["detection_masks"][0, :n].numpy().astype(bool)
        union = (a | e).sum(axis=(1, 2))
        iou = np.where(union > 0, (a & e).sum(axis=(1, 2)) / np.maximum(union, 1), 1.0)
        assert iou.min() >= 0.95, iou


def test_export_refuses_crop_mode_and_unknown_format(tiny_model, tmp_path):
    with pytest.raises(ValueError, match="IMAGE_RESIZE_MODE='crop'"):
        check_resize_mode("crop")
    with pytest.raises(ValueError, match="export format 'onnx'"):
        export_model(tiny_model, tmp_path / "x", format="onnx")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "file").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        tiny_model.export(tmp_path / "full")
