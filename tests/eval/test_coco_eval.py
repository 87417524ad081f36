"""COCO evaluation (mrcnn/eval/coco_eval.py) against pycocotools run directly on hand-built dicts."""
import copy
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mrcnn.data.dataset import Dataset
from mrcnn.eval.coco_eval import (
    COCO_METRIC_NAMES,
    build_coco_ground_truth,
    detections_to_coco_results,
    evaluate_coco,
    evaluate_coco_results,
)

# pycocotools' decode trips a numpy 2 DeprecationWarning (its __array__ lacks `copy`).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

H = W = 64


def rect(y1, x1, y2, x2):
    m = np.zeros((H, W), dtype=bool)
    m[y1:y2, x1:x2] = True
    return m


def disc(cy, cx, r):
    yy, xx = np.mgrid[:H, :W]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def stack(masks):
    return np.stack(masks, axis=-1) if masks else np.zeros((H, W, 0), dtype=bool)


class MemoryDataset(Dataset):
    """Images held in memory as (list of [H, W] masks, list of class ids)."""

    def __init__(self, scenes, empty_mask_shape=(H, W, 0)):
        super().__init__()
        self.add_class("mem", 7, "cat")
        self.add_class("mem", 9, "dog")
        for i in range(len(scenes)):
            self.add_image("mem", image_id=100 + i, path=f"/nowhere/{i}.png", height=H, width=W)
        self._scenes = scenes
        self._empty_mask_shape = empty_mask_shape
        self.prepare()

    def load_mask(self, image_id):
        masks, class_ids = self._scenes[image_id]
        if not masks:
            return np.zeros(self._empty_mask_shape, bool), np.zeros((0,), np.int32)
        return stack(masks), np.array(class_ids, dtype=np.int32)


# Five 64x64 images, classes 1 and 2; image 2 gets no prediction, image 3 has no ground truth.
SCENES = [
    ([rect(2, 2, 42, 42), disc(52, 52, 8), rect(45, 5, 60, 20)], [1, 2, 1]),
    ([disc(20, 20, 10), rect(30, 35, 50, 60), rect(5, 40, 15, 60)], [2, 1, 2]),
    ([rect(10, 10, 30, 30)], [1]),
    ([], []),
    ([rect(0, 0, 20, 64), disc(40, 30, 12)], [2, 1]),
]


def box_of(mask):
    ys, xs = np.where(mask)
    return np.array([ys.min(), xs.min(), ys.max() + 1, xs.max() + 1])


def shifted(mask, dy, dx):
    out = np.zeros_like(mask)
    src = mask[max(0, -dy):H - max(0, dy), max(0, -dx):W - max(0, dx)]
    out[max(0, dy):max(0, dy) + src.shape[0], max(0, dx):max(0, dx) + src.shape[1]] = src
    return out


def detection(masks, class_ids, scores, rois=None):
    rois = np.array([box_of(m) for m in masks], np.int32).reshape(-1, 4) if rois is None else rois
    return {"rois": np.asarray(rois, np.int32).reshape(-1, 4),
            "class_ids": np.array(class_ids, np.int32),
            "scores": np.array(scores, np.float32),
            "masks": stack(masks)}


