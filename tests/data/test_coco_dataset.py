"""CocoDataset on a small generated COCO json: polygons, both RLE forms, a crowd region,
non-contiguous category ids; errors; COCO AP 1.0 on ground truth fed back as detections."""
import copy
import json

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from mrcnn.data.coco import CocoDataset, CocoFormatError
from samples.coco.coco import build_coco_results
from mrcnn.eval.coco_eval import evaluate_coco
from mrcnn.ops.masks import extract_bboxes

# pycocotools' decode under NumPy 2 (a pycocotools issue, harmless).
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

SIZE = 64
SQUARE, CIRCLE = 3, 7  # json category ids: deliberately not 1, 2


def _rect(x1, y1, x2, y2):
    """Filled rectangle (inclusive corners) and its pixel-boundary polygon."""
    mask = np.zeros([SIZE, SIZE], np.uint8)
    cv2.rectangle(mask, (x1, y1), (x2, y2), 1, -1)
    return mask.astype(bool), [x1, y1, x2 + 1, y1, x2 + 1, y2 + 1, x1, y2 + 1]


def _circle(cx, cy, r):
    """Filled circle and a 64-point polygon around the same pixels (centres at +0.5)."""
    mask = np.zeros([SIZE, SIZE], np.uint8)
    cv2.circle(mask, (cx, cy), r, 1, -1)
    t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    polygon = np.stack([cx + 0.5 + r * np.cos(t), cy + 0.5 + r * np.sin(t)], 1).ravel()
    return mask.astype(bool), [round(float(v), 3) for v in polygon]


def _uncompressed_rle(mask):
    """COCO uncompressed RLE written by hand: column-major runs, starting with zeros."""
    flat = mask.flatten(order="F").astype(np.uint8)
    counts, value, run = [], 0, 0
    for pixel in flat:
        if pixel == value:
            run += 1
        else:
            counts.append(run)
            value, run = pixel, 1
    counts.append(run)
    return {"counts": counts, "size": list(mask.shape)}


def _compressed_rle(mask):
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"counts": rle["counts"].decode("ascii"), "size": list(mask.shape)}


def make_coco_files(folder):
    """Write 4 PNG images and ``instances.json`` into ``folder``.

    Returns:
        (json path, image folder, expected) with ``expected[json image id]`` a list of
        (mask [64, 64] bool, json category id, iscrowd, kind) in annotation order, kind
        "polygon" or "rle".
    """
    image_dir = folder / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    shapes = {
        10: [(_rect(5, 8, 20, 30), SQUARE, 0, "polygon"), (_circle(44, 40, 12), CIRCLE, 0,
                                                           "polygon")],
        20: [(_rect(30, 4, 58, 18), SQUARE, 0, "rle_list"),
             (_circle(18, 42, 10), CIRCLE, 0, "rle_str")],
        30: [(_circle(20, 20, 9), CIRCLE, 0, "polygon"),
             (_rect(36, 34, 60, 60), SQUARE, 1, "rle_list")],
        40: [(_rect(10, 10, 40, 50), SQUARE, 0, "polygon")],
    }
    images, annotations, expected = [], [], {}
    for image_id, objects in shapes.items():
        picture = np.full([SIZE, SIZE, 3], 40, np.uint8)
        expected[image_id] = []
        for (mask, polygon), category, crowd, kind in objects:
            picture[mask] = (200, 60, 60) if category == SQUARE else (60, 200, 60)
            if kind == "polygon":
                segmentation = [polygon]
            elif kind == "rle_list":
                segmentation = _uncompressed_rle(mask)
            else:
                segmentation = _compressed_rle(mask)
            # Ground-truth area/bbox as pycocotools would compute them from the segmentation.
            rasterized = mask if kind != "polygon" else mask_utils.decode(mask_utils.merge(
                mask_utils.frPyObjects(segmentation, SIZE, SIZE))).astype(bool)
            y1, x1, y2, x2 = (int(v) for v in extract_bboxes(rasterized[..., None])[0])
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                "segmentation": segmentation, "iscrowd": crowd,
                "area": float(rasterized.sum()), "bbox": [x1, y1, x2 - x1, y2 - y1]})
            expected[image_id].append((mask, category, crowd, "polygon" if kind == "polygon"
                                       else "rle"))
        name = f"img_{image_id}.png"
        cv2.imwrite(str(image_dir / name), picture)
        images.append({"id": image_id, "file_name": name, "width": SIZE, "height": SIZE})
    images[0]["coco_url"] = "http://example.org/img_10.png"
    data = {"images": images, "annotations": annotations,
            "categories": [{"id": CIRCLE, "name": "circle"}, {"id": SQUARE, "name": "square"}]}
    path = folder / "instances.json"
    path.write_text(json.dumps(data, indent=1))
    return path, image_dir, expected


