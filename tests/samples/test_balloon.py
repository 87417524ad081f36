"""Tests for samples/balloon/balloon.py: VIA 1.x/2.x annotations, masks and the colour splash.

Images and annotations are generated in tmp_path; expected masks are drawn with Pillow's polygon
rasteriser (independent of the skimage one the sample uses), so they agree up to border pixels.
"""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # `samples` is a top-level folder, not an installed package
    sys.path.insert(0, str(REPO_ROOT))

from samples.balloon import balloon  # noqa: E402

# Two images: (file name, (width, height), polygons as (xs, ys) in pixels).
IMAGES = [
    ("a.png", (96, 64), [([10, 50, 30], [8, 12, 50]),
                         ([60, 90, 90, 60], [20, 20, 60, 60])]),
    # The second polygon sticks out of the image on the right and bottom: it must be clipped.
    ("b.png", (80, 72), [([5, 40, 40, 5], [5, 5, 30, 30]),
                         ([50, 120, 70], [40, 50, 100])]),
]


def _expected_mask(xs, ys, width, height):
    canvas = Image.new("L", (width, height), 0)
    ImageDraw.Draw(canvas).polygon(list(zip(xs, ys)), fill=1, outline=1)
    return np.asarray(canvas).astype(bool)


def _iou(a, b):
    return np.logical_and(a, b).sum() / np.logical_or(a, b).sum()


def _region(xs, ys):
    return {"shape_attributes": {"name": "polygon", "all_points_x": xs, "all_points_y": ys},
            "region_attributes": {"name": "balloon"}}


def _write_dataset(root, version):
    """Write images and a VIA json (version "1", "2" or "project") under root/train."""
    folder = root / "train"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    entries = {}
    for name, (width, height), polygons in IMAGES:
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / name)
        regions = [_region(xs, ys) for xs, ys in polygons]
        if version == "1":
            regions = {str(i): r for i, r in enumerate(regions)}
        size = (folder / name).stat().st_size
        entries[f"{name}{size}"] = {"fileref": "", "size": size, "filename": name,
                                    "base64_img_data": "", "file_attributes": {},
                                    "regions": regions}
    # An image without regions is skipped (classic).
    entries["unlabelled.png0"] = {"filename": "unlabelled.png", "size": 0,
                                  "regions": {} if version == "1" else [],
                                  "file_attributes": {}}
    data = entries
    if version == "project":
        data = {"_via_settings": {"ui": {}}, "_via_img_metadata": entries,
                "_via_attributes": {"region": {}, "file": {}}}
    (folder / "via_region_data.json").write_text(json.dumps(data))
    return folder


@pytest.mark.parametrize("version", ["1", "2", "project"])
def test_load_via_masks_match_polygons(tmp_path, version):
    _write_dataset(tmp_path, version)
    ds = balloon.BalloonDataset()
    ds.load_balloon(tmp_path, "train")
    ds.prepare()
    assert ds.class_names == ["BG", "balloon"]
    assert [info["id"] for info in ds.image_info] == ["a.png", "b.png"]
    for image_id, (name, (width, height), polygons) in zip(ds.image_ids, IMAGES):
        info = ds.image_info[image_id]
        assert (info["width"], info["height"]) == (width, height)  # read from the file
        assert ds.image_reference(image_id) == str(tmp_path / "train" / name)
        assert ds.load_image(image_id).shape == (height, width, 3)
        masks, class_ids = ds.load_mask(image_id)
        assert masks.dtype == np.bool_ and masks.shape == (height, width, len(polygons))
        np.testing.assert_array_equal(class_ids, np.ones(len(polygons), dtype=np.int32))
        assert class_ids.dtype == np.int32
        for k, (xs, ys) in enumerate(polygons):
            assert _iou(masks[..., k], _expected_mask(xs, ys, width, height)) > 0.95


def test_size_from_json_and_other_shapes(tmp_path):
    folder = tmp_path / "val"
    folder.mkdir()
    Image.new("RGB", (40, 30)).save(folder / "c.png")
    shapes = [{"name": "rect", "x": 2, "y": 3, "width": 10, "height": 5},
              {"name": "circle", "cx": 25, "cy": 15, "r": 4},
              {"name": "ellipse", "cx": 30, "cy": 22, "rx": 6, "ry": 3}]
    entry = {"filename": "c.png", "width": 40, "height": 30,
             "regions": [{"shape_attributes": s} for s in shapes]}
    (folder / "via_region_data.json").write_text(json.dumps({"c": entry}))
    ds = balloon.BalloonDataset()
    ds.load_balloon(tmp_path, "val")
    ds.prepare()
    masks, _ = ds.load_mask(0)
    assert masks.shape == (30, 40, 3)
    ys, xs = np.nonzero(masks[..., 0])
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (3, 7, 2, 11)
    assert masks[..., 0].sum() == 50
    assert masks[15, 25, 1] and not masks[15, 30, 1]
    assert masks[22, 30, 2] and masks[22, 35, 2] and not masks[26, 30, 2]


