"""Tests for mrcnn/data/pipeline.py: load_image_gt, per-image training inputs, the tf.data
pipeline and the classic generator, on a tiny in-memory dataset of drawn shapes."""
import numpy as np
import pytest

from mrcnn.config import Config
from mrcnn.data.dataset import Dataset
from mrcnn.data.image_meta import parse_image_meta
from mrcnn.data.pipeline import (TrainingInputs, build_training_inputs, data_generator,
                                 load_image_gt, make_training_dataset,
                                 measure_pipeline_throughput, pyramid_anchors_for_config)
from mrcnn.ops.boxes import norm_boxes
from mrcnn.ops.masks import extract_bboxes

RED, BLUE, GREEN = (220, 20, 20), (20, 20, 220), (20, 200, 20)


class ShapesDataset(Dataset):
    """In-memory images: each entry is (height, width, [(class_id, kind, colour, box), ...]).

    ``kind`` is "rect" (fills its box) or "circle" (inscribed in its box)."""

    def __init__(self, scenes, source="shapes", bad_ids=()):
        super().__init__()
        self.add_class(source, 1, "square")
        self.add_class(source, 2, "circle")
        for i, (h, w, objects) in enumerate(scenes):
            self.add_image(source, image_id=i, path=None, height=h, width=w, objects=objects)
        self.bad_ids = set(bad_ids)
        self.prepare()

    def _masks(self, image_id):
        info = self.image_info[image_id]
        h, w = info["height"], info["width"]
        masks = np.zeros((h, w, len(info["objects"])), dtype=bool)
        yy, xx = np.mgrid[0:h, 0:w]
        for i, (_, kind, _, (y1, x1, y2, x2)) in enumerate(info["objects"]):
            if kind == "rect":
                masks[y1:y2, x1:x2, i] = True
            else:
                cy, cx, r = (y1 + y2 - 1) / 2, (x1 + x2 - 1) / 2, (y2 - y1) / 2
                masks[:, :, i] = (yy - cy) ** 2 + (xx - cx) ** 2 <= r ** 2
        return masks

    def load_image(self, image_id):
        if image_id in self.bad_ids:
            raise OSError("disk on fire")
        info = self.image_info[image_id]
        image = np.full((info["height"], info["width"], 3), 90, dtype=np.uint8)
        masks = self._masks(image_id)
        for i, (_, _, colour, _) in enumerate(info["objects"]):
            image[masks[:, :, i]] = colour
        return image

    def load_mask(self, image_id):
        ids = [obj[0] for obj in self.image_info[image_id]["objects"]]
        return self._masks(image_id), np.array(ids, dtype=np.int32)


class TinyConfig(Config):
    NAME = "tiny"
    NUM_CLASSES = 3
    IMAGES_PER_GPU = 2
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    RPN_TRAIN_ANCHORS_PER_IMAGE = 32
    MAX_GT_INSTANCES = 3
    MINI_MASK_SHAPE = (16, 16)


TWO_OBJECTS = (48, 80, [(1, "rect", RED, (8, 8, 24, 32)), (2, "circle", BLUE, (20, 50, 44, 74))])
EMPTY = (64, 64, [])


def _five_objects():
    return (64, 64, [(1 + i % 2, "rect", (30 * i + 40, 10, 10), (4, 12 * i + 1, 20, 12 * i + 11))
                     for i in range(5)])


def _scenes(n=6):
    """n scenes; scene 2 has no instance."""
    scenes = []
    for i in range(n):
        if i == 2:
            scenes.append(EMPTY)
        else:
            scenes.append((64, 64, [(1, "rect", RED, (4 + i, 6, 30 + i, 40)),
                                    (2, "circle", BLUE, (34, 30 + i, 58, 54 + i))]))
    return scenes


