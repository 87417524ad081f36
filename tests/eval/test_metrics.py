"""Classic per-image VOC-style AP (mrcnn/eval/metrics.py) on hand-built cases with known answers."""
import numpy as np
import pytest

from mrcnn.eval.metrics import compute_ap, compute_ap_range, compute_matches, compute_recall

H = W = 64


def rect_masks(boxes):
    """[H, W, N] bool masks filling each pixel box (y1, x1, y2, x2), y2/x2 exclusive."""
    masks = np.zeros((H, W, len(boxes)), dtype=bool)
    for i, (y1, x1, y2, x2) in enumerate(boxes):
        masks[y1:y2, x1:x2, i] = True
    return masks


def instances(boxes, class_ids, scores=None):
    boxes = np.array(boxes, dtype=np.int32).reshape(-1, 4)
    out = [boxes, np.array(class_ids, dtype=np.int32), rect_masks(boxes)]
    if scores is not None:
        out.insert(2, np.array(scores, dtype=np.float32))
    return out


A = (10, 10, 20, 20)       # area 100
B = (30, 30, 50, 50)       # area 400
FAR = (50, 0, 60, 10)      # overlaps neither A nor B


def test_perfect_predictions_give_ap_one_and_sorted_matches():
    gt = instances([A, B], [1, 2])
    # Given in ascending score order: the matches are reported in score-sorted order.
    pred = instances([B, A], [2, 1], [0.7, 0.9])
    ap, precisions, recalls, overlaps = compute_ap(*gt, *pred)
    assert ap == pytest.approx(1.0)
    np.testing.assert_allclose(precisions, [1, 1, 1, 0])
    np.testing.assert_allclose(recalls, [0, 0.5, 1, 1])
    np.testing.assert_allclose(overlaps, [[1, 0], [0, 1]])
    gt_match, pred_match, _ = compute_matches(*gt, *pred)
    np.testing.assert_array_equal(pred_match, [0, 1])   # A (0.9) first, then B
    np.testing.assert_array_equal(gt_match, [0, 1])


def test_one_of_two_found_after_a_higher_scored_false_positive():
    gt = instances([A, B], [1, 1])
    pred = instances([A, FAR], [1, 1], [0.8, 0.9])
    ap, precisions, recalls, _ = compute_ap(*gt, *pred)
    # Sorted: FP (p=0, r=0), TP on A (p=1/2, r=1/2). Padded p=[0,0,.5,0], r=[0,0,.5,1];
    # running max p=[.5,.5,.5,0]; AP = (0.5-0)*0.5 + (1-0.5)*0 = 0.25.
    assert ap == pytest.approx(0.25)
    np.testing.assert_allclose(precisions, [0.5, 0.5, 0.5, 0.0])
    np.testing.assert_allclose(recalls, [0.0, 0.0, 0.5, 1.0])
    gt_match, pred_match, _ = compute_matches(*gt, *pred)
    np.testing.assert_array_equal(pred_match, [-1, 0])
    np.testing.assert_array_equal(gt_match, [1, -1])


def test_interleaved_tp_fp_tp_matches_hand_computed_ap():
    gt = instances([A, B, FAR], [1, 1, 1])
    # TP (0.9), FP (0.8), TP (0.7): p = [1, 1/2, 2/3], r = [1/3, 1/3, 2/3].
    # Interpolated: r 0->1/3 at p 1, 1/3->2/3 at p 2/3, 2/3->1 at 0: AP = 1/3 + 2/9.
    pred = instances([A, (0, 40, 8, 60), B], [1, 1, 1], [0.9, 0.8, 0.7])
    ap, _, _, _ = compute_ap(*gt, *pred)
    assert ap == pytest.approx(1 / 3 + 2 / 9)


def test_wrong_class_gives_zero():
    gt = instances([A], [1])
    pred = instances([A], [2], [0.99])
    ap, _, _, overlaps = compute_ap(*gt, *pred)
    assert ap == 0.0
    np.testing.assert_allclose(overlaps, [[1.0]])


def test_duplicate_detection_is_a_false_positive_after_full_recall():
    gt = instances([A], [1])
    pred = instances([A, A], [1, 1], [0.9, 0.8])
    gt_match, pred_match, _ = compute_matches(*gt, *pred)
    np.testing.assert_array_equal(pred_match, [0, -1])
    np.testing.assert_array_equal(gt_match, [0])
    ap, _, _, _ = compute_ap(*gt, *pred)
    assert ap == pytest.approx(1.0)


def test_other_class_with_higher_iou_does_not_block_match():
    # GT 0 (class 2) equals the prediction's mask; GT 1 (class 1) overlaps it with IoU 0.8.
    gt = instances([(10, 10, 20, 20), (10, 10, 20, 18)], [2, 1])
    pred = instances([(10, 10, 20, 20)], [1], [0.9])
    gt_match, pred_match, overlaps = compute_matches(*gt, *pred)
    np.testing.assert_allclose(overlaps, [[1.0, 0.8]])
    np.testing.assert_array_equal(pred_match, [1])
    np.testing.assert_array_equal(gt_match, [-1, 0])