def perturbed_predictions(seed=0):
    """Shifted/shrunk masks, jittered boxes, dropped and extra detections, random scores."""
    rng = np.random.default_rng(seed)
    predictions = []
    for index, (masks, class_ids) in enumerate(SCENES):
        if index == 2:
            predictions.append(detection([], [], []))
            continue
        out_masks, out_ids, rois = [], [], []
        for mask, class_id in zip(masks, class_ids):
            if rng.random() < 0.2:
                continue
            m = shifted(mask, *rng.integers(-2, 3, size=2))
            if rng.random() < 0.4:   # shrink: cut the bottom fifth
                y1, _, y2, _ = box_of(m)
                m[y2 - (y2 - y1) // 5:, :] = False
            out_masks.append(m)
            out_ids.append(class_id if rng.random() > 0.15 else 3 - class_id)
            rois.append(np.clip(box_of(m) + rng.integers(-1, 2, size=4), 0, H))
        for _ in range(2 if index == 3 else 1):     # extra false positives
            y, x = rng.integers(0, 48, size=2)
            m = rect(y, x, y + rng.integers(6, 16), x + rng.integers(6, 16))
            out_masks.append(m)
            out_ids.append(int(rng.integers(1, 3)))
            rois.append(box_of(m))
        scores = rng.random(len(out_masks))
        predictions.append(detection(out_masks, out_ids, scores, np.array(rois).reshape(-1, 4)))
    return predictions


def direct_pycocotools_stats(scenes, predictions, iou_type, crowd=()):
    """COCOeval on dicts built here from the masks, independently of the module's builders."""
    images, annotations = [], []
    for image_id, (masks, class_ids) in enumerate(scenes):
        images.append({"id": image_id, "height": H, "width": W})
        for mask, class_id in zip(masks, class_ids):
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": abs(class_id), "segmentation": rle,
                                "area": float(mask_utils.area(rle)),
                                "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                                "iscrowd": int(class_id < 0)})
    gt = COCO()
    gt.dataset = {"images": images, "annotations": annotations,
                  "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}
    gt.createIndex()
    results = []
    for image_id, p in enumerate(predictions):
        for i in range(len(p["scores"])):
            r = {"image_id": image_id, "category_id": int(p["class_ids"][i]),
                 "score": float(p["scores"][i])}
            if iou_type == "segm":
                r["segmentation"] = mask_utils.encode(
                    np.asfortranarray(p["masks"][..., i].astype(np.uint8)))
            else:
                y1, x1, y2, x2 = (float(v) for v in p["rois"][i])
                r["bbox"] = [x1, y1, x2 - x1, y2 - y1]
            results.append(r)
    coco_eval = COCOeval(gt, gt.loadRes(results), iou_type)
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    return np.array(coco_eval.stats)


def test_perfect_predictions_give_ap_one():
    dataset = MemoryDataset(SCENES)
    predictions = [detection(m, c, np.ones(len(m))) for m, c in SCENES]
    metrics = evaluate_coco(dataset, predictions)
    for iou_type in ("bbox", "segm"):
        m = metrics[iou_type]
        assert list(m) == list(COCO_METRIC_NAMES)
        assert m["AP"] == pytest.approx(1.0)
        assert m["AP50"] == pytest.approx(1.0)
        assert m["AP75"] == pytest.approx(1.0)
        assert m["APs"] == pytest.approx(1.0) and m["APm"] == pytest.approx(1.0)
        assert m["APl"] == -1.0          # no object above 96**2 pixels on a 64x64 image
        assert m["AR100"] == pytest.approx(1.0)
        assert "Average Precision" in m.summary and "IoU=0.50:0.95" in m.summary


def test_perturbed_predictions_match_direct_pycocotools():
    dataset = MemoryDataset(SCENES)
    predictions = perturbed_predictions()
    metrics = evaluate_coco(dataset, predictions)
    for iou_type in ("bbox", "segm"):
        expected = direct_pycocotools_stats(SCENES, predictions, iou_type)
        np.testing.assert_allclose(metrics[iou_type].stats, expected, rtol=0, atol=1e-9)
        np.testing.assert_allclose([metrics[iou_type][k] for k in COCO_METRIC_NAMES], expected,
                                   rtol=0, atol=1e-9)
        assert 0.1 < metrics[iou_type]["AP"] < 0.9     # the perturbations matter
    assert metrics["bbox"]["AP"] != metrics["segm"]["AP"]


def test_source_ids_and_empty_mask_layout_do_not_change_metrics():
    predictions = perturbed_predictions(seed=1)
    plain = evaluate_coco(MemoryDataset(SCENES), predictions, iou_types="segm")
    # Instance-less images returned as [0, 0, 0] masks (the Dataset default) take their size
    # from image_info.
    dataset = MemoryDataset(SCENES, empty_mask_shape=(0, 0, 0))
    by_source = evaluate_coco(dataset, predictions, iou_types=("segm",), use_source_ids=True)
    np.testing.assert_allclose(by_source["segm"].stats, plain["segm"].stats, atol=1e-12)

    gt = build_coco_ground_truth(dataset, use_source_ids=True)
    assert sorted(gt.getImgIds()) == [100, 101, 102, 103, 104]
    assert sorted(gt.getCatIds()) == [7, 9]
    assert gt.imgs[103] == {"id": 103, "height": H, "width": W}


def test_ground_truth_annotations():
    dataset = MemoryDataset([([rect(2, 3, 12, 23), disc(40, 40, 5)], [1, -2])])
    gt = build_coco_ground_truth(dataset)
    anns = gt.loadAnns(gt.getAnnIds())
    assert [a["id"] for a in anns] == [1, 2]
    assert anns[0]["bbox"] == [3.0, 2.0, 20.0, 10.0]
    assert anns[0]["area"] == 200.0 and anns[0]["iscrowd"] == 0 and anns[0]["category_id"] == 1
    assert anns[1]["iscrowd"] == 1 and anns[1]["category_id"] == 2
    assert anns[1]["area"] == float(disc(40, 40, 5).sum())
    decoded = mask_utils.decode(anns[1]["segmentation"]).astype(bool)
    np.testing.assert_array_equal(decoded, disc(40, 40, 5))
    assert [c["id"] for c in gt.dataset["categories"]] == [1, 2]
    json.dumps(gt.dataset)


def test_results_are_json_ready_and_use_rois_for_boxes():
    p = detection([rect(5, 6, 15, 26)], [2], [0.75], rois=np.array([[4, 6, 16, 30]]))
    results = detections_to_coco_results([3], [p])
    assert len(results) == 1
    r = results[0]
    assert r["image_id"] == 3 and r["category_id"] == 2 and r["score"] == pytest.approx(0.75)
    assert r["bbox"] == [6.0, 4.0, 24.0, 12.0]
    assert isinstance(r["segmentation"]["counts"], str)
    np.testing.assert_array_equal(mask_utils.decode(r["segmentation"]).astype(bool),
                                  rect(5, 6, 15, 26))
    json.dumps(results)


def test_crowd_region_is_ignored():
    person, crowd = rect(5, 5, 25, 25), rect(35, 30, 60, 60)
    scenes = [([person, crowd], [1, -1])]
    dataset = MemoryDataset(scenes)
    on_person = (person, 1, 0.9)
    on_crowd = (rect(40, 35, 55, 50), 1, 0.95)    # inside the crowd region, higher score

    def run(dets):
        preds = [detection([d[0] for d in dets], [d[1] for d in dets], [d[2] for d in dets])]
        return evaluate_coco(dataset, preds), preds

    # The crowd is not a GT to find: the one real object found gives AP 1 ...
    metrics, _ = run([on_person])
    assert metrics["segm"]["AP"] == pytest.approx(1.0)
    assert metrics["bbox"]["AP"] == pytest.approx(1.0)
    # ... and a detection on the crowd is not a false positive, even ranked first.
    metrics, preds = run([on_crowd, on_person])
    for iou_type in ("bbox", "segm"):
        assert metrics[iou_type]["AP"] == pytest.approx(1.0)
        np.testing.assert_allclose(
            metrics[iou_type].stats,
            direct_pycocotools_stats(scenes, preds, iou_type), atol=1e-9)
    # Controls: without the crowd annotation that detection is a false positive ranked first;
    # with the region as an ordinary (non-crowd) object it is a missed ground truth.
    without_crowd = evaluate_coco(MemoryDataset([([person], [1])]), preds)
    as_object = evaluate_coco(MemoryDataset([([person, crowd], [1, 1])]), preds)
    for iou_type in ("bbox", "segm"):
        assert without_crowd[iou_type]["AP"] < 0.6
        assert as_object[iou_type]["AR100"] == pytest.approx(0.5)


def test_empty_predictions_give_zeros_not_errors():
    dataset = MemoryDataset(SCENES)
    predictions = [detection([], [], []) for _ in SCENES]
    metrics = evaluate_coco(dataset, predictions)
    for iou_type in ("bbox", "segm"):
        m = metrics[iou_type]
        assert not np.any(np.isnan(m.stats))
        for key in ("AP", "AP50", "AP75", "APs", "APm", "AR1", "AR10", "AR100", "ARs", "ARm"):
            assert m[key] == 0.0, key
        # No large object in the ground truth: undefined (-1), as with any predictions.
        assert m["APl"] == -1.0 and m["ARl"] == -1.0


def test_verbose_prints_the_summary(capsys):
    dataset = MemoryDataset(SCENES[:2])
    metrics = evaluate_coco(dataset, perturbed_predictions()[:2], iou_types="bbox", verbose=True)
    out = capsys.readouterr().out
    assert out == metrics["bbox"].summary
    assert out.startswith("COCO bbox AP over 2 images")
    assert out.count("Average Precision") == 6 and out.count("Average Recall") == 6
    evaluate_coco(dataset, perturbed_predictions()[:2], iou_types="bbox")
    assert capsys.readouterr().out == ""


def test_mask_size_mismatch_names_image_and_shapes():
    dataset = MemoryDataset(SCENES[:2])
    predictions = perturbed_predictions()[:2]
    predictions[1]["masks"] = predictions[1]["masks"][:32, :48]
    with pytest.raises(ValueError, match=r"image 1.*\(32, 48, \d+\).*\(64, 64\)"):
        evaluate_coco(dataset, predictions)


def test_argument_errors():
    dataset = MemoryDataset(SCENES[:2])
    predictions = perturbed_predictions()[:2]
    with pytest.raises(ValueError, match="iou_types"):
        evaluate_coco(dataset, predictions, iou_types=("keypoints",))
    with pytest.raises(ValueError, match="predictions has 1 entries"):
        evaluate_coco(dataset, predictions[:1])
    bad = dict(predictions[0], class_ids=np.zeros_like(predictions[0]["class_ids"]))
    with pytest.raises(ValueError, match="class id 0"):
        evaluate_coco(dataset, [bad, predictions[1]])
    with pytest.raises(ValueError, match="missing key"):
        detections_to_coco_results([0], [{"rois": np.zeros((0, 4))}])


def test_evaluate_coco_results_matches_evaluate_coco_and_leaves_results_alone():
    dataset = MemoryDataset(SCENES)
    predictions = perturbed_predictions()
    gt = build_coco_ground_truth(dataset)
    results = detections_to_coco_results(dataset.image_ids, predictions, dataset=dataset)
    before = copy.deepcopy(results)
    metrics = evaluate_coco_results(gt, results)
    expected = evaluate_coco(dataset, predictions)
    for iou_type in ("bbox", "segm"):
        np.testing.assert_allclose(metrics[iou_type].stats, expected[iou_type].stats,
                                   rtol=0, atol=1e-12)
        assert metrics[iou_type].summary == expected[iou_type].summary
    # loadRes writes area and id into the dicts it gets, and segm drops the bbox: on copies.
    assert results == before and all("bbox" in r for r in results)


def test_evaluate_coco_results_restricts_images_and_categories():
    dataset = MemoryDataset(SCENES)
    predictions = perturbed_predictions(seed=2)
    gt = build_coco_ground_truth(dataset)
    results = detections_to_coco_results(dataset.image_ids, predictions, dataset=dataset)
    # Results on images outside image_ids are ignored: same as evaluating those images alone.
    subset = evaluate_coco_results(gt, results, iou_types="segm", image_ids=[0, 1])
    alone = evaluate_coco(dataset, predictions[:2], image_ids=[0, 1], iou_types="segm")
    np.testing.assert_allclose(subset["segm"].stats, alone["segm"].stats, atol=1e-12)
    assert subset["segm"].summary.startswith("COCO segm AP over 2 images")

    # Perfect detections of class 1 only: class 2 has AP 0, so the mean over both is 0.5.
    perfect = [detection([m for m, c in zip(ms, cs) if c == 1], [1] * cs.count(1),
                         np.ones(cs.count(1))) for ms, cs in SCENES]
    results = detections_to_coco_results(dataset.image_ids, perfect, dataset=dataset)
    both = evaluate_coco_results(gt, results, iou_types=("bbox",))
    only_1 = evaluate_coco_results(gt, results, iou_types=("bbox",), category_ids=[1])
    assert both["bbox"]["AP"] == pytest.approx(0.5)
    assert only_1["bbox"]["AP"] == pytest.approx(1.0)
    assert list(only_1["bbox"].coco_eval.params.catIds) == [1]


def test_evaluate_coco_results_empty_results_and_errors(capsys):
    gt = build_coco_ground_truth(MemoryDataset(SCENES))
    metrics = evaluate_coco_results(gt, [], iou_types="segm", verbose=True)
    assert metrics["segm"]["AP"] == 0.0 and metrics["segm"]["APl"] == -1.0
    assert capsys.readouterr().out == metrics["segm"].summary
    with pytest.raises(ValueError, match="iou_types"):
        evaluate_coco_results(gt, [], iou_types=("keypoints",))
    with pytest.raises(ValueError, match="image_ids is empty"):
        evaluate_coco_results(gt, [], image_ids=[])