# ------------------------------------------------------------------ load_image_gt
def test_load_image_gt_full_masks_meta_and_boxes():
    ds = ShapesDataset([TWO_OBJECTS])
    image, meta, class_ids, bbox, mask = load_image_gt(ds, TinyConfig(), 0, use_mini_mask=False)
    assert image.dtype == np.uint8 and image.shape == (64, 64, 3)
    assert class_ids.dtype == np.int32 and class_ids.tolist() == [1, 2]
    assert bbox.dtype == np.int32 and bbox.shape == (2, 4)
    assert mask.dtype == bool and mask.shape == (64, 64, 2)
    fields = parse_image_meta(meta)
    assert meta.dtype == np.float32 and meta.shape == (15,)
    assert fields["image_id"] == 0
    assert fields["original_image_shape"].tolist() == [48, 80, 3]
    assert fields["image_shape"].tolist() == [64, 64, 3]
    # 48x80 scaled by 64/80 = 0.8 -> 38x64, padded top by (64 - 38) // 2 = 13.
    assert fields["window"].tolist() == [13, 0, 51, 64]
    assert fields["scale"] == pytest.approx(0.8)
    assert fields["active_class_ids"].tolist() == [1, 1, 1]
    np.testing.assert_array_equal(bbox, extract_bboxes(mask))
    expected = np.array([[8, 8, 24, 32], [20, 50, 44, 74]]) * 0.8 + [13, 0, 13, 0]
    np.testing.assert_allclose(bbox, expected, atol=1.01)
    # Masks sit on their colours: the mask's centre pixel has the object's colour.
    for i, colour in enumerate((RED, BLUE)):
        ys, xs = np.nonzero(mask[:, :, i])
        assert tuple(image[int(ys.mean()), int(xs.mean())]) == colour


def test_load_image_gt_mini_masks_on_request_full_masks_by_default():
    ds = ShapesDataset([TWO_OBJECTS])
    _, _, _, bbox, mini = load_image_gt(ds, TinyConfig(), 0, use_mini_mask=True)
    assert mini.shape == (16, 16, 2) and mini.dtype == bool
    assert mini[:, :, 0].all()  # the rectangle fills its box
    circle = mini[:, :, 1]
    assert circle[8, 8] and not circle[0, 0] and not circle[15, 15]
    # The classic default is use_mini_mask=False, whatever config.USE_MINI_MASK says.
    _, _, _, _, full = load_image_gt(ds, TinyConfig(), 0)
    assert full.shape == (64, 64, 2)
    _, _, _, _, from_config = load_image_gt(ds, TinyConfig(), 0, use_mini_mask=None)
    assert from_config.shape == (16, 16, 2)


def test_instances_emptied_by_augmentation_are_dropped():
    ds = ShapesDataset([TWO_OBJECTS])

    def blank_right_half(image, masks):
        image, masks = image.copy(), masks.copy()
        image[:, 32:] = 0
        masks[:, 32:] = False
        return image, masks

    _, _, class_ids, bbox, mask = load_image_gt(ds, TinyConfig(), 0,
                                                augmentation=blank_right_half,
                                                use_mini_mask=False)
    assert class_ids.tolist() == [1] and bbox.shape == (1, 4) and mask.shape == (64, 64, 1)


def test_instances_cropped_out_are_dropped_in_crop_mode():
    class CropConfig(TinyConfig):
        IMAGE_RESIZE_MODE = "crop"

    colours = [RED, BLUE, GREEN]
    ds = ShapesDataset([(64, 200, [(1, "rect", colours[0], (20, 0, 40, 8)),
                                   (2, "rect", colours[1], (20, 96, 40, 104)),
                                   (1, "rect", colours[2], (20, 192, 40, 200))])])
    seen = set()
    for seed in range(12):
        image, meta, class_ids, bbox, mask = load_image_gt(
            ds, CropConfig(), 0, use_mini_mask=False, rng=np.random.default_rng(seed))
        assert image.shape == (64, 64, 3)
        # A 64-px crop cannot hold objects 96 px apart.
        assert mask.shape[2] <= 2 and class_ids.shape[0] == bbox.shape[0] == mask.shape[2]
        for i in range(mask.shape[2]):
            assert mask[:, :, i].any()
            colour = tuple(image[mask[:, :, i]][0])
            assert np.all(image[mask[:, :, i]] == colour)
            seen.add(colour)
    assert len(seen) >= 2