def gt_predictions(dataset, image_ids):
    """load_mask ground truth as MaskRCNN.detect dicts: non-crowd instances, score 1."""
    predictions = []
    for image_id in image_ids:
        masks, class_ids = dataset.load_mask(image_id)
        keep = class_ids > 0
        masks, class_ids = masks[..., keep], class_ids[keep]
        predictions.append({"rois": extract_bboxes(masks), "class_ids": class_ids,
                            "scores": np.ones(len(class_ids), np.float32), "masks": masks})
    return predictions


@pytest.fixture()
def coco_files(tmp_path):
    return make_coco_files(tmp_path)


def _load(path, image_dir, **kwargs):
    dataset = CocoDataset()
    coco = dataset.load_coco(path, image_dir, return_coco=True, **kwargs)
    dataset.prepare()
    return dataset, coco


def _iou(a, b):
    return np.logical_and(a, b).sum() / np.logical_or(a, b).sum()


def test_classes_are_contiguous_and_map_back_to_category_ids(coco_files):
    path, image_dir, _ = coco_files
    dataset, coco = _load(path, image_dir)
    assert dataset.num_classes == 3
    assert dataset.class_names == ["BG", "square", "circle"]  # ascending category id
    assert [dataset.to_coco_category_id(c) for c in (1, 2)] == [SQUARE, CIRCLE]
    assert dataset.to_coco_category_id(-2) == CIRCLE  # crowd ids map too
    assert dataset.get_source_class_id(2, "coco") == CIRCLE
    assert dataset.from_coco_category_id(SQUARE) == 1
    assert dataset.map_source_class_id("coco.7") == 2
    assert [dataset.to_coco_image_id(i) for i in dataset.image_ids] == [10, 20, 30, 40]
    assert dataset.from_coco_image_id(30) == 2
    info = dataset.image_info[1]
    assert (info["width"], info["height"], len(info["annotations"])) == (SIZE, SIZE, 2)
    assert sorted(coco.getImgIds()) == [10, 20, 30, 40]
    with pytest.raises(ValueError, match="not a foreground class"):
        dataset.to_coco_category_id(0)


def test_masks_equal_the_drawn_shapes(coco_files):
    path, image_dir, expected = coco_files
    dataset, _ = _load(path, image_dir)
    for image_id in dataset.image_ids:
        masks, class_ids = dataset.load_mask(image_id)
        objects = expected[dataset.to_coco_image_id(image_id)]
        assert masks.dtype == bool and class_ids.dtype == np.int32
        assert masks.shape == (SIZE, SIZE, len(objects))
        for k, (mask, category, crowd, kind) in enumerate(objects):
            internal = dataset.from_coco_category_id(category)
            assert class_ids[k] == (-internal if crowd else internal)
            if kind == "rle":
                np.testing.assert_array_equal(masks[..., k], mask)
            else:
                assert _iou(masks[..., k], mask) > 0.9


def test_crowd_region_has_negative_class_id(coco_files):
    path, image_dir, expected = coco_files
    dataset, _ = _load(path, image_dir)
    masks, class_ids = dataset.load_mask(dataset.from_coco_image_id(30))
    np.testing.assert_array_equal(class_ids, [2, -1])
    np.testing.assert_array_equal(masks[..., 1], expected[30][1][0])


def test_crowd_rle_of_other_size_becomes_whole_image(coco_files):
    path, image_dir, expected = coco_files
    data = json.loads(path.read_text())
    crowd = next(a for a in data["annotations"] if a["iscrowd"])
    crowd["segmentation"] = _uncompressed_rle(expected[30][1][0][:40, :50])
    dataset, _ = _load(data, image_dir)
    masks, class_ids = dataset.load_mask(dataset.from_coco_image_id(30))
    assert class_ids[1] == -1 and masks[..., 1].all()