def test_malformed_json_errors_name_the_file(tmp_path):
    folder = tmp_path / "train"
    folder.mkdir()
    json_path = folder / "via_region_data.json"
    json_path.write_text("{not json")
    with pytest.raises(ValueError, match="via_region_data.json.*not valid JSON"):
        balloon.BalloonDataset().load_balloon(tmp_path, "train")
    json_path.write_text(json.dumps({"x": {"filename": "a.png"}}))
    with pytest.raises(ValueError, match=r"via_region_data.json: entry 'x'.*'regions'"):
        balloon.BalloonDataset().load_balloon(tmp_path, "train")
    bad_region = {"shape_attributes": {"name": "polygon", "all_points_x": [1, 2, 3]}}
    json_path.write_text(json.dumps({"x": {"filename": "a.png", "regions": [bad_region]}}))
    with pytest.raises(ValueError, match=r"via_region_data.json.*region 0.*all_points_y"):
        balloon.BalloonDataset().load_balloon(tmp_path, "train")
    json_path.write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match="via_region_data.json"):
        balloon.BalloonDataset().load_balloon(tmp_path, "train")
    point = {"shape_attributes": {"name": "point", "cx": 1, "cy": 2}}
    json_path.write_text(json.dumps({"x": {"filename": "a.png", "regions": [point]}}))
    with pytest.raises(ValueError, match="unsupported region shape 'point'"):
        balloon.BalloonDataset().load_balloon(tmp_path, "train")