def test_mask_size_mismatch_names_the_image():
    class Bad(ShapesDataset):
        def load_mask(self, image_id):
            masks, ids = super().load_mask(image_id)
            return masks[:40], ids

    ds = Bad([TWO_OBJECTS, TWO_OBJECTS])
    with pytest.raises(ValueError, match=r"image 1 .*40x80.*48x80"):
        load_image_gt(ds, TinyConfig(), 1)


def test_class_count_mismatch_is_reported():
    class Four(TinyConfig):
        NUM_CLASSES = 4

    with pytest.raises(ValueError, match="NUM_CLASSES is 4"):
        load_image_gt(ShapesDataset([TWO_OBJECTS]), Four(), 0)


# ------------------------------------------------------------------ build_training_inputs
def _check_specs(inputs, cfg, num_anchors):
    specs = TrainingInputs.specs(cfg, num_anchors)
    assert tuple(inputs) == TrainingInputs.KEYS
    for key, (shape, dtype) in specs.items():
        assert inputs[key].shape == shape, key
        assert inputs[key].dtype == dtype, key


def test_build_training_inputs_shapes_padding_and_values():
    cfg = TinyConfig()
    anchors, _ = pyramid_anchors_for_config(cfg)
    ds = ShapesDataset([TWO_OBJECTS])
    inputs = build_training_inputs(ds, cfg, 0, anchors, np.random.default_rng(0))
    _check_specs(inputs, cfg, anchors.shape[0])
    assert inputs["input_gt_masks"].shape == (16, 16, 3)
    image, meta, class_ids, bbox, mini = load_image_gt(ds, cfg, 0, use_mini_mask=True)
    np.testing.assert_allclose(inputs["input_image"], image.astype(np.float32) - cfg.MEAN_PIXEL,
                               rtol=1e-6)
    np.testing.assert_array_equal(inputs["input_image_meta"], meta)
    assert inputs["input_gt_class_ids"].tolist() == [1, 2, 0]
    np.testing.assert_array_equal(inputs["input_gt_boxes"][:2], bbox)
    np.testing.assert_array_equal(inputs["input_gt_boxes"][2], 0)
    np.testing.assert_array_equal(inputs["input_gt_masks"][:, :, :2], mini)
    assert not inputs["input_gt_masks"][:, :, 2].any()
    match = inputs["input_rpn_match"][:, 0]
    assert np.sum(match == 1) >= 2 and np.sum(match != 0) == 32
    assert np.any(inputs["input_rpn_bbox"][:np.sum(match == 1)] != 0)


def test_full_size_gt_masks_without_mini_mask():
    class Full(TinyConfig):
        USE_MINI_MASK = False

    cfg = Full()
    anchors, _ = pyramid_anchors_for_config(cfg)
    inputs = build_training_inputs(ShapesDataset([TWO_OBJECTS]), cfg, 0, anchors,
                                   np.random.default_rng(0))
    _check_specs(inputs, cfg, anchors.shape[0])
    assert inputs["input_gt_masks"].shape == (64, 64, 3)


def test_more_instances_than_max_keeps_a_random_subset():
    cfg = TinyConfig()
    anchors, _ = pyramid_anchors_for_config(cfg)
    ds = ShapesDataset([_five_objects()])
    _, _, all_ids, all_boxes, all_masks = load_image_gt(ds, cfg, 0, use_mini_mask=True)
    chosen = set()
    for seed in range(4):
        inputs = build_training_inputs(ds, cfg, 0, anchors, np.random.default_rng(seed))
        boxes = inputs["input_gt_boxes"]
        assert np.all(inputs["input_gt_class_ids"] > 0)
        rows = [int(np.flatnonzero(np.all(all_boxes == b, axis=1))[0]) for b in boxes]
        assert len(set(rows)) == 3 and rows == sorted(rows)
        np.testing.assert_array_equal(inputs["input_gt_class_ids"], all_ids[rows])
        np.testing.assert_array_equal(inputs["input_gt_masks"], all_masks[:, :, rows])
        chosen.add(tuple(rows))
    assert len(chosen) > 1


