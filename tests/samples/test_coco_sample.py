"""samples/coco/coco.py: config, classic layout, schedule, evaluation, command-line errors, and
one end-to-end train + evaluate run on a generated COCO json (slow)."""
import importlib.util
import json
import os
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from samples.coco import coco as coco_sample

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")


def _dataset_helpers():
    # The generated COCO json lives with the dataset tests; load that module by path
    # (tests are not a package under --import-mode=importlib).
    path = Path(__file__).resolve().parents[1] / "data" / "test_coco_dataset.py"
    spec = importlib.util.spec_from_file_location("_coco_dataset_helpers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


helpers = _dataset_helpers()


@pytest.fixture()
def coco_files(tmp_path):
    return helpers.make_coco_files(tmp_path)


def _classic_layout(tmp_path, coco_files, subset="val", year="2017"):
    """Move the generated files into <root>/annotations/instances_<subset><year>.json and
    <root>/<subset><year>/."""
    path, image_dir, _ = coco_files
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    path.rename(root / "annotations" / f"instances_{subset}{year}.json")
    image_dir.rename(root / f"{subset}{year}")
    return root


class FakeModel:
    """Stands in for an inference MaskRCNN: returns the given detections in call order."""

    def __init__(self, predictions, batch_size=2):
        self.config = coco_sample.make_config(coco_sample.CocoInferenceConfig,
                                              IMAGES_PER_GPU=batch_size)
        self._pending = list(predictions)
        self.calls = []

    def detect(self, images, verbose=0):
        self.calls.append(len(images))
        out, self._pending = self._pending[:len(images)], self._pending[len(images):]
        for image, prediction in zip(images, out):
            assert prediction["masks"].shape[:2] == image.shape[:2]
        return out


def test_configs_follow_the_classic_sample():
    config = coco_sample.CocoConfig()
    assert (config.NAME, config.IMAGES_PER_GPU, config.NUM_CLASSES) == ("coco", 2, 81)
    inference = coco_sample.CocoInferenceConfig()
    assert (inference.BATCH_SIZE, inference.DETECTION_MIN_CONFIDENCE) == (1, 0)
    custom = coco_sample.make_config(NUM_CLASSES=3, LEARNING_RATE=None)
    assert custom.NUM_CLASSES == 3 and custom.IMAGE_META_SIZE == 12 + 3
    assert custom.LEARNING_RATE == 0.001  # None keeps the default
    with pytest.raises(ValueError, match="NUM_CLASSES must be a positive integer"):
        coco_sample.make_config(NUM_CLASSES=0)


def test_coco_paths_classic_layout():
    ann, images = coco_sample.coco_paths("/d", "val", "2017")
    assert ann == os.path.join("/d", "annotations", "instances_val2017.json")
    assert images == os.path.join("/d", "val2017")
    ann, images = coco_sample.coco_paths("/d", "minival", "2014")
    assert ann.endswith("instances_minival2014.json") and images.endswith("val2014")


def test_classic_load_coco_signature_and_json_form(tmp_path, coco_files):
    root = _classic_layout(tmp_path, coco_files)
    dataset = coco_sample.CocoDataset()
    coco = dataset.load_coco(str(root), "val", year="2017", return_coco=True)
    dataset.prepare()
    assert dataset.num_images == 4 and dataset.num_classes == 3
    assert sorted(coco.getCatIds()) == [3, 7]
    # json form: image folder defaults to the json's own folder
    json_path = root / "annotations" / "instances_val2017.json"
    dataset = coco_sample.CocoDataset()
    dataset.load_coco(json_path, root / "val2017")
    dataset.prepare()
    assert dataset.load_image(0).shape == (64, 64, 3)
    with pytest.raises(FileNotFoundError, match=r"instances_train2017\.json.*layout"):
        coco_sample.CocoDataset().load_coco(str(root), "train", year="2017")
    with pytest.raises(FileNotFoundError, match="COCO dataset folder not found"):
        coco_sample.CocoDataset().load_coco(str(tmp_path / "missing"), "val")


@pytest.mark.parametrize("epochs, layers, expected", [
    (None, None, [("heads", 40, 0.01), ("4+", 120, 0.01), ("all", 160, 0.001)]),
    ("1,2,3", None, [("heads", 1, 0.01), ("4+", 2, 0.01), ("all", 3, 0.001)]),
    ("2", "all", [("all", 2, 0.01)]),
])
def test_build_schedule(epochs, layers, expected):
    stages = coco_sample.build_schedule(0.01, epochs, layers)
    assert [(s.layers, s.epochs) for s in stages] == [e[:2] for e in expected]
    assert [s.learning_rate for s in stages] == pytest.approx([e[2] for e in expected])


@pytest.mark.parametrize("epochs, layers, message", [
    ("5", None, "three increasing"), ("3,2,1", None, "three increasing"),
    ("1,2", "heads", "one --epochs value"), (None, "heads", "one --epochs value"),
    ("x", None, "expected integers"), ("0", "all", "positive"),
])
def test_build_schedule_errors(epochs, layers, message):
    with pytest.raises(ValueError, match=message):
        coco_sample.build_schedule(0.01, epochs, layers)


def test_horizontal_flip_flips_image_and_masks_together():
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    masks = np.zeros([2, 3, 1], bool)
    masks[0, 0, 0] = True
    flipped = [coco_sample.horizontal_flip(image, masks, rng=np.random.default_rng(s))
               for s in range(20)]
    changed = [f for f in flipped if not np.array_equal(f[0], image)]
    assert 0 < len(changed) < 20
    np.testing.assert_array_equal(changed[0][0], image[:, ::-1])
    assert changed[0][1][0, 2, 0] and changed[0][1].sum() == 1


@pytest.mark.parametrize("with_json_gt", [True, False])
def test_evaluate_ground_truth_gives_ap_one(tmp_path, coco_files, capsys, with_json_gt):
    path, image_dir, _ = coco_files
    dataset = coco_sample.CocoDataset()
    coco = dataset.load_coco(path, image_dir, return_coco=True)
    dataset.prepare()
    model = FakeModel(helpers.gt_predictions(dataset, dataset.image_ids[:3]))
    output = tmp_path / "results.json"
    metrics = coco_sample.evaluate(model, dataset, coco=coco if with_json_gt else None, limit=3,
                                   output=output)
    assert model.calls == [2, 1]
    for iou_type in ("bbox", "segm"):
        assert metrics[iou_type]["AP"] == pytest.approx(1.0)
        assert metrics[iou_type].coco_eval.params.imgIds == [10, 20, 30]
    printed = capsys.readouterr().out
    assert "COCO bbox AP over 3 images" in printed and "COCO segm AP" in printed
    assert "s/image over 3 images" in printed
    assert ("json's annotations" if with_json_gt else "dataset.load_mask") in printed
    results = json.loads(output.read_text())
    assert {r["image_id"] for r in results} == {10, 20, 30}
    assert {r["category_id"] for r in results} == {3, 7}


def test_evaluate_missed_objects_and_classic_evaluate_coco(coco_files):
    path, image_dir, _ = coco_files
    dataset = coco_sample.CocoDataset()
    coco = dataset.load_coco(path, image_dir, return_coco=True)
    dataset.prepare()
    predictions = helpers.gt_predictions(dataset, dataset.image_ids)
    empty = {"rois": np.zeros([0, 4], np.int32), "class_ids": np.zeros([0], np.int32),
             "scores": np.zeros([0], np.float32), "masks": np.zeros([64, 64, 0], bool)}
    predictions[3] = empty  # image 40: its square is missed
    metrics = coco_sample.evaluate_coco(FakeModel(predictions), dataset, coco, "segm")
    assert 0.3 < metrics["AP"] < 1.0
    nothing = coco_sample.evaluate(FakeModel([empty] * 4), dataset, coco=coco, verbose=0)
    assert nothing["bbox"]["AP"] == 0.0


def test_load_datasets_splits_one_json_and_follows_classes(tmp_path, coco_files):
    path, image_dir, _ = coco_files
    parser = coco_sample.build_parser()
    args = parser.parse_args(["train", "--dataset", str(path), "--images", str(image_dir),
                              "--val-fraction", "0.25", "--model", "none"])
    train, val, _ = coco_sample.load_datasets(args, "train")
    assert [i["id"] for i in train.image_info] == [10, 20, 30]
    assert [i["id"] for i in val.image_info] == [40]
    assert train.num_classes == val.num_classes == 3
    args = parser.parse_args(["evaluate", "--annotations", str(path), "--images",
                              str(image_dir), "--classes", "circle", "--model", "none"])
    _, dataset, coco = coco_sample.load_datasets(args, "evaluate")
    assert dataset.class_names == ["BG", "circle"] and dataset.num_images == 3
    assert coco is not None


def _run_main(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        coco_sample.main(argv)
    return exit_info.value.code, capsys.readouterr().err


def test_cli_errors_name_the_folder_or_file(tmp_path, coco_files, capsys):
    path, image_dir, _ = coco_files
    code, err = _run_main(["evaluate", "--dataset", str(tmp_path / "nowhere"), "--model",
                           "none"], capsys)
    assert code == 2 and "COCO dataset folder not found" in err and "nowhere" in err
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [\n  {"id": 1,}\n]}')
    code, err = _run_main(["train", "--annotations", str(broken), "--images", str(image_dir),
                           "--model", "none"], capsys)
    assert code == 2 and "broken.json" in err and "line 2, column 12" in err
    code, err = _run_main(["train", "--dataset", str(path), "--model", "none", "--classes",
                           "triangle"], capsys)
    assert code == 2 and "'triangle' is neither a category id nor a name" in err
    code, err = _run_main(["evaluate", "--dataset", str(path)], capsys)
    assert code == 2 and "--model is required" in err


def test_download_offline_fails_with_a_clear_message(tmp_path, capsys, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(coco_sample.urllib.request, "urlopen", offline)
    with pytest.raises(coco_sample.CocoDownloadError, match="needs internet access"):
        coco_sample.download_coco(str(tmp_path / "coco"), "val", "2017")
    assert "http://images.cocodataset.org/zips/val2017.zip" in capsys.readouterr().out
    assert not list((tmp_path / "coco").glob("*.part"))
    code, err = _run_main(["evaluate", "--dataset", str(tmp_path / "coco"), "--download",
                           "--model", "none"], capsys)
    assert code == 2 and "needs internet access" in err


def test_download_skips_files_already_present(tmp_path, coco_files, monkeypatch):
    root = _classic_layout(tmp_path, coco_files)

    def fail(*args, **kwargs):
        raise AssertionError("nothing should be downloaded")

    monkeypatch.setattr(coco_sample.urllib.request, "urlopen", fail)
    coco_sample.download_coco(str(root), "val", "2017")


@pytest.mark.slow
def test_train_one_step_then_evaluate(tmp_path, coco_files):
    path, image_dir, _ = coco_files
    tiny = dict(BACKBONE="resnet50", IMAGE_MIN_DIM=64, IMAGE_MAX_DIM=64, IMAGES_PER_GPU=1,
                STEPS_PER_EPOCH=1, VALIDATION_STEPS=1, POST_NMS_ROIS_TRAINING=50,
                TRAIN_ROIS_PER_IMAGE=16, RPN_TRAIN_ANCHORS_PER_IMAGE=32,
                RPN_ANCHOR_SCALES=(8, 16, 32, 64, 128), MAX_GT_INSTANCES=10,
                DETECTION_MAX_INSTANCES=10, POST_NMS_ROIS_INFERENCE=50)
    dataset = coco_sample.CocoDataset()
    coco = dataset.load_coco(path, image_dir, return_coco=True)
    dataset.prepare()
    config = coco_sample.make_config(coco_sample.CocoConfig, NUM_CLASSES=dataset.num_classes,
                                     **tiny)
    schedule = [coco_sample.TrainingStage("all", 1, 0.001)]
    model = coco_sample.train(config, dataset, dataset, model_dir=tmp_path / "logs",
                              weights="none", schedule=schedule)
    checkpoint = model.find_last()
    assert checkpoint.endswith("mask_rcnn_coco_0001.h5")

    from mrcnn.model.maskrcnn import MaskRCNN
    inference_config = coco_sample.make_config(coco_sample.CocoInferenceConfig,
                                               NUM_CLASSES=dataset.num_classes, **tiny)
    inference = MaskRCNN(mode="inference", config=inference_config, model_dir=tmp_path / "logs")
    coco_sample.load_model_weights(inference, checkpoint)
    metrics = coco_sample.evaluate(inference, dataset, coco=coco, limit=2,
                                   output=tmp_path / "results.json", verbose=0)
    for iou_type in ("bbox", "segm"):
        assert {"AP", "AP50", "AP75", "APs", "APm", "APl"} <= set(metrics[iou_type])
        assert all(-1.0 <= v <= 1.0 for v in metrics[iou_type].values())
    assert isinstance(json.loads((tmp_path / "results.json").read_text()), list)
