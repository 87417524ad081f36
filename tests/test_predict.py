"""python -m mrcnn.predict on a folder with one corrupt image: results json, shards, AP."""
import io
import json
from pathlib import Path

import numpy as np
import pytest

from mrcnn.cli import load_object
from mrcnn.predict import main, parse_shard, shard

TINY = Path(__file__).resolve().parent / "export" / "tiny_config.py"
CONFIG = f"{TINY}:TinyExportConfig"
CATEGORY_IDS = [10, 20, 30]  # classes 1..3 -> these COCO category ids


def _images():
    rng = np.random.default_rng(11)
    out = {}
    for name, (h, w) in (("000005.png", (50, 40)), ("000007.png", (30, 64)),
                         ("000009.png", (64, 48))):
        image = rng.integers(0, 60, size=(h, w, 3)).astype(np.uint8)
        image[h // 4:h // 2, w // 4:w // 2] = rng.integers(120, 255, size=3)
        out[name] = image
    return out


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    import cv2
    import keras

    from mrcnn.model.maskrcnn import MaskRCNN

    root = tmp_path_factory.mktemp("predict")
    images = _images()
    folder = root / "images"
    folder.mkdir()
    for name, image in images.items():
        cv2.imwrite(str(folder / name), image[:, :, ::-1])
    (folder / "000006.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")  # corrupt
    (folder / "notes.txt").write_text("not an image: ignored")
    keras.utils.set_random_seed(0)
    model = MaskRCNN(mode="inference", config=load_object(CONFIG)(), model_dir=str(root))
    load_object(f"{TINY}:make_confident")(model)
    weights = root / "tiny.h5"
    model.save_weights(str(weights))
    # Ground truth = the model's own confident detections, so box AP must come out at 1.
    annotations = {"images": [], "annotations": [], "categories": [
        {"id": c, "name": f"cat{c}"} for c in CATEGORY_IDS]}
    from pycocotools import mask as mask_utils
    for name, image in images.items():
        image_id = int(name[:6])
        annotations["images"].append({"id": image_id, "file_name": name,
                                      "height": image.shape[0], "width": image.shape[1]})
        r = model.detect([image])[0]
        for k in range(len(r["class_ids"])):
            y1, x1, y2, x2 = (int(v) for v in r["rois"][k])
            rle = mask_utils.encode(np.asfortranarray(r["masks"][:, :, k].astype(np.uint8)))
            rle["counts"] = rle["counts"].decode("ascii")
            annotations["annotations"].append({
                "id": len(annotations["annotations"]) + 1, "image_id": image_id,
                "category_id": CATEGORY_IDS[int(r["class_ids"][k]) - 1], "iscrowd": 0,
                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": float(r["masks"][:, :, k].sum()),
                "segmentation": rle})
    # The corrupt file is part of the data set too (and, unread, is not evaluated).
    annotations["images"].append({"id": 6, "file_name": "000006.png", "height": 8, "width": 8})
    (root / "gt.json").write_text(json.dumps(annotations))
    return root, weights


def _run(root, weights, *extra):
    stream = io.StringIO()
    assert main(["--config", CONFIG, "--weights", str(weights), "--images",
                 str(root / "images"), "--logs", str(root)] + list(extra), stream=stream) == 0
    return stream.getvalue()


@pytest.fixture(scope="module")
def full_run(workspace):
    root, weights = workspace
    log = _run(root, weights, "--output", str(root / "all.json"), "--batch-size", "2",
               "--pictures", str(root / "pictures"), "--annotations", str(root / "gt.json"))
    return log, json.loads((root / "all.json").read_text())


def test_corrupt_image_is_reported_skipped_and_counted(workspace, full_run):
    root, _ = workspace
    log, results = full_run
    corrupt = str(root / "images" / "000006.png")
    assert f"corrupt image skipped: {corrupt}" in log
    assert "3 images" in log and "1 corrupt image(s) skipped" in log
    assert f"  corrupt: {corrupt}" in log
    assert "images/s" in log and "left" in log
    assert {r["image_id"] for r in results} == {5, 7, 9}


def test_results_are_coco_with_rle_and_source_ids(full_run):
    _, results = full_run
    assert results
    for r in results:
        assert set(r) >= {"image_id", "category_id", "bbox", "score", "segmentation"}
        assert r["category_id"] in CATEGORY_IDS
        assert isinstance(r["segmentation"]["counts"], str)
        assert r["file_name"] == f"{r['image_id']:06d}.png"


def test_annotations_give_coco_ap_and_pictures(workspace, full_run):
    root, _ = workspace
    log, _ = full_run
    line = [ln for ln in log.splitlines() if ln.startswith("COCO box AP")][0]
    box_ap, mask_ap = float(line.split()[3]), float(line.split()[6])
    # Boxes are the ground truth itself; some random-weight masks are empty, which COCO scores
    # as misses, so mask AP is high but not 1.
    assert box_ap > 0.99 and 0.5 < mask_ap <= 1.0, line
    assert sorted(p.name for p in (root / "pictures").iterdir()) == [
        "000005.png", "000007.png", "000009.png"]


def test_shards_concatenate_to_the_full_run(workspace, full_run):
    root, weights = workspace
    _, results = full_run
    _run(root, weights, "--output", str(root / "s1.json"), "--shard", "1/2")
    part = json.loads((root / "s1.json").read_text())
    # Sorted files: 000005, 000006 (corrupt), 000007, 000009 -> shard 1/2 holds 000006, 000009.
    assert {r["image_id"] for r in part} == {9}
    # Without --annotations categories are class ids; same detections otherwise.
    full9 = [r for r in results if r["image_id"] == 9]
    assert [r["segmentation"] for r in part] == [r["segmentation"] for r in full9]
    assert [CATEGORY_IDS[r["category_id"] - 1] for r in part] == [r["category_id"] for r in full9]


def test_shard_arguments():
    assert parse_shard("1/3") == (1, 3)
    assert [p for p, _ in shard(list("abcdefg"), 1, 3)] == [1, 4]
    for bad in ("3/3", "x", "1/0", "-1/2"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)