def test_missing_folder_json_and_image(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        balloon.BalloonDataset().load_balloon(tmp_path / "nowhere", "train")
    (tmp_path / "train").mkdir()
    with pytest.raises(FileNotFoundError, match="via_region_data.json"):
        balloon.BalloonDataset().load_balloon(tmp_path, "train")
    entry = {"filename": "gone.jpg", "regions": [_region([1, 5, 5], [1, 1, 5])]}
    (tmp_path / "train" / "via_region_data.json").write_text(json.dumps({"g": entry}))
    with pytest.raises(FileNotFoundError, match="gone.jpg"):
        balloon.BalloonDataset().load_balloon(tmp_path, "train")


def test_config():
    config = balloon.BalloonConfig()
    assert (config.NAME, config.IMAGES_PER_GPU, config.NUM_CLASSES) == ("balloon", 2, 2)
    assert (config.STEPS_PER_EPOCH, config.DETECTION_MIN_CONFIDENCE) == (100, 0.9)
    assert balloon.BalloonInferenceConfig().BATCH_SIZE == 1


# ------------------------------------------------------------------------------ colour splash
def _colour_image(height=20, width=30, seed=1):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_color_splash_keeps_colour_inside_and_gray_outside():
    image = _colour_image()
    masks = np.zeros((20, 30, 2), dtype=bool)
    masks[2:8, 3:10, 0] = True
    masks[5:15, 8:20, 1] = True
    splash = balloon.color_splash(image, masks)
    assert splash.dtype == np.uint8 and splash.shape == image.shape
    inside = masks.any(axis=-1)
    np.testing.assert_array_equal(splash[inside], image[inside])
    outside = splash[~inside].astype(int)
    assert (outside[:, 0] == outside[:, 1]).all() and (outside[:, 1] == outside[:, 2]).all()
    luminance = image[~inside].astype(float) @ np.array([0.2125, 0.7154, 0.0721])
    np.testing.assert_allclose(outside[:, 0], luminance, atol=0.5)


def test_color_splash_without_instances_is_all_gray():
    image = _colour_image()
    splash = balloon.color_splash(image, np.zeros((20, 30, 0), dtype=bool))
    assert (splash[..., 0] == splash[..., 1]).all() and (splash[..., 0] == splash[..., 2]).all()
    assert not np.array_equal(splash, image)
    with pytest.raises(ValueError, match="mask"):
        balloon.color_splash(image, np.zeros((10, 30, 1), dtype=bool))


class HalfMaskModel:
    """Fake inference model: one instance covering the left half of every image."""

    def __init__(self):
        self.calls = 0

    def detect(self, images, verbose=0):
        height, width = images[0].shape[:2]
        masks = np.zeros((height, width, 1), dtype=bool)
        masks[:, :width // 2, 0] = True
        self.calls += 1
        return [{"rois": np.array([[0, 0, height, width // 2]]), "class_ids": np.array([1]),
                 "scores": np.array([0.99]), "masks": masks}]


def test_splash_image_file(tmp_path):
    image = _colour_image(24, 32)
    path = tmp_path / "in.png"
    Image.fromarray(image).save(path)
    out = balloon.detect_and_color_splash(HalfMaskModel(), image_path=str(path),
                                          output_dir=str(tmp_path / "out"))
    assert Path(out).name.startswith("splash_") and out.endswith(".png")
    written = np.asarray(Image.open(out))
    expected_mask = np.zeros((24, 32, 1), dtype=bool)
    expected_mask[:, :16] = True
    np.testing.assert_array_equal(written, balloon.color_splash(image, expected_mask))


def test_splash_video_three_frames(tmp_path):
    import cv2

    height, width = 48, 64
    source = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(source, cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (width, height))
    assert writer.isOpened()
    red_bgr = np.zeros((height, width, 3), dtype=np.uint8)
    red_bgr[..., 2] = 220
    for _ in range(3):
        writer.write(red_bgr)
    writer.release()

    model = HalfMaskModel()
    out = balloon.detect_and_color_splash(model, video_path=source, output_dir=str(tmp_path))
    assert out.endswith(".avi") and model.calls == 3
    capture = cv2.VideoCapture(out)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame.astype(int))
    capture.release()
    assert len(frames) == 3
    for frame in frames:
        assert frame.shape == (height, width, 3)
        left, right = frame[:, 4:width // 2 - 4], frame[:, width // 2 + 4:]
        # Left half keeps its red (BGR), right half is gray (lossy MJPG: tolerances).
        assert left[..., 2].mean() > 180 and left[..., 1].mean() < 40
        assert np.abs(right[..., 2] - right[..., 1]).max() < 25
        assert abs(right[..., 2].mean() - 0.2125 * 220) < 15


def test_splash_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="exactly one"):
        balloon.detect_and_color_splash(HalfMaskModel())
    with pytest.raises(ValueError, match="exactly one"):
        balloon.detect_and_color_splash(HalfMaskModel(), image_path="a", video_path="b")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        balloon.detect_and_color_splash(HalfMaskModel(), image_path=str(tmp_path / "missing.png"))


def test_command_line_parser():
    args = balloon.build_parser().parse_args(
        ["splash", "--weights", "last", "--image", "x.jpg", "--logs", "L"])
    assert (args.command, args.weights, args.image, args.video, args.logs) == (
        "splash", "last", "x.jpg", None, "L")
    with pytest.raises(SystemExit):
        balloon.build_parser().parse_args(["detect", "--weights", "last"])


@pytest.mark.slow
def test_train_one_step_on_via_json_then_evaluate(tmp_path):
    """VIA json -> BalloonDataset -> one training step -> detection -> COCO evaluation."""
    import shutil

    from mrcnn.eval.coco_eval import evaluate_coco
    from mrcnn.model.maskrcnn import MaskRCNN

    folder = _write_dataset(tmp_path, "2")
    shutil.copytree(folder, tmp_path / "val")

    class TinyBalloonConfig(balloon.BalloonConfig):
        IMAGES_PER_GPU = 1
        BACKBONE = "resnet50"
        IMAGE_MIN_DIM = 64
        IMAGE_MAX_DIM = 128
        RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
        PRE_NMS_LIMIT = 200
        POST_NMS_ROIS_TRAINING = 32
        POST_NMS_ROIS_INFERENCE = 32
        RPN_TRAIN_ANCHORS_PER_IMAGE = 32
        TRAIN_ROIS_PER_IMAGE = 8
        MAX_GT_INSTANCES = 4
        DETECTION_MAX_INSTANCES = 4
        DETECTION_MIN_CONFIDENCE = 0.0
        STEPS_PER_EPOCH = 1
        VALIDATION_STEPS = 1

    config = TinyBalloonConfig()
    model = MaskRCNN(mode="training", config=config, model_dir=str(tmp_path / "logs"))
    history = balloon.train_balloon(model, str(tmp_path), epochs=1, layers="all")
    assert np.isfinite(history.history["loss"]).all()
    assert np.isfinite(history.history["val_loss"]).all()

    inference = MaskRCNN(mode="inference", config=config, model_dir=str(tmp_path / "logs"))
    inference.load_weights(inference.find_last(), by_name=True)
    dataset = balloon.BalloonDataset()
    dataset.load_balloon(str(tmp_path), "val")
    dataset.prepare()
    images = [dataset.load_image(i) for i in dataset.image_ids]
    predictions = inference.detect(images)
    for image, prediction in zip(images, predictions):
        assert prediction["masks"].shape[:2] == image.shape[:2]
    metrics = evaluate_coco(dataset, predictions)
    for iou_type in ("bbox", "segm"):
        assert set(metrics[iou_type]) >= {"AP", "AP50", "AP75", "APs", "APm", "APl"}
        assert 0.0 <= metrics[iou_type]["AP"] <= 1.0