def test_zero_instance_image_is_a_negative_unless_skipped():
    cfg = TinyConfig()
    anchors, _ = pyramid_anchors_for_config(cfg)
    ds = ShapesDataset([EMPTY])
    inputs = build_training_inputs(ds, cfg, 0, anchors, np.random.default_rng(0))
    _check_specs(inputs, cfg, anchors.shape[0])
    match = inputs["input_rpn_match"][:, 0]
    assert np.sum(match == -1) == 32 and np.sum(match == 1) == 0
    for key in ("input_rpn_bbox", "input_gt_class_ids", "input_gt_boxes", "input_gt_masks"):
        assert not np.any(inputs[key]), key
    assert build_training_inputs(ds, cfg, 0, anchors, np.random.default_rng(0),
                                 skip_empty=True) is None


def test_image_not_molded_to_image_shape_is_reported():
    class Pad64(TinyConfig):
        IMAGE_RESIZE_MODE = "pad64"
        IMAGE_MAX_DIM = 128

    cfg = Pad64()
    anchors, _ = pyramid_anchors_for_config(cfg)
    with pytest.raises(ValueError, match=r"image 0 .*IMAGE_SHAPE"):
        build_training_inputs(ShapesDataset([TWO_OBJECTS]), cfg, 0, anchors,
                              np.random.default_rng(0))


def test_pyramid_anchors_for_config():
    cfg = TinyConfig()
    pixels, normalized = pyramid_anchors_for_config(cfg)
    assert pixels.shape == (3 * (16 * 16 + 8 * 8 + 4 * 4 + 2 * 2 + 1), 4)
    assert pixels.dtype == normalized.dtype == np.float32
    np.testing.assert_allclose(normalized, norm_boxes(pixels, (64, 64)), rtol=1e-6)


# ------------------------------------------------------------------ tf.data
def _ids(batches):
    return [int(i) for b in batches for i in b["input_image_meta"].numpy()[:, 0]]


def _dataset(ds, cfg, **kwargs):
    pixels, normalized = pyramid_anchors_for_config(cfg)
    kwargs.setdefault("num_parallel_calls", 2)
    return make_training_dataset(ds, cfg, normalized, pixels, **kwargs)


def test_make_training_dataset_keys_shapes_dtypes():
    import tensorflow as tf

    cfg = TinyConfig()
    pixels, normalized = pyramid_anchors_for_config(cfg)
    tf_ds = _dataset(ShapesDataset(_scenes()), cfg, seed=3)
    specs = TrainingInputs.specs(cfg, pixels.shape[0])
    assert set(tf_ds.element_spec) == set(TrainingInputs.BATCH_KEYS)
    for key, (shape, dtype) in specs.items():
        assert tf_ds.element_spec[key].shape.as_list() == [2, *shape], key
        assert tf_ds.element_spec[key].dtype == tf.as_dtype(dtype), key
    assert tf_ds.element_spec["input_anchors"].shape.as_list() == [2, pixels.shape[0], 4]
    batch = next(iter(tf_ds))
    for key, (shape, dtype) in specs.items():
        assert batch[key].shape == (2, *shape) and batch[key].dtype == tf.as_dtype(dtype)
    np.testing.assert_array_equal(batch["input_anchors"].numpy()[1], normalized)


