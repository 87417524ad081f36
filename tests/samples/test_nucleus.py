"""Tests for samples/nucleus/nucleus.py on real DSB2018 nuclei (3 images of the shared set).

The data folder is ``$MRCNN_NUCLEUS_DIR`` or ``<repo>/../shared/data/nucleus``; the data tests are
skipped (with the path in the message) only when it is absent.
"""
import csv
import os
import random
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # `samples` is a top-level folder, not an installed package
    sys.path.insert(0, str(REPO_ROOT))

from mrcnn.data.augment import make_augmenter  # noqa: E402
from mrcnn.data.dataset import ImageLoadError  # noqa: E402
from mrcnn.data.rle import rle_decode  # noqa: E402
from mrcnn.ops.masks import extract_bboxes  # noqa: E402
from samples.nucleus import nucleus  # noqa: E402


def _data_root():
    env = os.environ.get("MRCNN_NUCLEUS_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data" / "nucleus"


@pytest.fixture(scope="module")
def root():
    path = _data_root()
    if not (path / "stage1_train").is_dir():
        pytest.skip(f"nucleus data not found at {path} (set MRCNN_NUCLEUS_DIR)")
    return path


@pytest.fixture(scope="module")
def three_ids(root):
    return sorted(p.name for p in (root / "stage1_train").iterdir() if p.is_dir())[:3]


@pytest.fixture(scope="module")
def three(root, three_ids):
    ds = nucleus.NucleusDataset()
    ds.load_nucleus(root, "stage1_train", image_ids=three_ids)
    ds.prepare()
    return ds


def _copy_image_folder(root, image_id, dest_root):
    dest = dest_root / "stage1_train" / image_id
    shutil.copytree(root / "stage1_train" / image_id, dest)
    return dest


# --------------------------------------------------------------------------------- dataset
def test_images_and_masks_of_three_real_images(root, three_ids, three):
    assert three.num_images == 3
    assert three.class_names == ["BG", "nucleus"]
    for image_id in three.image_ids:
        source_id = three.image_info[image_id]["id"]
        assert source_id == three_ids[image_id]
        assert three.image_reference(image_id) == source_id
        image = three.load_image(image_id)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        masks, class_ids = three.load_mask(image_id)
        mask_dir = root / "stage1_train" / source_id / "masks"
        expected = [np.asarray(Image.open(p).convert("L")) > 0
                    for p in sorted(mask_dir.glob("*.png"))]
        expected = [m for m in expected if m.any()]
        assert masks.dtype == np.bool_
        assert masks.shape == image.shape[:2] + (len(expected),)
        assert len(expected) > 0
        np.testing.assert_array_equal(masks, np.stack(expected, axis=-1))
        assert class_ids.dtype == np.int32
        np.testing.assert_array_equal(class_ids, np.ones(len(expected)))


def test_split_is_deterministic_disjoint_and_complete(root):
    all_ids = sorted(p.name for p in (root / "stage1_train").iterdir() if p.is_dir())
    # the public "train or val split of a folder" loader of the CLI and the scripts
    train = nucleus.load_dataset(root, "train")
    val = nucleus.load_dataset(root, "val")
    assert train.num_images == len(train.image_info)  # prepared
    train_ids = [info["id"] for info in train.image_info]
    val_ids = [info["id"] for info in val.image_info]
    assert not set(train_ids) & set(val_ids)
    assert sorted(train_ids + val_ids) == all_ids
    assert len(val_ids) == round(len(all_ids) * nucleus.DEFAULT_VAL_FRACTION)
    again = nucleus.NucleusDataset()
    again.load_nucleus(root, "val")
    assert [info["id"] for info in again.image_info] == val_ids
    # The split depends on the set of ids only, not on their order.
    shuffled = list(all_ids)
    random.Random(0).shuffle(shuffled)
    assert nucleus.split_image_ids(shuffled) == (train_ids, val_ids)
    # More validation images with a larger fraction.
    _, bigger = nucleus.split_image_ids(all_ids, 0.3)
    assert len(bigger) == round(len(all_ids) * 0.3)


def test_split_small_sets_and_bad_fraction():
    assert nucleus.split_image_ids(["a", "b"], 0.15) in ((["a"], ["b"]), (["b"], ["a"]))
    assert nucleus.split_image_ids(["a"], 0.5) == (["a"], [])
    assert nucleus.split_image_ids(["a", "b", "c"], 0.0) == (["a", "b", "c"], [])
    for bad in (1.0, -0.1, "x"):
        with pytest.raises(ValueError, match="val_fraction"):
            nucleus.split_image_ids(["a", "b"], bad)


def test_dataset_dir_may_be_parent_or_stage1_train(root):
    from_parent = nucleus.NucleusDataset()
    from_parent.load_nucleus(root, "train")
    from_folder = nucleus.NucleusDataset()
    from_folder.load_nucleus(root / "stage1_train", "train")
    assert from_parent.image_info == from_folder.image_info
    whole = nucleus.NucleusDataset()
    whole.load_nucleus(root / "stage1_train", "stage1_train")
    assert len(whole.image_info) == len(from_parent.image_info) + round(
        len(whole.image_info) * nucleus.DEFAULT_VAL_FRACTION)


def test_missing_folder_and_unknown_subset_errors(tmp_path, root):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        nucleus.NucleusDataset().load_nucleus(missing, "train")
    with pytest.raises(FileNotFoundError, match="stage1_test"):
        nucleus.NucleusDataset().load_nucleus(root, "stage1_test")
    with pytest.raises(ValueError, match="not in subset"):
        nucleus.NucleusDataset().load_nucleus(root, "stage1_train", image_ids=["no-such-id"])


def test_corrupt_mask_error_names_the_file(tmp_path, root, three_ids):
    folder = _copy_image_folder(root, three_ids[0], tmp_path)
    broken = sorted((folder / "masks").glob("*.png"))[1]
    broken.write_bytes(b"this is not a png")
    ds = nucleus.NucleusDataset()
    ds.load_nucleus(tmp_path, "stage1_train")
    ds.prepare()
    assert ds.load_image(0).shape[2] == 3
    with pytest.raises(ImageLoadError, match=broken.name):
        ds.load_mask(0)


def test_empty_mask_skipped_and_size_mismatch_error(tmp_path, root, three_ids):
    folder = _copy_image_folder(root, three_ids[0], tmp_path)
    masks_before = len(list((folder / "masks").glob("*.png")))
    image = Image.open(folder / "images" / f"{three_ids[0]}.png")
    Image.new("L", image.size, 0).save(folder / "masks" / "zz_empty.png")
    ds = nucleus.NucleusDataset()
    ds.load_nucleus(tmp_path / "stage1_train", "stage1_train")
    ds.prepare()
    masks, _ = ds.load_mask(0)
    assert masks.shape[-1] == masks_before
    Image.new("L", (7, 5), 255).save(folder / "masks" / "zz_small.png")
    with pytest.raises(ValueError, match="zz_small.png"):
        ds.load_mask(0)


def test_folder_without_masks_or_images(tmp_path, root, three_ids):
    folder = _copy_image_folder(root, three_ids[0], tmp_path)
    shutil.rmtree(folder / "masks")
    with pytest.raises(FileNotFoundError, match="masks/"):
        nucleus.NucleusDataset().load_nucleus(tmp_path, "stage1_train")
    # Unannotated subsets (test folders) load; only load_mask fails.
    (tmp_path / "stage1_train").rename(tmp_path / "stage1_test")
    ds = nucleus.NucleusDataset()
    ds.load_nucleus(tmp_path, "stage1_test")
    ds.prepare()
    assert ds.load_image(0).ndim == 3
    with pytest.raises(FileNotFoundError, match="masks"):
        ds.load_mask(0)
    shutil.rmtree(tmp_path / "stage1_test" / three_ids[0] / "images")
    with pytest.raises(FileNotFoundError, match="images/"):
        nucleus.NucleusDataset().load_nucleus(tmp_path, "stage1_test")


# --------------------------------------------------------------------------------- configs
def test_configs():
    classic = nucleus.NucleusConfig()
    assert (classic.NAME, classic.IMAGES_PER_GPU, classic.NUM_CLASSES) == ("nucleus", 6, 2)
    assert classic.BACKBONE == "resnet50" and classic.IMAGE_RESIZE_MODE == "crop"
    assert list(classic.IMAGE_SHAPE) == [512, 512, 3]
    assert classic.RPN_ANCHOR_SCALES == (8, 16, 32, 64, 128)
    assert (classic.RPN_NMS_THRESHOLD, classic.DETECTION_MAX_INSTANCES) == (0.9, 400)
    sized = nucleus.NucleusConfig(train_images=100, val_images=13)
    assert (sized.STEPS_PER_EPOCH, sized.VALIDATION_STEPS) == (16, 2)
    tiny = nucleus.NucleusConfig(train_images=3, val_images=1)
    assert (tiny.STEPS_PER_EPOCH, tiny.VALIDATION_STEPS) == (1, 1)
    inference = nucleus.make_config("classic", "inference")
    assert (inference.IMAGE_RESIZE_MODE, inference.BATCH_SIZE, inference.RPN_NMS_THRESHOLD) == (
        "pad64", 1, 0.7)
    cpu = nucleus.make_config("cpu", "training", train_images=289, val_images=51)
    assert list(cpu.IMAGE_SHAPE) == [256, 256, 3] and cpu.TRAIN_BN is None
    assert (cpu.STEPS_PER_EPOCH, cpu.VALIDATION_STEPS) == (289 // cpu.BATCH_SIZE,
                                                          51 // cpu.BATCH_SIZE)
    assert nucleus.make_config("cpu", "inference").IMAGE_RESIZE_MODE == "pad64"
    with pytest.raises(ValueError, match="kind"):
        nucleus.make_config("gpu", "training")


def test_augmentation_keeps_masks_with_the_image(three):
    image = three.load_image(0)
    masks, _ = three.load_mask(0)
    augmenter = make_augmenter(nucleus.nucleus_augmentation())
    changed = 0
    for seed in range(6):
        out_image, out_masks = augmenter(image, masks, rng=np.random.default_rng(seed))
        assert out_image.shape == image.shape and out_image.dtype == np.uint8
        assert out_masks.shape == masks.shape and out_masks.dtype == np.bool_
        # Flips and 90-degree turns move pixels but never create or lose any.
        np.testing.assert_array_equal(out_masks.sum(axis=(0, 1)), masks.sum(axis=(0, 1)))
        changed += int(not np.array_equal(out_image, image))
        # Brightness is multiplied by at most 1.5 (classic Multiply((0.8, 1.5))), never offset:
        # a dark fluorescence background stays dark.
        background = np.median(out_image[~out_masks.any(axis=-1)])
        assert background <= 1.5 * np.median(image[~masks.any(axis=-1)]) + 2
    assert changed > 0


class _FakeTrainingModel:
    """Records the ``train`` calls of train_nucleus; ``on_train`` may fake elapsed time."""

    def __init__(self, on_train=None):
        self.config = nucleus.NucleusCPUConfig()
        self.epoch = 0
        self.calls = []
        self._on_train = on_train

    def train(self, train_dataset, val_dataset, learning_rate, epochs, layers,
              augmentation=None, custom_callbacks=None):
        self.calls.append((layers, epochs, list(custom_callbacks)))
        if self._on_train is not None:
            self._on_train(custom_callbacks)
        self.epoch = epochs
        return f"history {layers}"


def test_train_nucleus_time_limit_is_shared_by_the_stages():
    import time

    from mrcnn.model.training import TimeLimit

    model = _FakeTrainingModel()
    before = time.monotonic()
    histories = nucleus.train_nucleus(model, None, None, epochs=4, augmentation=False, minutes=5)
    assert histories == ["history heads", "history all"]
    assert [(layers, epochs) for layers, epochs, _ in model.calls] == [("heads", 2), ("all", 4)]
    limits = [cb for _, _, callbacks in model.calls for cb in callbacks]
    assert len(limits) == 2 and limits[0] is limits[1] and isinstance(limits[0], TimeLimit)
    # The budget counts from the train_nucleus call, not from the first batch of a stage.
    assert limits[0].minutes == 5.0 and before <= limits[0].start <= time.monotonic()

    def spend_the_budget(callbacks):
        callbacks[-1].start -= 120.0   # two minutes "pass" during the heads stage

    model = _FakeTrainingModel(on_train=spend_the_budget)
    histories = nucleus.train_nucleus(model, None, None, epochs=4, augmentation=False, minutes=1)
    assert histories == ["history heads"] and model.calls[0][2][-1].expired()
    with pytest.raises(ValueError, match="minutes"):
        nucleus.train_nucleus(_FakeTrainingModel(), None, None, augmentation=False, minutes=0)


def test_command_line_parser_and_missing_dataset(tmp_path):
    args = nucleus.build_parser().parse_args(
        ["train", "--dataset", "d", "--weights", "none", "--config", "cpu", "--minutes", "2.5"])
    assert (args.command, args.weights, args.config, args.minutes) == ("train", "none", "cpu", 2.5)
    assert args.val_fraction == nucleus.DEFAULT_VAL_FRACTION and args.subset is None
    with pytest.raises(SystemExit):
        nucleus.build_parser().parse_args(["segment", "--dataset", "d"])
    with pytest.raises(FileNotFoundError, match="nowhere"):
        nucleus.main(["detect", "--dataset", str(tmp_path / "nowhere")])


# ------------------------------------------------------------- detect / evaluate, fake model
class GroundTruthModel:
    """Stands in for an inference MaskRCNN: returns the ground truth of each image in turn."""

    def __init__(self, dataset, shuffle_scores=False):
        self.results = []
        rng = np.random.default_rng(0)
        for image_id in dataset.image_ids:
            masks, class_ids = dataset.load_mask(image_id)
            scores = rng.uniform(0.5, 1.0, len(class_ids)) if shuffle_scores else np.ones(
                len(class_ids))
            self.results.append({"rois": extract_bboxes(masks), "class_ids": class_ids,
                                 "scores": scores.astype(np.float32), "masks": masks})
        self.calls = 0

    def detect(self, images, verbose=0):
        assert len(images) == 1
        result = self.results[self.calls]
        assert images[0].shape[:2] == result["masks"].shape[:2]
        self.calls += 1
        return [result]


def test_evaluate_perfect_predictions(three, capsys):
    metrics = nucleus.evaluate_nucleus(GroundTruthModel(three), three)
    assert metrics["num_images"] == 3
    assert metrics["mAP50"] == pytest.approx(1.0)
    assert metrics["mask_AP"] == pytest.approx(1.0)
    assert metrics["box_AP50"] == pytest.approx(1.0)
    assert "COCO mask AP 1.000" in capsys.readouterr().out
    limited = nucleus.evaluate_nucleus(GroundTruthModel(three), three, limit=1, verbose=False)
    assert limited["num_images"] == 1


def test_evaluate_no_detections_scores_zero(three):
    model = GroundTruthModel(three)
    for r in model.results:
        r.update(rois=np.zeros((0, 4), np.int32), class_ids=np.zeros(0, np.int32),
                 scores=np.zeros(0, np.float32), masks=r["masks"][..., :0])
    metrics = nucleus.evaluate_nucleus(model, three, verbose=False)
    assert metrics["mAP50"] == 0.0 and metrics["mask_AP"] == 0.0
    assert metrics["num_detections"] == 0


def test_detect_writes_submission_and_pictures(tmp_path, three):
    model = GroundTruthModel(three, shuffle_scores=True)
    submit_dir = Path(nucleus.detect_nucleus(model, three, output_dir=tmp_path))
    assert submit_dir.parent == tmp_path and submit_dir.name.startswith("submit_")
    with open(submit_dir / "submit.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["ImageId", "EncodedPixels"]
    for image_id in three.image_ids:
        source_id = three.image_info[image_id]["id"]
        assert (submit_dir / f"{source_id}.png").is_file()
        gt = model.results[image_id]["masks"]
        decoded = [rle_decode(rle, gt.shape[:2]) for sid, rle in rows[1:] if sid == source_id]
        assert len(decoded) >= 1
        stacked = np.stack(decoded, axis=-1)
        # Each pixel in at most one instance, and together they cover the ground truth.
        assert stacked.sum(axis=-1).max() == 1
        np.testing.assert_array_equal(stacked.any(axis=-1), gt.any(axis=-1))


# ------------------------------------------------------------------------- end to end (slow)
@pytest.mark.slow
def test_train_one_step_then_detect(tmp_path, root, three_ids):
    from mrcnn.model.maskrcnn import MaskRCNN

    class Tiny(nucleus.NucleusCPUConfig):
        NAME = "nucleus_tiny"
        IMAGES_PER_GPU = 1
        IMAGE_MIN_DIM = 64
        IMAGE_MAX_DIM = 64
        STEPS_PER_EPOCH = 1
        VALIDATION_STEPS = 1
        PRE_NMS_LIMIT = 256
        POST_NMS_ROIS_TRAINING = 32
        POST_NMS_ROIS_INFERENCE = 32
        RPN_TRAIN_ANCHORS_PER_IMAGE = 32
        TRAIN_ROIS_PER_IMAGE = 16
        MAX_GT_INSTANCES = 100
        DETECTION_MAX_INSTANCES = 10
        MINI_MASK_SHAPE = (14, 14)
        FPN_CLASSIF_FC_LAYERS_SIZE = 64
        TOP_DOWN_PYRAMID_SIZE = 64

    class TinyInference(Tiny):
        IMAGE_RESIZE_MODE = "pad64"
        RPN_NMS_THRESHOLD = 0.7

    train_set = nucleus.NucleusDataset()
    train_set.load_nucleus(root, "stage1_train", image_ids=three_ids[:1])
    train_set.prepare()
    val_set = nucleus.NucleusDataset()
    val_set.load_nucleus(root, "stage1_train", image_ids=three_ids[1:2])
    val_set.prepare()
    logs = tmp_path / "logs"
    model = MaskRCNN(mode="training", config=Tiny(), model_dir=logs)
    histories = nucleus.train_nucleus(model, train_set, val_set, epochs=1, layers="all")
    assert len(histories) == 1
    for name in ("loss", "val_loss"):
        assert np.isfinite(histories[0].history[name][-1])

    inference = MaskRCNN(mode="inference", config=TinyInference(), model_dir=logs)
    checkpoint = inference.find_last()
    assert Path(checkpoint).name == "mask_rcnn_nucleus_tiny_0001.h5"
    inference.load_weights(checkpoint, by_name=True)
    both = nucleus.NucleusDataset()
    both.load_nucleus(root, "stage1_train", image_ids=three_ids[:2])
    both.prepare()
    submit_dir = Path(nucleus.detect_nucleus(inference, both, output_dir=tmp_path / "results"))
    with open(submit_dir / "submit.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["ImageId", "EncodedPixels"]
    assert {sid for sid, _ in rows[1:]} == set(three_ids[:2])
    for image_id in both.image_ids:
        source_id = both.image_info[image_id]["id"]
        height, width = both.load_image(image_id).shape[:2]
        decoded = [rle_decode(rle, (height, width)) for sid, rle in rows[1:] if sid == source_id]
        assert np.sum(decoded, axis=0).max() <= 1
        assert (submit_dir / f"{source_id}.png").is_file()