def test_non_crowd_rle_of_other_size_is_rejected_at_load(coco_files):
    path, image_dir, expected = coco_files
    data = json.loads(path.read_text())
    ann = data["annotations"][2]  # image 20, uncompressed RLE square
    ann["segmentation"] = _uncompressed_rle(expected[20][0][0][:32])
    with pytest.raises(CocoFormatError, match=r"annotation id 3: RLE size \[32, 64\].*\[64, 64\]"):
        _load(data, image_dir)


def test_class_ids_subset_keeps_images_and_instances_of_those_classes(coco_files):
    path, image_dir, expected = coco_files
    dataset, _ = _load(path, image_dir, class_ids=[CIRCLE])
    assert dataset.class_names == ["BG", "circle"]
    assert [dataset.to_coco_image_id(i) for i in dataset.image_ids] == [10, 20, 30]
    masks, class_ids = dataset.load_mask(dataset.from_coco_image_id(20))
    np.testing.assert_array_equal(class_ids, [1])
    np.testing.assert_array_equal(masks[..., 0], expected[20][1][0])
    with pytest.raises(CocoFormatError, match=r"class_ids \[5\] are not categories"):
        _load(path, image_dir, class_ids=[5])


def test_image_ids_and_limit(coco_files):
    path, image_dir, _ = coco_files
    dataset, _ = _load(path, image_dir, image_ids=[40, 20])
    assert [info["id"] for info in dataset.image_info] == [40, 20]
    dataset, _ = _load(path, image_dir, limit=2)
    assert [info["id"] for info in dataset.image_info] == [10, 20]
    with pytest.raises(CocoFormatError, match=r"image_ids \[99\]"):
        _load(path, image_dir, image_ids=[99])


def test_tiny_bbox_only_and_missing_instances(coco_files):
    path, image_dir, _ = coco_files
    data = json.loads(path.read_text())
    extra = [
        # outside the image: rasterizes to nothing
        {"segmentation": [[70, 70, 80, 70, 80, 80]]},
        {"segmentation": []},                      # bbox-only annotation
        {"segmentation": [[1, 1, 3, 1]]},          # two points: not a polygon
    ]
    for k, fields in enumerate(extra):
        data["annotations"].append({"id": 100 + k, "image_id": 40, "category_id": SQUARE,
                                    "iscrowd": 0, "bbox": [0, 0, 1, 1], **fields})
    data["images"].append({"id": 50, "file_name": "img_40.png", "width": SIZE, "height": SIZE})
    dataset, _ = _load(data, image_dir)
    masks, class_ids = dataset.load_mask(dataset.from_coco_image_id(40))
    assert masks.shape == (SIZE, SIZE, 1) and class_ids.tolist() == [1]
    masks, class_ids = dataset.load_mask(dataset.from_coco_image_id(50))
    assert masks.shape == (SIZE, SIZE, 0) and class_ids.shape == (0,)


def test_missing_width_height_read_from_the_file(coco_files):
    path, image_dir, expected = coco_files
    data = json.loads(path.read_text())
    for image in data["images"]:
        del image["width"], image["height"]
    dataset, _ = _load(data, image_dir)
    masks, _ = dataset.load_mask(0)
    assert masks.shape == (SIZE, SIZE, 2)
    assert _iou(masks[..., 0], expected[10][0][0]) > 0.9


def test_image_reference_and_image_loading(coco_files):
    path, image_dir, _ = coco_files
    dataset, _ = _load(path, image_dir)
    assert dataset.image_reference(0) == "http://example.org/img_10.png"
    assert dataset.image_reference(1) == str(image_dir / "img_20.png")
    image = dataset.load_image(0)
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
    (image_dir / "img_20.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"image 1 .*img_20\.png"):
        dataset.load_image(1)


def test_image_whose_size_differs_from_the_json_is_rejected(coco_files):
    path, image_dir, _ = coco_files
    data = json.loads(path.read_text())
    data["images"][1]["height"] = 48
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != 20]
    dataset, _ = _load(data, image_dir)
    with pytest.raises(ValueError, match=r"image 1 \(COCO id 20.*64x64.*json says 48x64"):
        dataset.load_image(1)