def test_same_seed_same_batches_other_seed_other_order():
    cfg = TinyConfig()
    ds = ShapesDataset(_scenes())
    first = next(iter(_dataset(ds, cfg, seed=5)))
    again = next(iter(_dataset(ds, cfg, seed=5, num_parallel_calls=1)))
    for key in first:
        np.testing.assert_array_equal(first[key].numpy(), again[key].numpy())
    order5 = _ids(_dataset(ds, cfg, seed=5, repeat=False))
    order6 = _ids(_dataset(ds, cfg, seed=6, repeat=False))
    assert sorted(order5) == sorted(order6) == list(range(6))
    assert order5 != order6
    # With repeat, each epoch is a new permutation of all images.
    two_epochs = _ids(_dataset(ds, cfg, seed=5).take(6))
    assert two_epochs[:6] == order5
    assert sorted(two_epochs[6:]) == list(range(6)) and two_epochs[6:] != order5


def test_zero_instance_images_go_through_or_are_skipped():
    cfg = TinyConfig()
    ds = ShapesDataset(_scenes())
    batches = list(_dataset(ds, cfg, shuffle=False, repeat=False))
    assert _ids(batches) == [0, 1, 2, 3, 4, 5]
    empty = batches[1]["input_gt_class_ids"].numpy()[0]  # image 2
    assert not empty.any()
    skipped = _ids(_dataset(ds, cfg, shuffle=False, repeat=False, skip_empty=True))
    assert skipped == [0, 1, 3, 4]  # 5 images left, the last one dropped by drop_remainder


def test_failing_image_error_names_the_image():
    import tensorflow as tf

    ds = ShapesDataset(_scenes(4), bad_ids={3})
    with pytest.raises(tf.errors.OpError, match=r"image 3 .*OSError: disk on fire"):
        list(_dataset(ds, TinyConfig(), shuffle=False, repeat=False))


def test_make_training_dataset_rejects_bad_arguments():
    cfg = TinyConfig()
    pixels, normalized = pyramid_anchors_for_config(cfg)
    ds = ShapesDataset(_scenes(2))
    with pytest.raises(ValueError, match="anchors"):
        make_training_dataset(ds, cfg, normalized[:-1], pixels)
    with pytest.raises(ValueError, match="seed"):
        make_training_dataset(ds, cfg, normalized, pixels, seed=-1)


# ------------------------------------------------------------------ classic generator, helpers
def test_data_generator_classic_order_and_skips_empty_images():
    cfg = TinyConfig()
    pixels, _ = pyramid_anchors_for_config(cfg)
    gen = data_generator(ShapesDataset(_scenes(3)), cfg, shuffle=False, batch_size=2, seed=0)
    inputs, outputs = next(gen)
    assert outputs == [] and len(inputs) == 7
    specs = TrainingInputs.specs(cfg, pixels.shape[0])
    for array, key in zip(inputs, TrainingInputs.KEYS):
        assert array.shape == (2, *specs[key][0]) and array.dtype == specs[key][1], key
    assert inputs[1][:, 0].tolist() == [0, 1]
    inputs, _ = next(gen)
    assert inputs[1][:, 0].tolist() == [0, 1]  # image 2 (empty) skipped, next epoch starts
    with pytest.raises(ValueError, match="random_rois"):
        next(data_generator(ShapesDataset(_scenes(3)), cfg, detection_targets=True))


def test_measure_pipeline_throughput():
    rate = measure_pipeline_throughput([1, 2, 3, 4], 3)
    assert rate > 0
    with pytest.raises(ValueError, match="ended"):
        measure_pipeline_throughput([1, 2, 3], 3)
    with pytest.raises(ValueError, match="batches"):
        measure_pipeline_throughput([1, 2], 0)


def test_import_does_not_import_tensorflow():
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, mrcnn.data.pipeline, mrcnn.data.augment, mrcnn.data.rpn_targets; "
            "print('tensorflow' in sys.modules, 'imgaug' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(Path(__file__).resolve().parents[2]))
    assert out.stdout.split() == ["False", "False"]