def test_zero_padding_is_trimmed():
    gt_boxes, gt_ids, gt_masks = instances([A, B], [1, 2])
    pred_boxes, pred_ids, pred_scores, pred_masks = instances([B, FAR], [2, 1], [0.9, 0.6])
    padded = (
        np.concatenate([gt_boxes, np.zeros((3, 4), np.int32)]),
        np.concatenate([gt_ids, np.zeros(3, np.int32)]),
        np.concatenate([gt_masks, np.zeros((H, W, 3), bool)], axis=-1),
        np.concatenate([pred_boxes, np.zeros((2, 4), np.int32)]),
        np.concatenate([pred_ids, np.zeros(2, np.int32)]),
        np.concatenate([pred_scores, np.zeros(2, np.float32)]),
        np.concatenate([pred_masks, np.zeros((H, W, 2), bool)], axis=-1),
    )
    gt_match, pred_match, overlaps = compute_matches(*padded)
    assert gt_match.shape == (2,) and pred_match.shape == (2,) and overlaps.shape == (2, 2)
    np.testing.assert_array_equal(gt_match, [-1, 0])
    np.testing.assert_array_equal(pred_match, [1, -1])
    ap_padded = compute_ap(*padded)[0]
    ap_plain = compute_ap(gt_boxes, gt_ids, gt_masks, pred_boxes, pred_ids, pred_scores,
                          pred_masks)[0]
    assert ap_padded == pytest.approx(ap_plain) == pytest.approx(0.5)


def test_iou_threshold_and_classic_score_threshold_quirk():
    gt = instances([(10, 10, 20, 20)], [1])
    pred = instances([(10, 12, 20, 22)], [1], [0.9])   # IoU 80 / 120 = 2/3
    assert compute_ap(*gt, *pred, iou_threshold=0.5)[0] == pytest.approx(1.0)
    assert compute_ap(*gt, *pred, iou_threshold=0.7)[0] == 0.0
    # Classic: score_threshold is compared with the IoU, not with the score.
    assert compute_matches(*gt, *pred, score_threshold=0.5)[1][0] == 0
    assert compute_matches(*gt, *pred, score_threshold=0.7)[1][0] == -1


def test_compute_ap_range_mean_and_printout(capsys):
    gt = instances([(10, 10, 20, 20)], [1])
    pred = instances([(10, 12, 20, 22)], [1], [0.9])   # IoU 2/3
    # Matched at 0.50, 0.55, 0.60, 0.65; missed at 0.70 ... 0.95: mean 4/10.
    assert compute_ap_range(*gt, *pred, verbose=0) == pytest.approx(0.4)
    assert capsys.readouterr().out == ""
    assert compute_ap_range(*gt, *pred, iou_thresholds=[0.5, 0.9], verbose=1) == \
        pytest.approx(0.5)
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["AP @0.50:\t 1.000", "AP @0.90:\t 0.000", "AP @0.50-0.90:\t 0.500"]


def test_no_ground_truth_and_no_predictions():
    empty_gt = instances([], [])
    empty_pred = instances([], [], [])
    ap, _, _, overlaps = compute_ap(*empty_gt, *empty_pred)
    assert ap == 0.0 and overlaps.shape == (0, 0)
    assert np.isnan(compute_ap(*empty_gt, *instances([A], [1], [0.5]))[0])
    ap, _, _, overlaps = compute_ap(*instances([A], [1]), *empty_pred)
    assert ap == 0.0 and overlaps.shape == (0, 1)


def test_mismatched_mask_count_is_a_clear_error():
    gt_boxes, gt_ids, gt_masks = instances([A, B], [1, 2])
    pred = instances([A], [1], [0.9])
    with pytest.raises(ValueError, match="gt_masks has 1 instances"):
        compute_matches(gt_boxes, gt_ids, gt_masks[..., :1], *pred)


def test_compute_recall_known_case():
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], dtype=np.float32)
    pred = np.array([[0, 0, 10, 10],      # IoU 1.0 with gt 0
                     [0, 0, 10, 5],       # IoU 0.5 with gt 0
                     [20, 20, 30, 30],    # IoU 1.0 with gt 1
                     [40, 40, 50, 44]],   # IoU 0.4 with gt 2
                    dtype=np.float32)
    recall, positive_ids = compute_recall(pred, gt, 0.5)
    assert recall == pytest.approx(2 / 3)
    np.testing.assert_array_equal(positive_ids, [0, 1, 2])
    recall, positive_ids = compute_recall(pred, gt, 0.3)
    assert recall == pytest.approx(1.0)
    np.testing.assert_array_equal(positive_ids, [0, 1, 2, 3])
    recall, positive_ids = compute_recall(pred, gt, 0.9)
    assert recall == pytest.approx(2 / 3)
    np.testing.assert_array_equal(positive_ids, [0, 2])
    recall, positive_ids = compute_recall(np.zeros((0, 4)), gt, 0.5)
    assert recall == 0.0 and positive_ids.size == 0
