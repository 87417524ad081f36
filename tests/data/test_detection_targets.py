"""Classic NumPy head targets: generate_random_rois, build_detection_targets and the
data_generator(random_rois=..., detection_targets=True) call of the inspect_data notebook."""
import numpy as np
import pytest

import mrcnn.model as modellib
from mrcnn.config import Config
from mrcnn.ops.boxes import apply_box_deltas, compute_overlaps
from samples.shapes.shapes import make_dataset


class TargetsConfig(Config):
    NAME = "targets"
    NUM_CLASSES = 4
    IMAGES_PER_GPU = 2
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    TRAIN_ROIS_PER_IMAGE = 20
    RPN_TRAIN_ANCHORS_PER_IMAGE = 32
    MAX_GT_INSTANCES = 6
    MINI_MASK_SHAPE = (16, 16)


GT_BOXES = np.array([[10, 10, 30, 40], [35, 5, 60, 25]], dtype=np.int32)


def test_generate_random_rois_classic_layout():
    rng = np.random.default_rng(0)
    rois = modellib.generate_random_rois((64, 64, 3), 100, np.array([1, 2]), GT_BOXES, rng=rng)
    assert rois.shape == (100, 4) and rois.dtype == np.int32
    assert np.all(rois[:, 2] > rois[:, 0]) and np.all(rois[:, 3] > rois[:, 1])
    assert rois.min() >= 0 and rois[:, [0, 2]].max() < 64 and rois[:, [1, 3]].max() < 64
    # 45 ROIs per GT box (90 %), inside the box grown by its size, clipped to the image.
    for i, (y1, x1, y2, x2) in enumerate(GT_BOXES):
        block = rois[45 * i:45 * (i + 1)]
        h, w = y2 - y1, x2 - x1
        assert block[:, 0].min() >= max(y1 - h, 0) and block[:, 2].max() < min(y2 + h, 64)
        assert block[:, 1].min() >= max(x1 - w, 0) and block[:, 3].max() < min(x2 + w, 64)
    # Without GT boxes every ROI is drawn anywhere (the classic divided by zero).
    anywhere = modellib.generate_random_rois((64, 64), 10, np.zeros([0]), np.zeros([0, 4]),
                                             rng=rng)
    assert anywhere.shape == (10, 4) and np.all(anywhere[:, 2] > anywhere[:, 0])


def _full_masks():
    masks = np.zeros((64, 64, 2), dtype=bool)
    for i, (y1, x1, y2, x2) in enumerate(GT_BOXES):
        masks[y1:y2, x1:x2, i] = True
    return masks


@pytest.mark.parametrize("mini", [False, True])
def test_build_detection_targets_classic_semantics(mini):
    class Cfg(TargetsConfig):
        USE_MINI_MASK = mini

    config = Cfg()
    rng = np.random.default_rng(1)
    rpn_rois = modellib.generate_random_rois((64, 64), 200, np.array([1, 3]), GT_BOXES, rng=rng)
    masks = _full_masks()
    if mini:
        from mrcnn.ops.masks import minimize_mask
        masks = minimize_mask(GT_BOXES, masks, config.MINI_MASK_SHAPE)
    rois, class_ids, bboxes, target_masks = modellib.build_detection_targets(
        rpn_rois, np.array([1, 3, 0], dtype=np.int32),
        np.concatenate([GT_BOXES, np.zeros([1, 4], np.int32)]),
        np.concatenate([masks, np.zeros(masks.shape[:2] + (1,), bool)], axis=2), config, rng=rng)
    t = config.TRAIN_ROIS_PER_IMAGE
    assert rois.shape == (t, 4) and class_ids.shape == (t,) and class_ids.dtype == np.int32
    assert bboxes.shape == (t, 4, 4) and target_masks.shape == (t, 28, 28, 4)
    positives = np.where(class_ids > 0)[0]
    # Positives first, at most a third, all with IoU > 0.5; negatives below 0.5.
    assert 0 < positives.size <= int(t * config.ROI_POSITIVE_RATIO)
    assert positives.tolist() == list(range(positives.size))
    iou = compute_overlaps(rois.astype(float), GT_BOXES.astype(float))
    assert np.all(iou[positives].max(axis=1) > 0.5)
    assert np.all(iou[positives.size:].max(axis=1) < 0.5)
    for i in positives:
        gt = int(np.argmax(iou[i]))
        assert class_ids[i] == [1, 3][gt]
        # The class column's deltas refine the ROI onto its GT box; other columns are zero.
        refined = apply_box_deltas(rois[i:i + 1].astype(np.float32),
                                   bboxes[i:i + 1, class_ids[i]] * config.BBOX_STD_DEV)
        np.testing.assert_allclose(refined[0], GT_BOXES[gt], atol=1e-3)
        assert not np.any(np.delete(bboxes[i], class_ids[i], axis=0))
        # The GT mask fills its box: the target is 1 where the ROI lies inside the box.
        y1, x1, y2, x2 = rois[i]
        inside = np.zeros((64, 64), bool)
        inside[y1:y2, x1:x2] = True
        expected = (inside & _full_masks()[:, :, gt])[y1:y2, x1:x2].mean()
        assert abs(target_masks[i, :, :, class_ids[i]].mean() - expected) < 0.1
        assert not np.any(np.delete(target_masks[i], class_ids[i], axis=-1))
    assert not np.any(bboxes[positives.size:]) and not np.any(target_masks[positives.size:])