def test_missing_file_and_folder_errors(tmp_path, coco_files):
    path, image_dir, _ = coco_files
    with pytest.raises(FileNotFoundError, match="nope.json"):
        CocoDataset().load_coco(tmp_path / "nope.json", image_dir)
    with pytest.raises(FileNotFoundError, match="image folder not found.*no_images"):
        CocoDataset().load_coco(path, tmp_path / "no_images")
    with pytest.raises(IsADirectoryError, match="is a folder"):
        CocoDataset().load_coco(tmp_path, image_dir)


def test_malformed_json_names_file_line_and_column(tmp_path, coco_files):
    _, image_dir, _ = coco_files
    bad = tmp_path / "broken.json"
    bad.write_text('{\n  "images": [],\n  "annotations": [,]\n}\n')
    with pytest.raises(CocoFormatError, match=r"broken\.json.*line 3, column 19"):
        CocoDataset().load_coco(bad, image_dir)
    assert issubclass(CocoFormatError, ValueError)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.pop("categories"),
     r"instances\.json.*missing top-level key\(s\) \['categories'\]"),
    (lambda d: d["annotations"][1].update(category_id=5),
     r"instances\.json.*annotation id 2 \(annotations\[1\]\) refers to category_id 5"),
    (lambda d: d["annotations"][0].update(image_id=11),
     r"annotation id 1 \(annotations\[0\]\) refers to image_id 11, which is not in 'images'"),
    (lambda d: d["annotations"][0].update(segmentation=[[1, 2, 3]]),
     r"annotation id 1 .*even number of values"),
    (lambda d: d["images"].append(dict(d["images"][0])), r"image id 10 appears twice"),
])
def test_invalid_content_errors_name_the_file_and_entry(coco_files, edit, message):
    path, image_dir, _ = coco_files
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(CocoFormatError, match=message):
        CocoDataset().load_coco(path, image_dir)


def test_dict_input_is_not_modified(coco_files):
    path, image_dir, _ = coco_files
    data = json.loads(path.read_text())
    before = copy.deepcopy(data)
    dataset, _ = _load(data, image_dir)
    for image_id in dataset.image_ids:
        dataset.load_mask(image_id)
    assert data == before


@pytest.mark.parametrize("use_source_ids", [True, False])
def test_coco_ap_is_one_on_ground_truth_fed_back(coco_files, use_source_ids):
    path, image_dir, _ = coco_files
    dataset, _ = _load(path, image_dir)
    predictions = gt_predictions(dataset, dataset.image_ids)
    metrics = evaluate_coco(dataset, predictions, use_source_ids=use_source_ids)
    assert metrics["bbox"]["AP"] == pytest.approx(1.0)
    assert metrics["segm"]["AP"] == pytest.approx(1.0)
    # A wrong class on one detection must cost AP: the check above can fail.
    predictions[0]["class_ids"] = predictions[0]["class_ids"][::-1].copy()
    assert evaluate_coco(dataset, predictions, iou_types="segm")["segm"]["AP"] < 0.9


def test_build_coco_results_classic_signature_uses_json_ids(coco_files):
    path, image_dir, _ = coco_files
    dataset, _ = _load(path, image_dir)
    (r,) = gt_predictions(dataset, [0])
    results = build_coco_results(dataset, [10], r["rois"], r["class_ids"], r["scores"],
                                 r["masks"].astype(np.uint8))
    assert [res["image_id"] for res in results] == [10, 10]
    assert [res["category_id"] for res in results] == [SQUARE, CIRCLE]
    y1, x1, y2, x2 = r["rois"][0]
    assert results[0]["bbox"] == [x1, y1, x2 - x1, y2 - y1]
    decoded = mask_utils.decode(results[1]["segmentation"]).astype(bool)
    np.testing.assert_array_equal(decoded, r["masks"][..., 1])
    json.dumps(results)
    assert build_coco_results(dataset, [], r["rois"], r["class_ids"], r["scores"],
                              r["masks"]) == []
    with pytest.raises(ValueError, match="COCO image id 99"):
        build_coco_results(dataset, [99], r["rois"], r["class_ids"], r["scores"], r["masks"])