def test_build_detection_targets_all_positive_rois_are_repeated():
    config = TargetsConfig()
    rois = np.repeat(GT_BOXES[:1], 3, axis=0)  # three ROIs, all exactly on the GT box
    out_rois, class_ids, _, _ = modellib.build_detection_targets(
        rois, np.array([2], np.int32), GT_BOXES[:1], _full_masks()[:, :, :1], config,
        rng=np.random.default_rng(0))
    assert out_rois.shape == (20, 4) and np.all(class_ids[:3] == 2)
    with pytest.raises(ValueError, match="class id > 0"):
        modellib.build_detection_targets(rois, np.array([0], np.int32), GT_BOXES[:1],
                                         _full_masks()[:, :, :1], config)


def test_data_generator_random_rois_and_detection_targets_classic_outputs():
    config = TargetsConfig()
    dataset = make_dataset(4, split="train", seed=2, height=128, width=128)
    g = modellib.data_generator(dataset, config, shuffle=True, random_rois=300, batch_size=2,
                                detection_targets=True, seed=0)
    (images, metas, rpn_match, rpn_bbox, gt_class_ids, gt_boxes, gt_masks, rpn_rois, rois), \
        (mrcnn_class_ids, mrcnn_bbox, mrcnn_mask) = next(g)
    t = config.TRAIN_ROIS_PER_IMAGE
    assert images.shape == (2, 64, 64, 3) and rpn_rois.shape == (2, 300, 4)
    assert rois.shape == (2, t, 4) and mrcnn_class_ids.shape == (2, t, 1)
    assert mrcnn_bbox.shape == (2, t, 4, 4) and mrcnn_mask.shape == (2, t, 28, 28, 4)
    assert np.all(mrcnn_class_ids[:, 0, 0] > 0)  # shapes images always have a positive ROI
    only_rois, _ = next(modellib.data_generator(dataset, config, random_rois=50, batch_size=1,
                                                seed=0))
    assert len(only_rois) == 8 and only_rois[7].shape == (1, 50, 4)
    with pytest.raises(ValueError, match="augmentation="):
        next(modellib.data_generator(dataset, config, augment=True))


def test_load_image_gt_classic_augment_flag_flips():
    config = TargetsConfig()
    dataset = make_dataset(1, split="train", seed=2, height=128, width=128)
    plain = modellib.load_image_gt(dataset, config, 0)
    flips = [modellib.load_image_gt(dataset, config, 0, augment=True,
                                    rng=np.random.default_rng(seed)) for seed in range(8)]
    flipped = [f for f in flips if not np.array_equal(f[0], plain[0])]
    assert 0 < len(flipped) < 8
    np.testing.assert_array_equal(flipped[0][0], plain[0][:, ::-1])
    np.testing.assert_array_equal(flipped[0][4], plain[4][:, ::-1])
